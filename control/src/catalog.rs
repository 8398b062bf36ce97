//! The discovery catalog: which services exist, their versions, the
//! operations each offers over REST, how applications can talk to them, and
//! the limits that apply. The Broker validates operations against it, so a
//! request the catalog does not describe never reaches a VNF.

use std::path::Path;

use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

/// JSON type of an operation parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ParamType {
    /// A non-negative integer that fits in 64 bits.
    Uint,
    /// A non-negative number (integer or not).
    Number,
    /// A string.
    String,
    /// Any JSON value.
    Any,
}

/// One parameter of an operation.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Param {
    /// Field name in the request body.
    pub name: &'static str,
    /// Its JSON type.
    #[serde(rename = "type")]
    pub kind: ParamType,
    /// Whether it must be present.
    pub required: bool,
}

/// One operation of a service.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Operation {
    /// The name used in `POST /v1/instances/{id}/ops/{name}`.
    pub name: &'static str,
    /// What it does.
    pub description: &'static str,
    /// Its parameters.
    pub params: Vec<Param>,
    /// Whether it changes the instance's state. Only mutating operations
    /// are scheduled while an instance is unavailable; a read then fails
    /// with 503, since a late answer to a read is of no use.
    pub mutating: bool,
}

/// A service of the catalog.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Service {
    /// Name used to create instances.
    pub name: &'static str,
    /// What it offers.
    pub description: &'static str,
    /// Versions that can be instantiated.
    pub versions: Vec<&'static str>,
    /// The VNF binary the local VIM starts.
    pub binary: &'static str,
    /// Whether the binary is installed on this host.
    pub installed: bool,
    /// Whether the VNF has a control socket (operations, events, health);
    /// without one only its process liveness is known.
    pub control_socket: bool,
    /// How applications talk to it: `rest`, `direct` (UDP channel).
    pub modes: Vec<&'static str>,
    /// Whether the VNF checks that direct-channel messages carry a valid
    /// tag under their session's key (and drops the rest); the key is in
    /// the answer that creates the instance.
    pub authenticated: bool,
    /// Operations over REST.
    pub operations: Vec<Operation>,
    /// A service for tests, not for applications.
    pub test: bool,
    /// Most workers an instance scales to (1: the service keeps one state
    /// machine per process and does not scale by queues).
    pub max_replicas: u32,
}

fn p(name: &'static str, kind: ParamType, required: bool) -> Param {
    Param {
        name,
        kind,
        required,
    }
}

fn op(
    name: &'static str,
    description: &'static str,
    mutating: bool,
    params: Vec<Param>,
) -> Operation {
    Operation {
        name,
        description,
        params,
        mutating,
    }
}

fn common_ops() -> Vec<Operation> {
    vec![
        op("health", "Liveness of the VNF's worker", false, vec![]),
        op("counters", "Packet and operation counters", false, vec![]),
    ]
}

/// Every service this daemon knows, test services included.
fn all() -> Vec<Service> {
    use ParamType::*;
    let mut fd_ops = vec![
        op(
            "add",
            "Monitor a process (heartbeats to the direct channel, or passively from its traffic)",
            true,
            vec![
                p("process", Uint, true),
                // An interface name or index, which the VNF resolves.
                p("link", Any, false),
                p("group", Uint, false),
                p("interval_ms", Number, false),
                p("margin_ms", Number, false),
                p("window", Uint, false),
                p("addr", String, false),
            ],
        ),
        op(
            "remove",
            "Stop monitoring a process",
            true,
            vec![p("process", Uint, true)],
        ),
        op(
            "query",
            "State of one process: correct, suspected or unreachable",
            false,
            vec![p("process", Uint, true)],
        ),
        op(
            "list",
            "Every monitored process and its state",
            false,
            vec![],
        ),
    ];
    fd_ops.extend(common_ops());
    let mut seq_ops = vec![
        op(
            "add",
            "Add a member to the group (its direct-channel address, where group frames go)",
            true,
            vec![p("process", Uint, true), p("addr", String, true)],
        ),
        op(
            "remove",
            "Remove a member from the group",
            true,
            vec![p("process", Uint, true)],
        ),
        op(
            "broadcast",
            "Broadcast a message to the group (mode: reliable, atomic (default), fifo or causal); deliveries come on the event stream",
            true,
            vec![p("message", Any, true), p("mode", String, false)],
        ),
        op("group", "The group id, epoch and members", false, vec![]),
        op(
            "epoch",
            "The epoch and the next sequence number",
            false,
            vec![],
        ),
    ];
    seq_ops.extend(common_ops());
    let mut paxos_ops = vec![
        op(
            "propose",
            "Propose a value and wait for its decision; decisions come on the event stream",
            true,
            vec![p("value", Any, true)],
        ),
        op(
            "leader",
            "The leader the coordinator believes in, and the highest ballot",
            false,
            vec![],
        ),
        op(
            "membership",
            "Configured members and acceptor identities",
            false,
            vec![],
        ),
    ];
    paxos_ops.extend(common_ops());
    let mut journal_ops = vec![
        op(
            "append",
            "Append a value to the durable journal",
            true,
            vec![p("value", Any, true)],
        ),
        op("read", "Every value appended, in order", false, vec![]),
    ];
    journal_ops.extend(common_ops());
    vec![
        Service {
            name: "fd",
            description: "Failure detector (NFV-FD): processes are correct, suspected or unreachable; query or subscribe to state changes",
            versions: vec!["0.1"],
            binary: "vnf-fd",
            installed: false,
            control_socket: true,
            modes: vec!["rest", "direct"],
            authenticated: true,
            operations: fd_ops,
            test: false,
            max_replicas: crate::manager::MAX_REPLICAS,
        },
        Service {
            name: "sequencer",
            description: "Reliable, atomic, FIFO-atomic and causal-atomic broadcast (NFV-RBCast)",
            versions: vec!["0.1"],
            binary: "vnf-sequencer",
            installed: false,
            control_socket: true,
            modes: vec!["rest", "direct"],
            authenticated: true,
            operations: seq_ops,
            test: false,
            max_replicas: 1,
        },
        Service {
            name: "consensus",
            description: "Multi-Paxos as a service (VNF-Consensus)",
            versions: vec!["0.1"],
            binary: "vnf-paxos",
            installed: false,
            control_socket: true,
            modes: vec!["rest", "direct"],
            authenticated: true,
            operations: paxos_ops,
            test: false,
            max_replicas: 1,
        },
        Service {
            name: "echo",
            description: "UDP reflector (test service; no control socket: health is process liveness)",
            versions: vec!["0.1"],
            binary: "vnf-echo",
            installed: false,
            control_socket: false,
            modes: vec!["direct"],
            authenticated: false,
            operations: vec![],
            test: true,
            max_replicas: crate::manager::MAX_REPLICAS,
        },
        Service {
            name: "journal",
            description: "Durable append-only journal with a UDP reflector (test service for scheduling and replay)",
            versions: vec!["0.1"],
            binary: "vnf-journal",
            installed: false,
            control_socket: true,
            modes: vec!["rest", "direct"],
            authenticated: false,
            operations: journal_ops,
            test: true,
            max_replicas: crate::manager::MAX_REPLICAS,
        },
    ]
}

/// The catalog as offered: test services only when enabled, and each
/// service marked installed when its binary is in `vnf_dir`.
pub fn services(vnf_dir: &Path, with_tests: bool) -> Vec<Service> {
    all()
        .into_iter()
        .filter(|s| with_tests || !s.test)
        .map(|mut s| {
            s.installed = vnf_dir.join(s.binary).is_file();
            s
        })
        .collect()
}

/// Looks up `name` in the offered catalog.
pub fn find(vnf_dir: &Path, with_tests: bool, name: &str) -> Option<Service> {
    services(vnf_dir, with_tests)
        .into_iter()
        .find(|s| s.name == name)
}

impl Operation {
    /// Checks `args` against the parameters: a precise message for the
    /// first field that is missing, unknown or of the wrong type.
    pub fn validate(&self, args: &Value) -> Result<(), String> {
        let Some(obj) = args.as_object() else {
            return Err(format!(
                "the body of operation {:?} must be a JSON object",
                self.name
            ));
        };
        for key in obj.keys() {
            if !self.params.iter().any(|p| p.name == key) {
                return Err(format!(
                    "operation {:?} has no parameter {key:?} (it takes: {})",
                    self.name,
                    self.params
                        .iter()
                        .map(|p| p.name)
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
        }
        for p in &self.params {
            match obj.get(p.name) {
                None if p.required => {
                    return Err(format!(
                        "operation {:?} needs parameter {:?}",
                        self.name, p.name
                    ));
                }
                None => {}
                Some(v) => {
                    let ok = match p.kind {
                        ParamType::Uint => v.as_u64().is_some(),
                        ParamType::Number => v.as_f64().is_some_and(|x| x >= 0.0),
                        ParamType::String => v.is_string(),
                        ParamType::Any => true,
                    };
                    if !ok {
                        return Err(format!(
                            "parameter {:?} of {:?} must be {}, not {v}",
                            p.name,
                            self.name,
                            match p.kind {
                                ParamType::Uint => "a non-negative integer",
                                ParamType::Number => "a non-negative number",
                                ParamType::String => "a string",
                                ParamType::Any => "a value",
                            }
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn test_services_are_hidden_unless_enabled() {
        let dir = Path::new("/nonexistent");
        let public: Vec<_> = services(dir, false).iter().map(|s| s.name).collect();
        assert_eq!(public, ["fd", "sequencer", "consensus"]);
        assert!(find(dir, false, "journal").is_none());
        assert!(find(dir, true, "journal").is_some());
        assert!(!find(dir, true, "journal").unwrap().installed);
    }

    #[test]
    fn operation_arguments_are_checked_precisely() {
        let fd = find(Path::new("/x"), false, "fd").unwrap();
        let add = fd.operations.iter().find(|o| o.name == "add").unwrap();
        add.validate(&json!({"process": 7})).unwrap();
        add.validate(&json!({"process": 7, "link": "l1", "interval_ms": 2.5}))
            .unwrap();
        let e = add.validate(&json!({})).unwrap_err();
        assert!(e.contains("needs parameter \"process\""), "{e}");
        let e = add.validate(&json!({"process": "7"})).unwrap_err();
        assert!(e.contains("non-negative integer"), "{e}");
        let e = add.validate(&json!({"process": -1})).unwrap_err();
        assert!(e.contains("non-negative integer"), "{e}");
        let e = add.validate(&json!({"process": 1, "nope": 1})).unwrap_err();
        assert!(e.contains("no parameter \"nope\""), "{e}");
        assert!(add.validate(&json!([1])).is_err());
    }
}
