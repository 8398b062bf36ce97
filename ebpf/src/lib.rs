//! XDP programs (C, built by `build.rs`) and their typed userspace handles.
//!
//! * [`Steering`] (`bpf/steer.c`): hands the UDP flows of established
//!   direct-channel sessions to the AF_XDP socket of the instance that owns
//!   them and lets every other frame through to the kernel.
//! * [`FaultInjector`] (`bpf/fault.c`): random UDP loss for tests.
//! * [`Liveness`] (`bpf/liveness.c`): when each watched source last sent a
//!   packet through the NFVI ports (passive liveness for the failure
//!   detector), read through a memory mapping.
//! * [`LinkWatcher`]: link-state changes of a namespace's interfaces, from
//!   rtnetlink notifications.
//!
//! Both attach through a bpf_link, so a process that dies takes its program
//! with it, and both clear programs that were attached the old way (netlink)
//! before attaching. Attaching works on the calling thread's network
//! namespace; the handles are `Send` and may then move to any thread.

mod attach;
mod counters;
mod error;
mod fault;
mod linkwatch;
mod liveness;
mod netlink;
mod steer;
mod sys;

pub use attach::AttachMode;
pub use counters::{FaultCounters, SteerCounters};
pub use error::EbpfError;
pub use fault::FaultInjector;
pub use linkwatch::{LinkEvent, LinkWatcher, in_netns};
pub use liveness::{Liveness, LivenessCounters, MAX_WATCHED};
pub use steer::{FlowRoute, MAX_QUEUES, MAX_ROUTES, MAX_SLOTS, Steering};

// The handles are created in one thread and handed to a worker, and errors
// travel across threads inside callers' error types.
const _: fn() = || {
    fn send<T: Send>() {}
    fn send_sync<T: Send + Sync>() {}
    send::<Steering>();
    send::<FaultInjector>();
    send::<Liveness>();
    send::<LinkWatcher>();
    send_sync::<EbpfError>();
};
