//! What is particular to the sequencer and consensus services: how their
//! processes are launched, where their direct channels are, and the
//! daemon's own member of each instance that serves their REST operations.
//!
//! * **sequencer**: one `vnf-sequencer` process for a group whose id is
//!   derived from the instance id ([`group_of`]). Members join later with
//!   the `add` operation (the VNF's control op, passed through); the
//!   daemon records the member list from the VNF's answers, so that a heal
//!   starts the replacement with `--replace --members …`: it takes the
//!   group over in a new epoch and nothing delivered is lost.
//! * **consensus**: five `vnf-paxos` processes in the tenant's network, a
//!   coordinator, three acceptors (write-ahead logs under the data
//!   directory, so a heal recovers their promises and votes) and a learner,
//!   on consecutive ports from the instance's own. The coordinator has the
//!   instance's control socket.
//!
//! Both direct channels are authenticated like the failure detector's
//! ([`dataplane::auth`]): every process runs with `--auth required` and
//! the instance's key file, and drops and counts what is not tagged under
//! a known session's key. The session of the channel is the instance's
//! own, [`channel_session`] (a sequencer's group id, which every group
//! frame carries; a consensus instance's processes get it as `--session`),
//! not the REST session that created it: one key per instance, because a
//! group frame or a vote is one message for many receivers, and members
//! repair each other's gaps (see the VNFs' module docs). The key is in the
//! answer that creates the instance, so only its tenant has it; the
//! daemon's own member reads it from the database.
//!
//! REST operations for low volume (`broadcast`, `propose`) go through a
//! [`Gateway`]: a libnfvinc member of the instance run by the daemon,
//! started on first use (an operation, or an event stream), bound to the
//! host end of the tenant's link. Its deliveries and decisions are
//! published on the instance's event stream.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use libnfvinc::broadcast::{Broadcast, BroadcastConfig};
use libnfvinc::consensus::{Consensus, ConsensusConfig};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;
use vnf_sequencer::{Event, Mode, ProcessId};

use crate::broker::{self, SendError};
use crate::manager::InstanceRow;
use crate::state::AppState;
use crate::vim::RoleSpec;

/// Ports each instance is given (its own and the next ones): enough for
/// the consensus service's five processes.
pub const PORT_SPAN: u16 = 8;
/// The process id of the daemon's own member of a sequencer group.
pub const GATEWAY_MEMBER: u64 = u64::MAX - 1;
/// Acceptors of a consensus instance (tolerates one failure).
pub const ACCEPTORS: u16 = 3;
/// Longest wait of a REST `propose` for its decision.
const PROPOSE_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest wait of a REST `broadcast` for room in the send window.
const SEND_TIMEOUT: Duration = Duration::from_secs(2);

/// One process of an instance's direct channel, as applications see it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct RoleEndpoint {
    /// `sequencer`, `coordinator`, `acceptor` or `learner`.
    pub role: String,
    /// Its position among its role's processes.
    pub index: u16,
    /// IPv4 address.
    pub addr: String,
    /// UDP port.
    pub port: u16,
}

/// The group id of a sequencer instance: from its id (`i-` and 16 hex
/// digits), so that it survives restarts without being stored; never 0.
pub fn group_of(instance_id: &str) -> u64 {
    let g = instance_id
        .strip_prefix("i-")
        .and_then(|h| u64::from_str_radix(h, 16).ok())
        .unwrap_or(1);
    // Kept below 2^63 so that every JSON reader takes it as an integer.
    (g >> 1).max(1)
}

/// The session id an instance's direct-channel messages carry when it is
/// the instance's own rather than the creating REST session's: sequencer
/// (its group) and consensus instances; `None` for the others.
pub fn channel_session(service: &str, instance_id: &str) -> Option<u64> {
    matches!(service, "sequencer" | "consensus").then(|| group_of(instance_id))
}

/// The processes of a multi-process or specially configured instance
/// (empty for the others). `fresh`: a first start (the sequencer then
/// opens a new group instead of taking one over).
pub fn roles(state: &AppState, row: &InstanceRow, fresh: bool) -> Vec<RoleSpec> {
    let run = state.config.data_dir.join("run");
    match row.service.as_str() {
        "sequencer" => {
            let mut args = vec![
                "--group".to_owned(),
                group_of(&row.id).to_string(),
                "--id".to_owned(),
                "0".to_owned(),
            ];
            let members: Vec<String> = row
                .members
                .iter()
                .map(|(id, addr)| format!("{id}={addr}"))
                .collect();
            if !members.is_empty() {
                args.push("--members".into());
                args.push(members.join(","));
            }
            if !fresh {
                // A heal: the group goes on in a new epoch (from the
                // clock), with every member's delivered messages kept.
                args.push("--replace".into());
            }
            vec![RoleSpec {
                name: "sequencer".into(),
                port: Some(row.port),
                control: row.control_path.clone().into(),
                args,
            }]
        }
        "consensus" => {
            let ep = endpoints(row);
            let list = |role: &str| {
                ep.iter()
                    .filter(|e| e.role == role)
                    .map(|e| format!("{}:{}", e.addr, e.port))
                    .collect::<Vec<_>>()
                    .join(",")
            };
            let (coordinators, acceptors, learners) =
                (list("coordinator"), list("acceptor"), list("learner"));
            ep.iter()
                .map(|e| {
                    let name = format!("{}-{}", e.role, e.index);
                    let control = if e.role == "coordinator" && e.index == 0 {
                        row.control_path.clone().into()
                    } else {
                        run.join(format!("{}.{}.sock", row.id, name))
                    };
                    let mut args = vec![
                        "--role".to_owned(),
                        e.role.clone(),
                        "--index".to_owned(),
                        e.index.to_string(),
                        "--coordinators".to_owned(),
                        coordinators.clone(),
                        "--acceptors".to_owned(),
                        acceptors.clone(),
                        "--learners".to_owned(),
                        learners.clone(),
                        // Five roles share the host's cores: a role that
                        // spins long takes the core from the others.
                        "--spins".to_owned(),
                        "64".to_owned(),
                        // What every message carries, and its key tags.
                        "--session".to_owned(),
                        group_of(&row.id).to_string(),
                    ];
                    if e.role == "acceptor" {
                        args.push("--wal".into());
                        args.push(
                            run.join(format!("{}.{}.wal", row.id, name))
                                .display()
                                .to_string(),
                        );
                    }
                    RoleSpec {
                        name,
                        port: None,
                        control,
                        args,
                    }
                })
                .collect()
        }
        _ => Vec::new(),
    }
}

/// Where each process of the instance's direct channel is (empty for
/// single-process services, whose endpoint is the instance's own).
pub fn endpoints(row: &InstanceRow) -> Vec<RoleEndpoint> {
    let at = |role: &str, index: u16, off: u16| RoleEndpoint {
        role: role.into(),
        index,
        addr: row.addr.clone(),
        port: row.port.saturating_add(off),
    };
    match row.service.as_str() {
        "sequencer" => vec![at("sequencer", 0, 0)],
        "consensus" => {
            let mut v = vec![at("coordinator", 0, 0)];
            v.extend((0..ACCEPTORS).map(|i| at("acceptor", i, 1 + i)));
            v.push(at("learner", 0, 1 + ACCEPTORS));
            v
        }
        _ => Vec::new(),
    }
}

/// Files an instance leaves besides its control socket and log.
pub fn leftovers(state: &AppState, row: &InstanceRow) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = roles(state, row, true)
        .into_iter()
        .map(|r| r.control)
        .collect();
    if row.service == "consensus" {
        let run = state.config.data_dir.join("run");
        v.extend((0..ACCEPTORS).map(|i| run.join(format!("{}.acceptor-{i}.wal", row.id))));
    }
    v
}

/// Members as the sequencer's control answers list them (`add`,
/// `remove`, `group`): `(process, "ip:port")`; `None` for another answer.
pub fn members_of(answer: &Value) -> Option<Vec<(u64, String)>> {
    answer.get("group")?;
    let list = answer.get("members")?.as_array()?;
    Some(
        list.iter()
            .filter_map(|m| Some((m["process"].as_u64()?, m["addr"].as_str()?.to_owned())))
            .collect(),
    )
}

/// Operations the daemon's gateway member serves (not the VNF's control
/// socket).
pub fn is_gateway_op(service: &str, op: &str) -> bool {
    matches!(
        (service, op),
        ("sequencer", "broadcast") | ("consensus", "propose")
    )
}

/// The daemon's own member of an instance.
pub enum Gateway {
    /// A member of a sequencer group.
    Sequencer(Broadcast),
    /// A submitting and learning consensus client.
    Consensus {
        /// The handle.
        handle: Arc<Consensus>,
        /// Stops its delivery thread.
        stop: Arc<AtomicBool>,
    },
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Gateway::Sequencer(_) => f.write_str("Gateway::Sequencer"),
            Gateway::Consensus { .. } => f.write_str("Gateway::Consensus"),
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Gateway::Consensus { stop, .. } = self {
            stop.store(true, Ordering::Relaxed);
        }
    }
}

/// The address applications on this host (and the daemon) use to reach a
/// tenant's instances and be reached by them: the host end of the
/// tenant's /30 link, or loopback without isolation.
pub fn client_addr(tenant_addr: &str) -> String {
    match tenant_addr.parse::<Ipv4Addr>() {
        Ok(a) if a.is_loopback() => a.to_string(),
        Ok(a) => Ipv4Addr::from(u32::from(a).saturating_sub(1)).to_string(),
        Err(_) => tenant_addr.to_owned(),
    }
}

fn sock(addr: &str, port: u16) -> Result<SocketAddrV4, SendError> {
    let ip: Ipv4Addr = addr
        .parse()
        .map_err(|_| SendError::NotDelivered(format!("bad instance address {addr:?}")))?;
    Ok(SocketAddrV4::new(ip, port))
}

/// The instance's gateway, started if it is not yet.
pub async fn gateway(state: &AppState, row: &InstanceRow) -> Result<Arc<Gateway>, SendError> {
    let rt = state.registry.insert(&row.id, false);
    let mut slot = rt.gateway.lock().await;
    if let Some(g) = slot.as_ref() {
        return Ok(g.clone());
    }
    let bind = sock(&client_addr(&row.addr), 0)?;
    let auth = crate::manager::channel_credentials(state, &row.id)
        .await
        .map_err(|e| SendError::NotDelivered(format!("reading the channel's key: {e}")))?;
    let g = match row.service.as_str() {
        "sequencer" => {
            let epoch = broker::send_control(state, &row.id, "epoch", &json!({})).await?;
            let epoch = epoch["epoch"]
                .as_u64()
                .and_then(|e| u32::try_from(e).ok())
                .unwrap_or(1);
            let mut cfg = BroadcastConfig::new(
                ProcessId(GATEWAY_MEMBER),
                group_of(&row.id),
                sock(&row.addr, row.port)?,
                bind,
            );
            cfg.epoch = epoch;
            cfg.auth = auth;
            let events = rt.events.clone();
            let b = Broadcast::join_with(cfg, move |ev| {
                let v = match ev {
                    Event::Deliver(d) => json!({"delivered": {
                        "seq": d.seq,
                        "sender": d.sender.0,
                        "sender_seq": d.sender_seq,
                        "mode": format!("{:?}", d.mode).to_lowercase(),
                        "message": String::from_utf8_lossy(d.payload),
                    }}),
                    Event::Lost { first, end } => json!({"lost": {"first": first, "end": end}}),
                };
                let _ = events.send(v);
            })
            .map_err(|e| SendError::NotDelivered(format!("joining the group: {e}")))?;
            let addr = b
                .local_addr()
                .map_err(|e| SendError::NotDelivered(e.to_string()))?;
            let v = broker::send_control(
                state,
                &row.id,
                "add",
                &json!({"process": GATEWAY_MEMBER, "addr": addr.to_string()}),
            )
            .await?;
            // Recorded like every member change, for heals.
            if let Some(m) = members_of(&v) {
                crate::manager::record_members(state, &row.id, &m).await;
            }
            Gateway::Sequencer(b)
        }
        "consensus" => {
            let ep = endpoints(row);
            let list = |role: &str| -> Result<Vec<SocketAddrV4>, SendError> {
                ep.iter()
                    .filter(|e| e.role == role)
                    .map(|e| sock(&e.addr, e.port))
                    .collect()
            };
            let mut cfg = ConsensusConfig::new(list("coordinator")?, list("acceptor")?);
            cfg.learners = list("learner")?;
            cfg.bind = bind;
            cfg.auth = auth;
            let handle = Arc::new(
                Consensus::connect(cfg)
                    .map_err(|e| SendError::NotDelivered(format!("consensus client: {e}")))?,
            );
            let stop = Arc::new(AtomicBool::new(false));
            let (h, s, events) = (handle.clone(), stop.clone(), rt.events.clone());
            std::thread::Builder::new()
                .name("nfvinc-decisions".into())
                .spawn(move || {
                    while !s.load(Ordering::Relaxed) {
                        match h.next_delivery(Duration::from_millis(200)) {
                            Ok(Some(d)) => {
                                let commands: Vec<Value> = d
                                    .commands
                                    .iter()
                                    .map(|c| {
                                        json!({"client": c.client.0, "seq": c.seq,
                                               "value": String::from_utf8_lossy(&c.payload)})
                                    })
                                    .collect();
                                let _ = events.send(json!({"decided": {
                                    "instance": d.instance, "commands": commands}}));
                            }
                            Ok(None) => {}
                            Err(_) => return,
                        }
                    }
                })
                .map_err(|e| SendError::NotDelivered(e.to_string()))?;
            Gateway::Consensus { handle, stop }
        }
        other => {
            return Err(SendError::Refused(format!(
                "service {other:?} has no gateway"
            )));
        }
    };
    let g = Arc::new(g);
    *slot = Some(g.clone());
    Ok(g)
}

/// The bytes of a message or value given over REST: a string as it is,
/// any other JSON value as its text.
fn payload(v: &Value) -> Vec<u8> {
    match v {
        Value::String(s) => s.clone().into_bytes(),
        other => other.to_string().into_bytes(),
    }
}

/// Runs a gateway operation.
pub async fn gateway_op(
    state: &AppState,
    row: &InstanceRow,
    op: &str,
    args: &Value,
) -> Result<Value, SendError> {
    let g = gateway(state, row).await?;
    let args = args.clone();
    let op = op.to_owned();
    tokio::task::spawn_blocking(move || match (&*g, op.as_str()) {
        (Gateway::Sequencer(b), "broadcast") => {
            let mode = match args.get("mode").and_then(Value::as_str).unwrap_or("atomic") {
                "reliable" => Mode::Reliable,
                "atomic" => Mode::Atomic,
                "fifo" => Mode::Fifo,
                "causal" => Mode::Causal,
                m => {
                    return Err(SendError::Refused(format!(
                        "mode {m:?} is none of reliable, atomic, fifo, causal"
                    )));
                }
            };
            let bytes = payload(&args["message"]);
            match b.send(mode, &bytes, SEND_TIMEOUT) {
                Ok(q) => Ok(json!({"sender": GATEWAY_MEMBER, "sender_seq": q})),
                Err(libnfvinc::broadcast::BroadcastError::TooLarge { len, max }) => Err(
                    SendError::Refused(format!("message of {len} bytes, at most {max}")),
                ),
                Err(e) => Err(SendError::Busy(e.to_string())),
            }
        }
        (Gateway::Consensus { handle, .. }, "propose") => {
            let bytes = payload(&args["value"]);
            match handle.propose(&bytes, PROPOSE_TIMEOUT) {
                Ok(c) => Ok(json!({"seq": c.seq, "instance": c.instance,
                                   "client": handle.client_id().0})),
                Err(libnfvinc::consensus::ConsensusError::TooLarge(n)) => Err(SendError::Refused(
                    format!("value of {n} bytes, at most 1400"),
                )),
                // Submitted, not known decided: it may still be.
                Err(e) => Err(SendError::Lost(e.to_string())),
            }
        }
        (_, op) => Err(SendError::Refused(format!("no gateway operation {op:?}"))),
    })
    .await
    .unwrap_or_else(|e| Err(SendError::Lost(format!("gateway task failed: {e}"))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_ids_are_stable_nonzero_and_fit_json() {
        assert_eq!(group_of("i-00000000000000ff"), 0x7f);
        assert_eq!(group_of("i-ffffffffffffffff"), u64::MAX >> 1);
        assert_eq!(group_of("i-0000000000000000"), 1);
        assert_eq!(group_of("nonsense"), 1);
    }

    #[test]
    fn sequencer_and_consensus_channels_have_the_instances_own_session() {
        let id = "i-00000000000000ff";
        assert_eq!(channel_session("sequencer", id), Some(group_of(id)));
        assert_eq!(channel_session("consensus", id), Some(0x7f));
        assert_eq!(channel_session("fd", id), None);
    }

    #[test]
    fn client_address_is_the_host_end_of_the_link() {
        assert_eq!(client_addr("198.19.0.2"), "198.19.0.1");
        assert_eq!(client_addr("127.0.0.1"), "127.0.0.1");
    }

    #[test]
    fn member_lists_are_read_from_group_answers_only() {
        let a = json!({"group": 5, "id": 0, "epoch": 1,
                       "members": [{"process": 1, "addr": "10.0.0.1:7500"}]});
        assert_eq!(members_of(&a), Some(vec![(1, "10.0.0.1:7500".into())]));
        assert_eq!(members_of(&json!({"process": 7})), None);
    }
}
