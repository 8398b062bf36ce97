//! NFV-RBCast: reliable and ordered broadcast as a network service.
//!
//! (Full documentation below is being written.)

mod config;
mod ids;
mod member;
mod receiver;
mod recovery;
mod ring;
mod sender;
mod seqset;
mod sequencer;
mod time;
pub mod wire;

pub use config::{MemberConfig, SequencerConfig};
pub use ids::{Dest, Mode, ProcessId, Transmit};
pub use member::{Event, Member, MemberCounters};
pub use receiver::Delivery;
pub use sender::SendError;
pub use sequencer::{Sequencer, SequencerCounters};
pub use time::Time;
