//! Values and entry lists: the variable-length parts that several messages
//! share.
//!
//! A value (a batch of commands; zero commands is the no-op):
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | 0 | 2 | command count |
//! | 2 | 1 | format: 0 plain, 1 runs |
//! | 3 | 1 | reserved |
//! | 4 | … | commands, in the format's layout |
//!
//! Plain (format 0), one header per command:
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | 0 | 8 | client id |
//! | 8 | 8 | client sequence number |
//! | 16 | 2 | payload length |
//! | 18 | … | payload |
//!
//! Runs (format 1, what is sent): consecutive commands of one client with
//! consecutive sequence numbers share one header, so a client's batch costs
//! 18 bytes plus 2 per command rather than 18 per command (a 16-byte
//! command takes 18 bytes instead of 34, and a datagram carries nearly
//! twice as many). Runs follow one another until the count is reached:
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | 0 | 8 | client id |
//! | 8 | 8 | sequence number of the run's first command |
//! | 16 | 2 | commands in the run *n* (at least 1, at most those left) |
//! | 18 | … | *n* times: payload length (2), payload |
//!
//! The *k*-th command of a run has the first sequence number plus *k*. Both
//! formats are read (write-ahead logs written before runs existed hold
//! plain values); a run that is empty, longer than the count left, or whose
//! numbers would pass `u64::MAX`, and any other format, is malformed.
//!
//! An entry of a list is an instance number (8 bytes), in a promise also the
//! ballot the value was accepted in (8 bytes), then a value.

use std::sync::Arc;

use super::{MsgError, check_len, check_room, get_u16, get_u64};
use crate::{Ballot, ClientId, Command, Instance, Payload, Value};

/// Bytes before a value's commands.
pub const VALUE_HEADER_LEN: usize = 4;
/// Bytes before a command's payload in the plain format.
pub const COMMAND_HEADER_LEN: usize = 18;
/// Bytes of a run's header (client, first sequence number, length).
pub const RUN_HEADER_LEN: usize = 18;
/// Bytes before each payload inside a run (its length).
pub const RUN_COMMAND_HEADER_LEN: usize = 2;
/// The longest payload a command may carry.
pub const MAX_PAYLOAD: usize = u16::MAX as usize;
/// Format byte: one header per command.
const FORMAT_PLAIN: u8 = 0;
/// Format byte: runs of a client's consecutive commands.
const FORMAT_RUNS: u8 = 1;

/// One entry of a list: an instance, the ballot it was accepted in (only
/// promises carry it; [`Ballot::ZERO`] elsewhere) and its value.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Entry {
    /// The instance.
    pub instance: Instance,
    /// The ballot the value was accepted in.
    pub ballot: Ballot,
    /// The value.
    pub value: Value,
}

/// Bytes an entry takes, with or without its ballot.
pub fn entry_len(e: &Entry, with_ballot: bool) -> usize {
    8 + if with_ballot { 8 } else { 0 } + e.value.wire_len()
}

/// Bytes a command of `client` numbered `seq` with a `payload_len`-byte
/// payload adds to a value (as written, in runs) after `prev`, the client
/// and number of the command before it: its payload and length, plus a
/// run header unless it is the same client's next number.
#[inline]
pub fn run_cost(
    prev: Option<(ClientId, u64)>,
    client: ClientId,
    seq: u64,
    payload_len: usize,
) -> usize {
    let header = if continues(prev, client, seq) {
        0
    } else {
        RUN_HEADER_LEN
    };
    header + RUN_COMMAND_HEADER_LEN + payload_len
}

/// Whether `client`'s command `seq` continues the run that `prev` (the
/// client and number of the command before it) ends.
#[inline]
fn continues(prev: Option<(ClientId, u64)>, client: ClientId, seq: u64) -> bool {
    prev.is_some_and(|(c, s)| c == client && s.checked_add(1) == Some(seq))
}

/// Bytes `c` adds to a value (as written, in runs) after `prev`
/// ([`run_cost`]).
#[inline]
pub fn command_cost(prev: Option<&Command>, c: &Command) -> usize {
    run_cost(
        prev.map(|p| (p.client, p.seq)),
        c.client,
        c.seq,
        c.payload.len(),
    )
}

/// Bytes a value of `commands` takes as written.
pub fn commands_len(commands: &[Command]) -> usize {
    let mut len = VALUE_HEADER_LEN;
    let mut prev = None;
    for c in commands {
        len += command_cost(prev, c);
        prev = Some(c);
    }
    len
}

/// Walks the value at the front of `b`, in either format, handing each
/// command's client, number and payload to `f`; returns the bytes it
/// took. Nothing is handed out past the first malformed byte, but what
/// came before it was: callers that build keep nothing on error.
#[inline]
fn walk_value(b: &[u8], mut f: impl FnMut(ClientId, u64, &[u8])) -> Result<usize, MsgError> {
    check_len("value", VALUE_HEADER_LEN, b.len())?;
    let count = usize::from(get_u16(b, 0..2));
    let mut at = VALUE_HEADER_LEN;
    match b[2] {
        FORMAT_PLAIN => {
            for _ in 0..count {
                check_len("command", at + COMMAND_HEADER_LEN, b.len())?;
                let len = usize::from(get_u16(b, at + 16..at + 18));
                let end = at + COMMAND_HEADER_LEN + len;
                check_len("command payload", end, b.len())?;
                f(
                    ClientId(get_u64(b, at..at + 8)),
                    get_u64(b, at + 8..at + 16),
                    &b[at + COMMAND_HEADER_LEN..end],
                );
                at = end;
            }
        }
        FORMAT_RUNS => {
            let mut left = count;
            while left > 0 {
                check_len("run", at + RUN_HEADER_LEN, b.len())?;
                let client = ClientId(get_u64(b, at..at + 8));
                let first = get_u64(b, at + 8..at + 16);
                let n = usize::from(get_u16(b, at + 16..at + 18));
                if n == 0 || n > left || first.checked_add(n as u64 - 1).is_none() {
                    return Err(MsgError::BadValue {
                        field: "value run length",
                        value: n.min(255) as u8,
                    });
                }
                at += RUN_HEADER_LEN;
                for k in 0..n {
                    check_len("command", at + RUN_COMMAND_HEADER_LEN, b.len())?;
                    let len = usize::from(get_u16(b, at..at + 2));
                    let end = at + RUN_COMMAND_HEADER_LEN + len;
                    check_len("command payload", end, b.len())?;
                    f(
                        client,
                        first + k as u64,
                        &b[at + RUN_COMMAND_HEADER_LEN..end],
                    );
                    at = end;
                }
                left -= n;
            }
        }
        other => {
            return Err(MsgError::BadValue {
                field: "value format",
                value: other,
            });
        }
    }
    Ok(at)
}

/// Checks the value at the front of `b` as [`parse_value`] would, without
/// building it; returns the bytes it takes. The acceptor's wire path uses
/// it to validate and then copy values without allocating.
#[inline]
pub fn scan_value(b: &[u8]) -> Result<usize, MsgError> {
    walk_value(b, |_, _, _| {})
}

/// Reads a value at the front of `b`; returns it and the bytes it took.
pub fn parse_value(b: &[u8]) -> Result<(Value, usize), MsgError> {
    let (commands, n) = parse_commands(b)?;
    Ok((Value::batch(commands), n))
}

/// Reads the commands of a value (or of a [`super::submit`]) at the front
/// of `b`; returns them and the bytes they took.
pub fn parse_commands(b: &[u8]) -> Result<(Vec<Command>, usize), MsgError> {
    // A first walk checks the value and finds its end, the second (over
    // the copy) cuts.
    let n = scan_value(b)?;
    let (commands, _) = parse_value_bytes(&b[..n])?;
    Ok((commands, n))
}

/// Reads the commands of `value`, which must be exactly one value's bytes
/// (as [`scan_value`] measured them: a caller that scanned already walks
/// them once more, not twice); returns them and the copy of the bytes
/// that their payloads are cut from, which a learner keeps to answer
/// fetches. Bytes that are not one whole value are an error.
pub fn parse_value_bytes(value: &[u8]) -> Result<(Vec<Command>, Arc<[u8]>), MsgError> {
    check_len("value", VALUE_HEADER_LEN, value.len())?;
    let count = usize::from(get_u16(value, 0..2));
    // Capacity from what the bytes can hold, never from the count alone: a
    // forged count must not allocate.
    let most = (value.len() - VALUE_HEADER_LEN) / RUN_COMMAND_HEADER_LEN;
    let mut commands = Vec::with_capacity(count.min(most));
    // One copy of the value's bytes, which every payload is cut from:
    // cheaper than an allocation per command.
    let buf: Arc<[u8]> = Arc::from(value);
    let base = buf.as_ptr() as usize;
    let n = walk_value(&buf, |client, seq, payload| {
        commands.push(Command {
            client,
            seq,
            payload: Payload::slice_of(&buf, payload.as_ptr() as usize - base, payload.len()),
        })
    })?;
    if n != buf.len() {
        return Err(MsgError::BadValue {
            field: "value length",
            value: 0,
        });
    }
    Ok((commands, buf))
}

/// Writes `v` at the front of `b`; returns the bytes it took.
pub fn emit_value(v: &Value, b: &mut [u8]) -> Result<usize, MsgError> {
    emit_value_of(v.commands(), b)
}

/// Writes `commands` as a value (in runs) at the front of `b`; returns the
/// bytes they took.
pub fn emit_value_of(commands: &[Command], b: &mut [u8]) -> Result<usize, MsgError> {
    emit_runs(
        commands.iter().map(|c| (c.client, c.seq, &c.payload[..])),
        b,
    )
}

/// Writes one client's commands, `(sequence number, payload)` in order, as
/// a value (in runs) at the front of `b`, byte for byte what
/// [`emit_value_of`] writes for the same commands; returns the bytes they
/// took. For a sender that keeps its payloads in its own buffer rather
/// than as [`Command`]s (the client).
pub fn emit_client_value<'a>(
    client: ClientId,
    commands: impl Iterator<Item = (u64, &'a [u8])> + Clone,
    b: &mut [u8],
) -> Result<usize, MsgError> {
    emit_runs(commands.map(move |(seq, p)| (client, seq, p)), b)
}

/// Writes commands, `(client, sequence number, payload)` in order, as a
/// value in runs at the front of `b`; returns the bytes they took. A
/// command continues the open run when it is the same client's next
/// number.
fn emit_runs<'a>(
    commands: impl Iterator<Item = (ClientId, u64, &'a [u8])> + Clone,
    b: &mut [u8],
) -> Result<usize, MsgError> {
    let mut len = VALUE_HEADER_LEN;
    let mut prev = None;
    for (client, seq, payload) in commands.clone() {
        len += run_cost(prev, client, seq, payload.len());
        prev = Some((client, seq));
    }
    check_room("value", len, b.len())?;
    let mut count: u16 = 0;
    let mut at = VALUE_HEADER_LEN;
    // Where the open run's length goes, and its length so far.
    let mut run_len_at = 0;
    let mut run_len: u16 = 0;
    let mut prev = None;
    for (client, seq, payload) in commands {
        count = count.checked_add(1).ok_or(MsgError::TooMany {
            what: "commands in a value",
        })?;
        let plen = u16::try_from(payload.len()).map_err(|_| MsgError::TooMany {
            what: "payload bytes",
        })?;
        if continues(prev, client, seq) {
            run_len += 1;
        } else {
            if run_len > 0 {
                b[run_len_at..run_len_at + 2].copy_from_slice(&run_len.to_be_bytes());
            }
            b[at..at + 8].copy_from_slice(&client.0.to_be_bytes());
            b[at + 8..at + 16].copy_from_slice(&seq.to_be_bytes());
            run_len_at = at + 16;
            run_len = 1;
            at += RUN_HEADER_LEN;
        }
        b[at..at + 2].copy_from_slice(&plen.to_be_bytes());
        let start = at + RUN_COMMAND_HEADER_LEN;
        b[start..start + payload.len()].copy_from_slice(payload);
        at = start + payload.len();
        prev = Some((client, seq));
    }
    if run_len > 0 {
        b[run_len_at..run_len_at + 2].copy_from_slice(&run_len.to_be_bytes());
    }
    b[0..2].copy_from_slice(&count.to_be_bytes());
    b[2] = FORMAT_RUNS;
    b[3] = 0;
    debug_assert_eq!(at, len);
    Ok(len)
}

/// Reads `count` entries from `b`.
pub fn parse_entries(b: &[u8], count: usize, with_ballot: bool) -> Result<Vec<Entry>, MsgError> {
    let head = if with_ballot { 16 } else { 8 };
    let mut out = Vec::with_capacity(count.min(b.len() / (head + VALUE_HEADER_LEN)));
    let mut at = 0;
    for _ in 0..count {
        check_len("entry", at + head, b.len())?;
        let instance = get_u64(b, at..at + 8);
        let ballot = if with_ballot {
            Ballot::from_u64(get_u64(b, at + 8..at + 16))
        } else {
            Ballot::ZERO
        };
        let (value, n) = parse_value(&b[at + head..])?;
        out.push(Entry {
            instance,
            ballot,
            value,
        });
        at += head + n;
    }
    Ok(out)
}

/// The `count` entries without ballots (instance, value) at the front of
/// `list`, in place: each instance and its value's bytes (checked, and
/// measured, by one walk), for a receiver that reads only some values or
/// builds them its own way. A malformed entry is an error, and ends the
/// list; a receiver that must change nothing on malformed input holds
/// back what it read until the list has ended well.
pub fn entry_bytes(list: &[u8], count: usize) -> EntryBytes<'_> {
    EntryBytes { list, left: count }
}

/// The entries of a list, in place ([`entry_bytes`]).
#[derive(Debug, Clone)]
pub struct EntryBytes<'a> {
    list: &'a [u8],
    left: usize,
}

impl<'a> Iterator for EntryBytes<'a> {
    type Item = Result<(Instance, &'a [u8]), MsgError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let entry = (|| {
            check_len("entry", 8, self.list.len())?;
            let n = scan_value(&self.list[8..])?;
            Ok((get_u64(self.list, 0..8), 8 + n))
        })();
        match entry {
            Ok((instance, end)) => {
                let value = &self.list[8..end];
                self.list = &self.list[end..];
                Some(Ok((instance, value)))
            }
            Err(e) => {
                self.left = 0;
                Some(Err(e))
            }
        }
    }
}

/// Writes `entries` at the front of `b`; returns the bytes they took.
pub fn emit_entries(entries: &[Entry], b: &mut [u8], with_ballot: bool) -> Result<usize, MsgError> {
    let head = if with_ballot { 16 } else { 8 };
    let mut at = 0;
    for e in entries {
        check_room("entry", at + head, b.len())?;
        b[at..at + 8].copy_from_slice(&e.instance.to_be_bytes());
        if with_ballot {
            b[at + 8..at + 16].copy_from_slice(&e.ballot.to_u64().to_be_bytes());
        }
        at += head;
        at += emit_value(&e.value, &mut b[at..])?;
    }
    Ok(at)
}

/// The entry count of a list as its 2-byte field.
pub fn count_u16(entries: &[Entry]) -> Result<u16, MsgError> {
    u16::try_from(entries.len()).map_err(|_| MsgError::TooMany {
        what: "entries in a message",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    static PLAIN: [u8; 4 + 18 + 3] = [
        0, 1, 0, 0, // one command, plain
        0, 0, 0, 0, 0, 0, 0, 7, // client 7
        0, 0, 0, 0, 0, 0, 0, 9, // seq 9
        0, 3, b'a', b'b', b'c', // 3 bytes
    ];

    static RUNS: [u8; 4 + 18 + 5 + 3 + 18 + 3] = [
        0, 3, 1, 0, // three commands, runs
        0, 0, 0, 0, 0, 0, 0, 7, // client 7
        0, 0, 0, 0, 0, 0, 0, 9, // from seq 9
        0, 2, // two commands
        0, 3, b'a', b'b', b'c', // seq 9
        0, 1, b'd', // seq 10
        0, 0, 0, 0, 0, 0, 0, 8, // client 8
        0, 0, 0, 0, 0, 0, 0, 1, // from seq 1
        0, 1, // one command
        0, 1, b'e', // seq 1
    ];

    fn command(client: u64, seq: u64, payload: &[u8]) -> Command {
        Command::of(client, seq, payload)
    }

    #[test]
    fn plain_values_are_read() {
        let (v, n) = parse_value(&PLAIN).unwrap();
        assert_eq!(n, PLAIN.len());
        assert_eq!(v.commands(), &[command(7, 9, b"abc")]);
        assert_eq!(scan_value(&PLAIN), Ok(PLAIN.len()));
        for cut in 0..PLAIN.len() {
            assert!(parse_value(&PLAIN[..cut]).is_err(), "cut at {cut}");
            assert!(scan_value(&PLAIN[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn runs_round_trip_and_short_is_an_error() {
        let v = Value::batch(vec![
            command(7, 9, b"abc"),
            command(7, 10, b"d"),
            command(8, 1, b"e"),
        ]);
        assert_eq!(v.wire_len(), RUNS.len());
        let mut b = [0xffu8; RUNS.len()];
        assert_eq!(emit_value(&v, &mut b).unwrap(), RUNS.len());
        assert_eq!(b, RUNS);
        let (back, n) = parse_value(&RUNS).unwrap();
        assert_eq!((back, n), (v.clone(), RUNS.len()));
        assert_eq!(scan_value(&RUNS), Ok(RUNS.len()));
        for cut in 0..RUNS.len() {
            assert!(parse_value(&RUNS[..cut]).is_err(), "cut at {cut}");
            assert!(scan_value(&RUNS[..cut]).is_err(), "cut at {cut}");
            assert!(emit_value(&v, &mut b[..cut]).is_err());
        }
    }

    #[test]
    fn bad_runs_and_formats_are_errors() {
        let mut empty_run = RUNS;
        empty_run[21] = 0;
        assert!(scan_value(&empty_run).is_err());
        let mut too_long = RUNS;
        too_long[21] = 4; // more than the three counted
        assert!(scan_value(&too_long).is_err());
        let mut overflow = RUNS;
        overflow[12..20].fill(0xff); // from u64::MAX, two commands
        assert!(scan_value(&overflow).is_err());
        let mut format = RUNS;
        format[2] = 2;
        assert!(scan_value(&format).is_err());
        assert!(parse_value(&format).is_err());
    }

    #[test]
    fn a_forged_count_allocates_nothing_and_fails() {
        assert!(parse_value(&[0xff, 0xff, 0, 0]).is_err());
        assert!(parse_value(&[0xff, 0xff, 1, 0]).is_err());
        assert!(parse_entries(&[0; 8], usize::from(u16::MAX), true).is_err());
    }

    #[test]
    fn a_client_value_from_its_own_buffer_is_written_as_from_commands() {
        let cs = [
            command(7, 9, b"abc"),
            command(7, 10, b"d"),
            command(7, 12, b""),
            command(7, u64::MAX, b"e"),
        ];
        for n in 0..=cs.len() {
            let mut want = [0u8; 128];
            let len = emit_value_of(&cs[..n], &mut want).unwrap();
            let items = cs[..n].iter().map(|c| (c.seq, &c.payload[..]));
            let mut got = [0u8; 128];
            assert_eq!(
                emit_client_value(ClientId(7), items.clone(), &mut got),
                Ok(len)
            );
            assert_eq!(got[..len], want[..len], "{n} commands");
            assert!(
                emit_client_value(
                    ClientId(7),
                    cs[..n].iter().map(|c| (c.seq, &c.payload[..])),
                    &mut got[..len - 1]
                )
                .is_err()
            );
        }
    }

    #[test]
    fn value_bytes_must_be_one_whole_value() {
        let (commands, buf) = parse_value_bytes(&RUNS).unwrap();
        assert_eq!(Value::batch(commands), parse_value(&RUNS).unwrap().0);
        assert_eq!(&buf[..], &RUNS[..]);
        let mut longer = RUNS.to_vec();
        longer.push(0);
        assert!(parse_value_bytes(&longer).is_err(), "a byte past the value");
        assert!(parse_value_bytes(&RUNS[..RUNS.len() - 1]).is_err());
    }

    #[test]
    fn entries_in_place_are_checked_one_by_one() {
        let mut list = Vec::new();
        for (instance, v) in [(4u64, &PLAIN[..]), (9, &RUNS[..])] {
            list.extend_from_slice(&instance.to_be_bytes());
            list.extend_from_slice(v);
        }
        let got: Vec<_> = entry_bytes(&list, 2).collect::<Result<_, _>>().unwrap();
        assert_eq!(got, vec![(4, &PLAIN[..]), (9, &RUNS[..])]);
        assert_eq!(entry_bytes(&list, 1).count(), 1, "the count rules");
        // Cut inside the second value: the first comes, then an error, then
        // nothing.
        let mut it = entry_bytes(&list[..list.len() - 1], 3);
        assert_eq!(it.next(), Some(Ok((4, &PLAIN[..]))));
        assert!(matches!(it.next(), Some(Err(_))));
        assert_eq!(it.next(), None);
    }

    #[test]
    fn a_batch_of_one_client_takes_two_bytes_a_command_beyond_its_header() {
        let batch: Vec<Command> = (1..=40).map(|s| command(3, s, &[0; 16])).collect();
        assert_eq!(commands_len(&batch), 4 + 18 + 40 * 18);
        let mut prev = None;
        let mut total = VALUE_HEADER_LEN;
        for c in &batch {
            total += command_cost(prev, c);
            prev = Some(c);
        }
        assert_eq!(total, commands_len(&batch));
    }
}
