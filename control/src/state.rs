//! The one state value every handler, the Monitor and the Scheduler share.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::Value;
use tokio::sync::{Notify, RwLock, Semaphore, broadcast};

use crate::config::Config;
use crate::db::Db;
use crate::metrics::Metrics;
use crate::vim::Vim;

/// Shared daemon state; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// The configuration in force.
    pub config: Arc<Config>,
    /// The Configuration Agent's database.
    pub db: Db,
    /// The VIM instances run on.
    pub vim: Arc<dyn Vim>,
    /// This daemon's persistent id, part of every host-wide name it makes.
    pub daemon_id: Arc<str>,
    /// Where VNF binaries are looked up.
    pub vnf_dir: Arc<PathBuf>,
    /// Serialises tenant-network creation and removal.
    pub net_lock: Arc<tokio::sync::Mutex<()>>,
    /// Run-time state of live instances.
    pub registry: Arc<Registry>,
    /// Counters for `/metrics`.
    pub metrics: Arc<Metrics>,
    /// Wakes the Scheduler (an instance became available).
    pub scheduler_wake: Arc<Notify>,
}

/// Run-time state of one instance, beside its database row.
#[derive(Debug)]
pub struct InstanceRt {
    /// Whether operations may go straight to the VNF. False while its
    /// process is dead or unhealthy, and while it is being restarted.
    pub available: AtomicBool,
    /// Orders direct operations against the Scheduler's replay: direct
    /// sends share it (read), a replay holds it alone (write), so nothing
    /// overtakes the logged requests of an instance that comes back.
    pub gate: RwLock<()>,
    /// Lifecycle events (unavailable, healed, scaled…) for SSE streams.
    pub lifecycle: broadcast::Sender<Value>,
    /// A restart (heal, scale, reconfigure) is in progress.
    pub busy: AtomicBool,
    /// Restarts since the daemon started.
    pub restarts: AtomicU64,
    /// Control-socket calls in flight from the Broker and the Scheduler.
    /// A VNF queues at most 64 control requests and answers "busy" beyond;
    /// bounding our own calls well below that keeps a burst of REST
    /// operations waiting here, instead of being refused by a healthy VNF.
    pub calls: Semaphore,
    /// Requests logged for this instance (by the Scheduler) since it was
    /// registered; with `log_empty_at`, spares healthy operations a
    /// database look-up for pending requests.
    pub logged: AtomicU64,
    /// What `logged` was when the log was last found to hold nothing
    /// pending for the instance (`u64::MAX`: not yet looked). Equal to
    /// `logged` means nothing was logged since, so nothing is pending.
    pub log_empty_at: AtomicU64,
    /// Idle connections to the VNF's control socket, each with the pid of
    /// the process it was opened to. A call takes one (or opens one) and
    /// puts it back after a whole reply: a REST operation then costs no
    /// connect, and the VNF no connection thread of its own.
    pub conns: Mutex<Vec<(u32, crate::broker::VnfConn)>>,
    /// Events of the daemon's own member of the instance (deliveries,
    /// decisions), for SSE streams.
    pub events: broadcast::Sender<Value>,
    /// The daemon's own member of the instance, once started
    /// ([`crate::services::gateway`]).
    pub gateway: tokio::sync::Mutex<Option<Arc<crate::services::Gateway>>>,
}

/// Control-socket calls one instance gets at once from the daemon (the
/// Monitor's probe and event subscriptions come on top).
pub const CONTROL_CALLS: usize = 16;

impl InstanceRt {
    fn new(available: bool) -> Self {
        Self {
            available: AtomicBool::new(available),
            gate: RwLock::new(()),
            lifecycle: broadcast::channel(64).0,
            busy: AtomicBool::new(false),
            restarts: AtomicU64::new(0),
            calls: Semaphore::new(CONTROL_CALLS),
            conns: Mutex::new(Vec::with_capacity(CONTROL_CALLS)),
            logged: AtomicU64::new(0),
            log_empty_at: AtomicU64::new(u64::MAX),
            events: broadcast::channel(1024).0,
            gateway: tokio::sync::Mutex::new(None),
        }
    }

    /// An idle control connection to process `pid`, if one is kept and
    /// still usable; the others (to a process that exited or was replaced,
    /// or with an unread stray reply) are closed on the way.
    pub fn take_conn(&self, pid: u32) -> Option<crate::broker::VnfConn> {
        let mut conns = self.conns.lock().unwrap_or_else(|p| p.into_inner());
        while let Some((p, c)) = conns.pop() {
            if p == pid && c.is_reusable() {
                return Some(c);
            }
        }
        None
    }

    /// Keeps an idle control connection to process `pid` for the next call
    /// (at most [`CONTROL_CALLS`], as many as calls run at once).
    pub fn put_conn(&self, pid: u32, c: crate::broker::VnfConn) {
        let mut conns = self.conns.lock().unwrap_or_else(|p| p.into_inner());
        if conns.len() < CONTROL_CALLS {
            conns.push((pid, c));
        }
    }

    /// Whether the instance takes direct operations now.
    pub fn is_available(&self) -> bool {
        self.available.load(Ordering::Acquire)
    }
}

/// The live instances by id.
#[derive(Debug, Default)]
pub struct Registry {
    map: Mutex<HashMap<String, Arc<InstanceRt>>>,
}

impl Registry {
    /// The instance's run-time state, if it is registered.
    pub fn get(&self, id: &str) -> Option<Arc<InstanceRt>> {
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
    }

    /// Registers an instance (replacing nothing if already there).
    pub fn insert(&self, id: &str, available: bool) -> Arc<InstanceRt> {
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(id.to_owned())
            .or_insert_with(|| Arc::new(InstanceRt::new(available)))
            .clone()
    }

    /// Forgets an instance.
    pub fn remove(&self, id: &str) {
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
    }

    /// Ids of every registered instance.
    pub fn ids(&self) -> Vec<String> {
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, Write};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::{Duration, Instant};

    use dataplane::control::ControlSocket;
    use serde_json::json;

    use super::*;
    use crate::broker::VnfConn;

    #[tokio::test]
    async fn kept_control_connections_serve_only_their_process_and_are_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vnf.sock");
        let (sock, inbox) = ControlSocket::bind(&path).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        // The VNF's worker: answers every request, as a VNF loop would.
        let worker = std::thread::spawn(move || {
            while !stop2.load(Ordering::Relaxed) {
                match inbox.try_next() {
                    Some(r) => r.ok(json!("ok")),
                    None => std::thread::sleep(Duration::from_millis(1)),
                }
            }
        });
        let rt = InstanceRt::new(true);
        let health = json!({"op": "health"});

        let mut c = VnfConn::connect(&path).await.unwrap();
        assert_eq!(c.call(&health).await.unwrap(), "ok");
        rt.put_conn(7, c);
        let mut again = rt.take_conn(7).expect("kept for the same process");
        assert_eq!(again.call(&health).await.unwrap(), "ok", "and answers");
        rt.put_conn(7, again);
        // A replaced process (heal, scale) never gets the old connections:
        // they are closed on the way.
        assert!(rt.take_conn(8).is_none());
        assert!(rt.take_conn(7).is_none(), "the pool was emptied");

        for _ in 0..CONTROL_CALLS + 4 {
            rt.put_conn(7, VnfConn::connect(&path).await.unwrap());
        }
        assert_eq!(rt.conns.lock().unwrap().len(), CONTROL_CALLS);

        stop.store(true, Ordering::Relaxed);
        worker.join().unwrap();
        drop(sock);
    }

    /// Waits (bounded) until `f` holds.
    fn eventually(mut f: impl FnMut() -> bool) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if f() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        false
    }

    #[tokio::test]
    async fn a_kept_connection_is_dropped_once_its_peer_hangs_up_or_sends_unasked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("peer.sock");
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        // A peer that answers one call, then sends a reply nobody asked
        // for; on a second connection it hangs up at once (a VNF killed).
        let peer = std::thread::spawn(move || {
            let (s, _) = listener.accept().unwrap();
            let mut line = String::new();
            std::io::BufReader::new(s.try_clone().unwrap())
                .read_line(&mut line)
                .unwrap();
            (&s).write_all(b"{\"ok\":true,\"result\":1}\n").unwrap();
            rx.recv().unwrap();
            (&s).write_all(b"{\"ok\":true,\"result\":2}\n").unwrap();
            drop(listener.accept().unwrap());
            rx.recv().unwrap();
        });
        let rt = InstanceRt::new(true);
        let mut c = VnfConn::connect(&path).await.unwrap();
        assert_eq!(c.call(&json!({"op": "health"})).await.unwrap(), 1);
        assert!(c.is_reusable(), "idle after a whole reply");
        tx.send(()).unwrap();
        assert!(eventually(|| !c.is_reusable()), "a stray reply waits on it");
        rt.put_conn(1, c);
        assert!(rt.take_conn(1).is_none(), "not handed out again");

        let hung_up = VnfConn::connect(&path).await.unwrap();
        assert!(eventually(|| !hung_up.is_reusable()), "the peer hung up");
        rt.put_conn(1, hung_up);
        assert!(rt.take_conn(1).is_none(), "not handed out again");
        tx.send(()).unwrap();
        peer.join().unwrap();
    }
}
