//! A shared stop flag, set by a signal or by hand.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// A stop flag shared by the workers of one process.
#[derive(Debug, Clone, Default)]
pub struct Shutdown(Arc<AtomicBool>);

impl Shutdown {
    /// A flag no signal will set.
    pub fn new() -> Self {
        Self::default()
    }

    /// A flag that SIGINT and SIGTERM set. A second signal of either kind
    /// while the first is being handled ends the process at once, so a wedged
    /// shutdown can still be interrupted.
    pub fn on_signals() -> std::io::Result<Self> {
        let s = Self::new();
        for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            signal_hook::flag::register_conditional_shutdown(sig, 1, s.0.clone())?;
            signal_hook::flag::register(sig, s.0.clone())?;
        }
        Ok(s)
    }

    /// Asks every holder to stop.
    pub fn trigger(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    /// True once stopping was asked for.
    #[inline]
    pub fn is_triggered(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}
