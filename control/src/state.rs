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
            events: broadcast::channel(1024).0,
            gateway: tokio::sync::Mutex::new(None),
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
