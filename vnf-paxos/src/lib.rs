//! VNF-Consensus: Multi-Paxos as a network service.
//!
//! (Crate documentation: see the end of the work; placeholder.)

mod acceptor;
mod client;
mod config;
mod coordinator;
mod dedup;
mod learner;
mod time;
mod transmit;
mod types;
mod votes;
pub mod wal;
pub mod wire;

pub use acceptor::{Acceptor, Counters as AcceptorCounters, PersistBatch, Record};
pub use client::{Client, Committed};
pub use config::{AcceptorConfig, ClientConfig, CoordinatorConfig, Durability, LearnerConfig};
pub use coordinator::{Coordinator, Counters as CoordinatorCounters};
pub use learner::{Delivery, Learner};
pub use time::Time;
pub use transmit::{Dest, Transmit};
pub use types::{AcceptorId, Ballot, ClientId, Command, Instance, NodeId, Value};
