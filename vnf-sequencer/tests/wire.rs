//! The message formats against arbitrary input: never a panic, and every
//! well-formed message survives a round trip.

use dataplane::wire::Service;
use dataplane::wire::nfvinc::{HEADER_LEN, NfvHeader};
use proptest::prelude::*;
use vnf_sequencer::wire::{
    Message, batch, data, heartbeat, messages, nack, new_epoch, report, too_old,
};
use vnf_sequencer::{Mode, ProcessId};

fn mode() -> impl Strategy<Value = Mode> {
    prop_oneof![
        Just(Mode::Reliable),
        Just(Mode::Atomic),
        Just(Mode::Fifo),
        Just(Mode::Causal)
    ]
}

/// Entries of a batch: (sender, sender seq, mode or filler, payload).
type EntrySpec = (u64, u64, Option<Mode>, Vec<u8>);

fn entries() -> impl Strategy<Value = Vec<EntrySpec>> {
    prop::collection::vec(
        (
            any::<u64>(),
            any::<u64>(),
            prop::option::of(mode()),
            prop::collection::vec(any::<u8>(), 0..40),
        )
            .prop_map(|(s, q, m, p)| (s, q, m, if m.is_some() { p } else { Vec::new() })),
        0..12,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    /// Any payload under any message type: an error or a message, never a
    /// panic; and what parses emits back to the same meaning.
    #[test]
    fn arbitrary_payloads_never_panic(msg_type in any::<u8>(), payload in prop::collection::vec(any::<u8>(), 0..300)) {
        if let Ok(m) = Message::parse(msg_type, &payload) {
            let mut out = vec![0u8; m.payload_len()];
            prop_assert_eq!(m.emit_payload(&mut out), Ok(m.payload_len()));
            prop_assert_eq!(Message::parse(msg_type, &out), Ok(m));
        }
    }

    /// Any bytes as a whole NFVinc message, and the same behind a valid
    /// header of every type.
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
        h.set_service(Service::Sequencer);
        h.set_msg_type(msg_type);
        h.set_payload_len(len);
        framed.extend_from_slice(&bytes);
        if let Ok((_, Message::Batch(_, e) | Message::Repair(_, e))) = Message::parse_nfv(&framed) {
            let n = e.len();
            prop_assert_eq!(e.count(), n);
        }
    }

    /// Every fixed-size message round-trips through an NFVinc frame.
    #[test]
    fn fixed_messages_round_trip(
        a in any::<u32>(), b in any::<u64>(), c in any::<u64>(), d in any::<u32>(), session in any::<u64>(),
    ) {
        let msgs = [
            Message::Nack(nack::Repr { epoch: a, from: ProcessId(b), first: c, count: d }),
            Message::TooOld(too_old::Repr { epoch: a, oldest: b, asked: c }),
            Message::Heartbeat(heartbeat::Repr { epoch: a, next: b, base: c }),
            Message::NewEpoch(new_epoch::Repr { epoch: a, sequencer: ProcessId(b) }),
        ];
        for m in msgs {
            let mut buf = [0u8; 128];
            let n = m.emit(session, &mut buf).unwrap();
            let (h, back) = Message::parse_nfv(&buf[..n]).unwrap();
            prop_assert_eq!(h.session_id, session);
            prop_assert_eq!(back, m);
        }
    }

    /// Data and reports, with their variable parts.
    #[test]
    fn variable_messages_round_trip(
        r in (any::<u64>(), any::<u64>(), any::<u64>(), mode()),
        payload in prop::collection::vec(any::<u8>(), 0..200),
        rep in (any::<u32>(), any::<u64>(), any::<u64>(), any::<u64>(), any::<u64>()),
        held in prop::collection::vec(any::<u8>(), 0..100),
    ) {
        let d = data::Repr { sender: ProcessId(r.0), sender_seq: r.1, barrier: r.2, mode: r.3 };
        let rp = report::Repr { epoch: rep.0, member: ProcessId(rep.1), next: rep.2, stable_through: rep.3, stable_bits: rep.4 };
        for m in [Message::Data(d, &payload), Message::EpochReport(rp, &held)] {
            let mut buf = [0u8; 512];
            let n = m.emit(1, &mut buf).unwrap();
            prop_assert_eq!(Message::parse_nfv(&buf[..n]).unwrap().1, m);
        }
    }

    /// Messages packed back to back in one datagram come apart whole and
    /// in order; a tail that is not a message comes out as one last item
    /// (refused by the parser), and any bytes at all split without a panic
    /// into pieces that add up to the datagram.
    #[test]
    fn packed_messages_split_in_order(
        payloads in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..80), 1..12),
        tail in prop::collection::vec(any::<u8>(), 0..40),
        junk in prop::collection::vec(any::<u8>(), 0..300),
    ) {
        let mut datagram = Vec::new();
        let mut sent = Vec::new();
        for (i, p) in payloads.iter().enumerate() {
            let d = data::Repr { sender: ProcessId(3), sender_seq: i as u64 + 1, barrier: 0, mode: Mode::Atomic };
            let m = Message::Data(d, p);
            let mut buf = [0u8; 256];
            let n = m.emit(7, &mut buf).unwrap();
            datagram.extend_from_slice(&buf[..n]);
            sent.push(m);
        }
        let whole = datagram.len();
        datagram.extend_from_slice(&tail);
        let got: Vec<&[u8]> = messages(&datagram).collect();
        prop_assert_eq!(got.len(), sent.len() + usize::from(!tail.is_empty()));
        for (bytes, m) in got.iter().zip(&sent) {
            prop_assert_eq!(&Message::parse_nfv(bytes).unwrap().1, m);
        }
        if !tail.is_empty() {
            prop_assert_eq!(got.last().unwrap().len(), tail.len());
            prop_assert_eq!(got.iter().map(|m| m.len()).sum::<usize>(), whole + tail.len());
        }
        let pieces: Vec<&[u8]> = messages(&junk).collect();
        prop_assert_eq!(pieces.iter().map(|m| m.len()).sum::<usize>(), junk.len());
        prop_assert!(pieces.iter().all(|m| !m.is_empty()));
    }

    /// Batches written entry by entry read back entry by entry, with
    /// consecutive sequence numbers; a full buffer refuses cleanly.
    #[test]
    fn batches_round_trip(
        es in entries(), epoch in any::<u32>(), first in 1u64..u64::MAX / 2, base in any::<u64>(), room in 24usize..600,
    ) {
        let mut buf = vec![0u8; room];
        let mut w = batch::Writer::new(&mut buf, epoch, first, base).unwrap();
        let mut written = 0;
        for (s, q, m, p) in &es {
            if w.push(ProcessId(*s), *q, *m, p).is_err() {
                break;
            }
            written += 1;
        }
        let n = w.finish();
        let p = batch::Packet::new_checked(&buf[..n]).unwrap();
        let r = batch::Repr::parse(&p);
        prop_assert_eq!((r.epoch, r.first, r.base, usize::from(r.count)), (epoch, first, base, written));
        for (i, (e, payload)) in p.into_entries().enumerate() {
            let (s, q, m, pl) = &es[i];
            prop_assert_eq!(e.seq, first + i as u64);
            prop_assert_eq!((e.sender, e.sender_seq, e.mode), (ProcessId(*s), *q, *m));
            prop_assert_eq!(payload, &pl[..]);
        }
    }
}
