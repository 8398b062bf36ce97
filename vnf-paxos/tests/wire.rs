//! The message formats against arbitrary input: never a panic, and every
//! well-formed message survives a round trip.

use dataplane::wire::nfvinc::HEADER_LEN;
use proptest::prelude::*;
use vnf_paxos::wire::value::Entry;
use vnf_paxos::wire::{
    Message, accept, accepted, admit, decided, fetch, heartbeat, join, nack, prepare, promise,
    reply, request, voted,
};
use vnf_paxos::{AcceptorId, Ballot, ClientId, Command, NodeId, Value};

fn ballot() -> impl Strategy<Value = Ballot> {
    any::<u64>().prop_map(Ballot::from_u64)
}

fn acceptor() -> impl Strategy<Value = AcceptorId> {
    (any::<u16>(), any::<u32>()).prop_map(|(slot, incarnation)| AcceptorId { slot, incarnation })
}

fn command() -> impl Strategy<Value = Command> {
    (
        any::<u64>(),
        any::<u64>(),
        prop::collection::vec(any::<u8>(), 0..40),
    )
        .prop_map(|(c, seq, p)| Command {
            client: ClientId(c),
            seq,
            payload: p.into(),
        })
}

fn value() -> impl Strategy<Value = Value> {
    prop::collection::vec(command(), 0..4).prop_map(Value::batch)
}

fn entries(with_ballot: bool) -> impl Strategy<Value = Vec<Entry>> {
    prop::collection::vec(
        (any::<u64>(), ballot(), value()).prop_map(move |(instance, b, value)| Entry {
            instance,
            ballot: if with_ballot { b } else { Ballot::ZERO },
            value,
        }),
        0..5,
    )
}

fn message() -> impl Strategy<Value = Message> {
    prop_oneof![
        (ballot(), any::<u64>())
            .prop_map(|(ballot, from)| Message::Prepare(prepare::Repr { ballot, from })),
        (
            ballot(),
            acceptor(),
            any::<u64>(),
            any::<u64>(),
            any::<u64>(),
            entries(true)
        )
            .prop_map(|(ballot, acceptor, trim, lo, hi, entries)| {
                Message::Promise(promise::Repr {
                    ballot,
                    acceptor,
                    trim,
                    lo,
                    hi,
                    entries,
                })
            }),
        (ballot(), any::<u64>(), entries(false)).prop_map(|(ballot, committed, entries)| {
            Message::Accept(accept::Repr {
                ballot,
                committed,
                entries,
            })
        }),
        (ballot(), acceptor(), entries(false)).prop_map(|(ballot, acceptor, entries)| {
            Message::Accepted(accepted::Repr {
                ballot,
                acceptor,
                entries,
            })
        }),
        (ballot(), ballot(), acceptor()).prop_map(|(refused, promised, acceptor)| {
            Message::Nack(nack::Repr {
                refused,
                promised,
                acceptor,
            })
        }),
        (
            ballot(),
            any::<u64>(),
            prop::collection::vec(any::<u32>(), 0..8)
        )
            .prop_map(|(ballot, committed, incarnations)| {
                Message::Heartbeat(heartbeat::Repr {
                    ballot,
                    committed,
                    incarnations,
                })
            }),
        command().prop_map(|command| Message::Request(request::Repr { command })),
        (
            any::<u64>(),
            any::<u64>(),
            prop_oneof![
                any::<u64>().prop_map(reply::Status::Decided),
                prop::option::of(any::<u16>().prop_map(NodeId)).prop_map(reply::Status::NotLeader),
            ]
        )
            .prop_map(|(c, seq, status)| Message::Reply(reply::Repr {
                client: ClientId(c),
                seq,
                status
            })),
        (any::<u64>(), any::<u64>())
            .prop_map(|(from, to)| Message::Fetch(fetch::Repr { from, to })),
        entries(false).prop_map(|entries| Message::Decided(decided::Repr { entries })),
        acceptor().prop_map(|acceptor| Message::Join(join::Repr { acceptor })),
        (ballot(), any::<u64>(), acceptor()).prop_map(|(ballot, trim, acceptor)| {
            Message::Admit(admit::Repr {
                ballot,
                trim,
                acceptor,
            })
        }),
        (
            ballot(),
            acceptor(),
            prop::collection::vec(any::<u64>(), 0..40)
        )
            .prop_map(|(ballot, acceptor, instances)| {
                Message::Voted(voted::Repr {
                    ballot,
                    acceptor,
                    instances,
                })
            }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Any bytes, as any message type: an error or a message, no panic.
    #[test]
    fn arbitrary_payloads_never_panic(t in 0u8..17, bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let _ = Message::parse(t, &bytes);
    }

    /// Any bytes after a valid NFVinc header for consensus: no panic.
    #[test]
    fn arbitrary_frames_never_panic(t in 0u8..17, bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let mut header = [0u8; 64];
        Message::Fetch(fetch::Repr { from: 0, to: 0 }).emit(1, &mut header).unwrap();
        let mut frame = header[..HEADER_LEN].to_vec();
        frame.extend_from_slice(&bytes);
        frame[4] = t;
        frame[6..8].copy_from_slice(&(bytes.len() as u16).to_be_bytes());
        let _ = Message::parse_nfv(&frame);
    }

    /// Emit then parse gives the message back; a byte short is an error.
    #[test]
    fn emit_then_parse_round_trips(m in message(), session in any::<u64>()) {
        let mut buf = vec![0u8; HEADER_LEN + m.payload_len()];
        let n = m.emit(session, &mut buf).unwrap();
        prop_assert_eq!(n, buf.len());
        let (h, back) = Message::parse_nfv(&buf).unwrap();
        prop_assert_eq!(h.session_id, session);
        prop_assert_eq!(&back, &m);
        prop_assert!(m.emit(session, &mut buf[..n - 1]).is_err());
        prop_assert!(Message::parse(m.msg_type().into(), &buf[HEADER_LEN..n - 1]).is_err()
            || m.payload_len() == 0);
    }
}
