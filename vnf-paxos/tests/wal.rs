//! The write-ahead log on real files: replay after a clean close, after a
//! crash at every byte of the last write (a torn tail), and after
//! corruption; and an acceptor rebuilt from it keeps its promises and
//! votes.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use vnf_paxos::wal::{PREALLOCATE, Wal, decode_records, encode_record};
use vnf_paxos::wire::Message;
use vnf_paxos::wire::value::Entry;
use vnf_paxos::wire::{accept, prepare};
use vnf_paxos::{
    Acceptor, AcceptorConfig, AcceptorId, Ballot, ClientId, Command, NodeId, Record, Time, Value,
};

/// A file under the system temp directory, unique to this process and
/// call, removed on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn new(tag: &str) -> Self {
        static N: AtomicU64 = AtomicU64::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let p =
            std::env::temp_dir().join(format!("vnf-paxos-{tag}-{}-{n}.wal", std::process::id()));
        let _ = std::fs::remove_file(&p);
        TempFile(p)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn ballot(round: u32) -> Ballot {
    Ballot {
        round,
        node: NodeId(1),
        incarnation: 1,
    }
}

fn value(n: u64) -> Value {
    Value::batch(vec![Command {
        client: ClientId(9),
        seq: n,
        payload: format!("payload {n}").into_bytes().into(),
    }])
}

fn records() -> Vec<Record> {
    let mut r = vec![Record::Identity(AcceptorId {
        slot: 1,
        incarnation: 7,
    })];
    for i in 0..20u64 {
        r.push(Record::Promise(ballot(i as u32 + 1)));
        r.push(Record::Accept {
            instance: i,
            ballot: ballot(i as u32 + 1),
            value: if i % 5 == 0 { Value::noop() } else { value(i) },
        });
    }
    r.push(Record::Trim(3));
    r
}

#[test]
fn records_survive_a_reopen() {
    let f = TempFile::new("reopen");
    let all = records();
    {
        let (mut wal, replayed) = Wal::open(&f.0).unwrap();
        assert!(replayed.is_empty());
        for chunk in all.chunks(7) {
            wal.append(chunk).unwrap();
            wal.sync().unwrap();
        }
        assert_eq!(wal.syncs(), all.len().div_ceil(7) as u64);
    }
    let mut bytes = Vec::new();
    for r in &all {
        encode_record(r, &mut bytes);
    }
    let len = |f: &TempFile| std::fs::metadata(&f.0).unwrap().len();
    let n = bytes.len() as u64;
    assert!(
        len(&f) > n && len(&f) <= n + PREALLOCATE,
        "written over zeros, extended ahead: {} bytes for {n}",
        len(&f)
    );
    let (mut wal, replayed) = Wal::open(&f.0).unwrap();
    assert_eq!(replayed, all, "the zeros end the log");
    assert_eq!(len(&f), bytes.len() as u64, "and are cut off on opening");
    // Appends continue after the replayed records.
    wal.append(&[Record::Trim(5)]).unwrap();
    wal.sync().unwrap();
    drop(wal);
    let (_, again) = Wal::open(&f.0).unwrap();
    assert_eq!(again.len(), all.len() + 1);
}

/// A crash can leave any prefix of the last write on disk. Whatever the
/// cut, replay returns exactly the whole records before it, cuts the file
/// there, and later appends are read back after them.
#[test]
fn a_torn_tail_at_every_byte_is_cut_off() {
    let all = records();
    let mut bytes = Vec::new();
    let mut ends = vec![0];
    for r in &all {
        encode_record(r, &mut bytes);
        ends.push(bytes.len());
    }
    let f = TempFile::new("torn");
    for cut in 0..=bytes.len() {
        std::fs::write(&f.0, &bytes[..cut]).unwrap();
        let (mut wal, replayed) = Wal::open(&f.0).unwrap();
        let whole = ends.iter().filter(|&&e| e <= cut).count() - 1;
        assert_eq!(replayed, all[..whole], "cut at {cut}");
        assert_eq!(
            std::fs::metadata(&f.0).unwrap().len() as usize,
            ends[whole],
            "file cut back to the last whole record"
        );
        // Appending after the cut (and syncing) costs a sync per cut:
        // checked at every boundary and its neighbours, and every 7th byte.
        let near_boundary = ends.iter().any(|&e| e.abs_diff(cut) <= 1);
        if !near_boundary && cut % 7 != 0 {
            continue;
        }
        wal.append(&[Record::Trim(99)]).unwrap();
        wal.sync().unwrap();
        drop(wal);
        let (_, after) = Wal::open(&f.0).unwrap();
        assert_eq!(after.len(), whole + 1, "cut at {cut}");
        assert_eq!(after.last(), Some(&Record::Trim(99)));
    }
}

/// A flipped bit anywhere in a record stops replay at that record (the
/// checksum or the length catches it), never later and never a panic.
#[test]
fn corruption_stops_replay_at_the_damaged_record() {
    let all = records();
    let mut bytes = Vec::new();
    let mut ends = vec![0];
    for r in &all {
        encode_record(r, &mut bytes);
        ends.push(bytes.len());
    }
    for at in 0..bytes.len() {
        for bit in [0x01u8, 0x80] {
            let mut b = bytes.clone();
            b[at] ^= bit;
            let (got, valid) = decode_records(&b);
            let damaged = ends.iter().filter(|&&e| e <= at).count() - 1;
            assert_eq!(got, all[..damaged], "byte {at} bit {bit:#x}");
            assert_eq!(valid, ends[damaged]);
        }
    }
}

/// The acceptor's answers wait for their batch to be synced; after a
/// crash, the acceptor rebuilt from the log keeps the promise and the
/// votes that were answered, and refuses lower ballots.
#[test]
fn an_acceptor_restarted_from_its_log_keeps_its_promises_and_votes() {
    let f = TempFile::new("acceptor");
    let id = AcceptorId {
        slot: 0,
        incarnation: 1,
    };
    let leader = NodeId(1);
    let now = Time::ZERO;
    {
        let (mut wal, _) = Wal::open(&f.0).unwrap();
        let mut a = Acceptor::new(id, AcceptorConfig::default());
        a.handle(
            now,
            leader,
            Message::Prepare(prepare::Repr {
                ballot: ballot(3),
                from: 0,
            }),
        );
        a.handle(
            now,
            leader,
            Message::Accept(accept::Repr {
                ballot: ballot(3),
                committed: 0,
                entries: vec![Entry {
                    instance: 0,
                    ballot: Ballot::ZERO,
                    value: value(1),
                }],
            }),
        );
        assert_eq!(a.poll_transmit(), None, "nothing leaves before the sync");
        let batch = a.poll_persist().unwrap();
        assert_eq!(a.poll_persist(), None, "one batch for the burst");
        wal.write_batch(&batch).unwrap();
        a.persisted(batch.id);
        let sent: Vec<_> = std::iter::from_fn(|| a.poll_transmit()).collect();
        assert_eq!(sent.len(), 2, "the promise and the vote: {sent:?}");
        // A crash here: the next vote is never synced.
        a.handle(
            now,
            leader,
            Message::Accept(accept::Repr {
                ballot: ballot(3),
                committed: 0,
                entries: vec![Entry {
                    instance: 1,
                    ballot: Ballot::ZERO,
                    value: value(2),
                }],
            }),
        );
        assert_eq!(a.poll_transmit(), None);
    }
    let (_, records) = Wal::open(&f.0).unwrap();
    let mut a = Acceptor::recover(AcceptorConfig::default(), records).unwrap();
    assert_eq!(a.id(), id);
    assert_eq!(a.promised(), ballot(3));
    a.handle(
        now,
        leader,
        Message::Prepare(prepare::Repr {
            ballot: ballot(2),
            from: 0,
        }),
    );
    match a.poll_transmit().map(|t| t.msg) {
        Some(Message::Nack(n)) => assert_eq!(n.promised, ballot(3)),
        other => panic!("{other:?}"),
    }
    a.handle(
        now,
        leader,
        Message::Prepare(prepare::Repr {
            ballot: ballot(4),
            from: 0,
        }),
    );
    assert!(
        a.poll_transmit().is_none(),
        "held until the promise is synced"
    );
    let b = a.poll_persist().unwrap();
    a.persisted(b.id);
    match a.poll_transmit().map(|t| t.msg) {
        Some(Message::Promise(p)) => {
            assert_eq!(p.entries.len(), 1, "the synced vote only");
            assert_eq!(p.entries[0].value, value(1));
            assert_eq!(p.entries[0].ballot, ballot(3));
        }
        other => panic!("{other:?}"),
    }
}
