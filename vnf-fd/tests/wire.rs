//! The message formats against arbitrary input: never a panic, and every
//! well-formed message survives a round trip.

use std::time::Duration;

use dataplane::wire::nfvinc::{HEADER_LEN, NfvHeader};
use proptest::prelude::*;
use vnf_fd::wire::{
    Message, MsgType, Target, ack, add, event, heartbeat, query, remove, reply, subscribe,
};
use vnf_fd::{Cause, Config, Evidence, GroupId, LinkId, ProcessId, ProcessSpec, State, Time};

fn state() -> impl Strategy<Value = State> {
    prop_oneof![
        Just(State::Correct),
        Just(State::Suspected),
        Just(State::Unreachable)
    ]
}

fn cause() -> impl Strategy<Value = Cause> {
    prop_oneof![
        Just(Cause::Timeout),
        Just(Cause::Heartbeat),
        Just(Cause::Traffic),
        Just(Cause::LinkDown),
        Just(Cause::LinkUp(Evidence::Heartbeat)),
        Just(Cause::LinkUp(Evidence::Traffic)),
    ]
}

fn target() -> impl Strategy<Value = Target> {
    prop_oneof![
        Just(Target::All),
        any::<u64>().prop_map(|p| Target::One(ProcessId(p)))
    ]
}

fn status() -> impl Strategy<Value = ack::Status> {
    use ack::Status::*;
    prop_oneof![
        Just(Ok),
        Just(UnknownProcess),
        Just(DuplicateProcess),
        Just(BadConfig),
        Just(Full),
        Just(Malformed)
    ]
}

fn spec() -> impl Strategy<Value = ProcessSpec> {
    (
        any::<u64>(),
        prop::option::of(any::<u32>()),
        prop::option::of(any::<u32>()),
        prop::option::of((any::<u64>(), any::<u64>(), any::<u32>())),
    )
        .prop_map(|(id, link, group, config)| ProcessSpec {
            id: ProcessId(id),
            link: link.map(LinkId),
            group: group.map(GroupId),
            config: config.map(|(i, m, window)| Config {
                interval: Duration::from_nanos(i),
                margin: Duration::from_nanos(m),
                window,
            }),
        })
}

fn message() -> impl Strategy<Value = Message<'static>> {
    prop_oneof![
        (any::<u64>(), any::<u64>(), any::<u64>()).prop_map(|(p, seq, sent_ns)| {
            Message::Heartbeat(heartbeat::Repr {
                process: ProcessId(p),
                seq,
                sent_ns,
            })
        }),
        (any::<u32>(), spec())
            .prop_map(|(request_id, spec)| Message::Add(add::Repr { request_id, spec })),
        (any::<u32>(), any::<u64>()).prop_map(|(request_id, p)| {
            Message::Remove(remove::Repr {
                request_id,
                process: ProcessId(p),
            })
        }),
        (any::<u32>(), target())
            .prop_map(|(request_id, target)| Message::Query(query::Repr { request_id, target })),
        (any::<u32>(), target(), any::<bool>()).prop_map(|(request_id, target, unsubscribe)| {
            Message::Subscribe(subscribe::Repr {
                request_id,
                target,
                unsubscribe,
            })
        }),
        (
            any::<u64>(),
            any::<u64>(),
            state(),
            state(),
            any::<u64>(),
            cause()
        )
            .prop_map(|(seq, p, from, to, at, cause)| {
                Message::StateChange(event::Repr {
                    seq,
                    process: ProcessId(p),
                    from,
                    to,
                    at: Time::from_nanos(at),
                    cause,
                })
            }),
        (any::<u32>(), status())
            .prop_map(|(request_id, status)| Message::Ack(ack::Repr { request_id, status })),
    ]
}

fn entry() -> impl Strategy<Value = reply::EntryRepr> {
    (
        any::<u64>(),
        state(),
        prop::option::of(any::<u32>()),
        prop::option::of(any::<u32>()),
        any::<u64>(),
    )
        .prop_map(|(p, state, link, group, since)| reply::EntryRepr {
            process: ProcessId(p),
            state,
            link: link.map(LinkId),
            group: group.map(GroupId),
            since: Time::from_nanos(since),
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    /// Any payload under any message type: an error or a message, never a
    /// panic; and what parses emits back to the same bytes' meaning.
    #[test]
    fn arbitrary_payloads_never_panic(msg_type in any::<u8>(), payload in prop::collection::vec(any::<u8>(), 0..400)) {
        if let Ok(m) = Message::parse(msg_type, &payload) {
            let mut out = vec![0u8; m.payload_len()];
            prop_assert_eq!(m.emit_payload(&mut out), Ok(m.payload_len()));
            prop_assert_eq!(Message::parse(msg_type, &out), Ok(m));
        }
    }

    /// Any bytes as a whole NFVinc message, and the same with a valid
    /// header in front of arbitrary payload bytes.
    #[test]
    fn arbitrary_frames_never_panic(
        bytes in prop::collection::vec(any::<u8>(), 0..300),
        msg_type in 0u8..10,
        len in 0u16..300,
    ) {
        let _ = Message::parse_nfv(&bytes);
        let mut framed = vec![0u8; HEADER_LEN];
        let mut h = NfvHeader::new_unchecked(&mut framed[..]);
        h.set_magic_and_version();
        h.set_service(dataplane::wire::Service::Fd);
        h.set_msg_type(msg_type);
        h.set_payload_len(len);
        framed.extend_from_slice(&bytes);
        let _ = Message::parse_nfv(&framed);
        // Views built unchecked on the same bytes are still safe to check.
        let _ = reply::Packet::new_checked(&bytes[..]).map(|p| p.entries().count());
        let _ = add::Packet::new_checked(&bytes[..]).map(|p| add::Repr::parse(&p));
        let _ = event::Packet::new_checked(&bytes[..]).map(|p| event::Repr::parse(&p));
    }

    /// Every message, emitted into an NFVinc frame and parsed back, is
    /// itself.
    #[test]
    fn messages_round_trip(m in message(), session in any::<u64>()) {
        let mut buf = [0u8; 128];
        let n = m.emit(session, &mut buf).unwrap();
        let (h, back) = Message::parse_nfv(&buf[..n]).unwrap();
        prop_assert_eq!(h.session_id, session);
        prop_assert_eq!(h.msg_type, u8::from(m.msg_type()));
        prop_assert_eq!(back, m);
    }

    /// Query replies, paged into buffers of any size, give back every
    /// entry in order.
    #[test]
    fn query_replies_page_and_round_trip(entries in prop::collection::vec(entry(), 0..100), room in 8usize..700) {
        let mut it = entries.iter().copied().peekable();
        let mut got = Vec::new();
        let mut buf = vec![0u8; room];
        if room < reply::buffer_len(1) && !entries.is_empty() {
            prop_assert!(reply::emit_from(5, &mut it, &mut buf).is_err());
            return Ok(());
        }
        loop {
            let n = reply::emit_from(5, &mut it, &mut buf).unwrap();
            let m = Message::parse(MsgType::QueryReply.into(), &buf[..n]).unwrap();
            let Message::QueryReply(r, e) = m else { panic!("not a reply") };
            prop_assert_eq!(r.request_id, 5);
            let page: Vec<_> = e.collect();
            if r.more {
                prop_assert!(!page.is_empty(), "a page that says more has something");
            }
            got.extend(page);
            if !r.more {
                break;
            }
        }
        prop_assert_eq!(got, entries);
    }
}
