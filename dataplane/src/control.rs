//! The local control socket every VNF binary offers to the control plane.
//!
//! A Unix stream socket speaking one JSON object per line:
//!
//! | request | reply |
//! | --- | --- |
//! | `{"op": "<name>", ...}` | `{"ok": true, "result": ...}` or `{"ok": false, "error": "..."}` |
//! | `{"op": "subscribe"}` | `{"ok": true, "result": "subscribed"}`, then one `{"event": ...}` line per event the VNF publishes, until the client hangs up |
//!
//! Operations other than `subscribe` are the VNF's own (each binary
//! documents them; all answer `health` and `counters`). They reach the VNF's
//! worker through [`Inbox::try_next`], which the worker calls between bursts:
//! the VNF's state stays owned by its one thread, with no lock. The socket's
//! threads answer malformed lines, a full queue and a worker that does not
//! answer in time themselves, so a bad client can neither crash nor stall the
//! dataplane.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use serde_json::{Value, json};

/// Requests waiting for the worker; beyond this a client is told "busy".
const REQUEST_QUEUE: usize = 64;
/// Events waiting for the publisher thread; beyond this they are counted as
/// dropped rather than stall the worker.
const EVENT_QUEUE: usize = 4096;
/// How long a client waits for the worker before it is told it did not answer.
const WORKER_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest request line accepted.
const MAX_LINE: usize = 64 * 1024;

/// One request from a client, to be answered by the VNF's worker.
#[derive(Debug)]
pub struct Request {
    body: Value,
    reply: SyncSender<Value>,
}

impl Request {
    /// The `op` field.
    pub fn op(&self) -> &str {
        self.body.get("op").and_then(Value::as_str).unwrap_or("")
    }

    /// The whole request object.
    pub fn body(&self) -> &Value {
        &self.body
    }

    /// Answers with a result.
    pub fn ok(self, result: Value) {
        // The client may have given up (timeout, hang-up): nothing to do.
        let _ = self.reply.try_send(json!({"ok": true, "result": result}));
    }

    /// Answers with an error message for the client.
    pub fn err(self, message: impl std::fmt::Display) {
        let _ = self
            .reply
            .try_send(json!({"ok": false, "error": message.to_string()}));
    }

    /// Answers `Ok` with its value, `Err` with its message.
    pub fn answer<E: std::fmt::Display>(self, result: Result<Value, E>) {
        match result {
            Ok(v) => self.ok(v),
            Err(e) => self.err(e),
        }
    }
}

/// The worker's side of the control socket: requests in, events out.
#[derive(Debug)]
pub struct Inbox {
    requests: Receiver<Request>,
    events: SyncSender<Value>,
    dropped_events: Arc<AtomicU64>,
}

impl Inbox {
    /// The next request, if any. Never blocks.
    pub fn try_next(&self) -> Option<Request> {
        self.requests.try_recv().ok()
    }

    /// Sends `event` to every subscriber. Never blocks: when subscribers
    /// fall behind by more than a queue's worth, the event is dropped and
    /// counted ([`Inbox::dropped_events`]).
    pub fn publish(&self, event: Value) {
        if let Err(TrySendError::Full(_)) = self.events.try_send(event) {
            self.dropped_events.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Events dropped because subscribers were too slow.
    pub fn dropped_events(&self) -> u64 {
        self.dropped_events.load(Ordering::Relaxed)
    }
}

/// A bound control socket; removes its file when dropped.
#[derive(Debug)]
pub struct ControlSocket {
    path: PathBuf,
    stop: Arc<AtomicBool>,
}

impl ControlSocket {
    /// Binds `path` (replacing a stale socket file left by a dead process)
    /// and starts serving it on background threads.
    pub fn bind(path: &Path) -> io::Result<(ControlSocket, Inbox)> {
        if path.exists() {
            if UnixStream::connect(path).is_ok() {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!("{} is served by a running process", path.display()),
                ));
            }
            std::fs::remove_file(path)?;
        }
        let listener = UnixListener::bind(path)?;
        let (req_tx, req_rx) = mpsc::sync_channel(REQUEST_QUEUE);
        let (ev_tx, ev_rx) = mpsc::sync_channel(EVENT_QUEUE);
        let subscribers = Arc::new(Mutex::new(Vec::<UnixStream>::new()));
        let stop = Arc::new(AtomicBool::new(false));

        let subs = subscribers.clone();
        thread::Builder::new()
            .name("control-events".into())
            .spawn(move || publish_events(ev_rx, subs))?;
        let stop2 = stop.clone();
        thread::Builder::new()
            .name("control-accept".into())
            .spawn(move || {
                for conn in listener.incoming() {
                    if stop2.load(Ordering::Relaxed) {
                        break;
                    }
                    let Ok(conn) = conn else { continue };
                    let (req_tx, subs) = (req_tx.clone(), subscribers.clone());
                    let spawned = thread::Builder::new()
                        .name("control-conn".into())
                        .spawn(move || serve_connection(conn, req_tx, subs));
                    if let Err(e) = spawned {
                        tracing::warn!(error = %e, "control socket: cannot serve a connection");
                    }
                }
            })?;
        Ok((
            ControlSocket {
                path: path.to_owned(),
                stop,
            },
            Inbox {
                requests: req_rx,
                events: ev_tx,
                dropped_events: Arc::new(AtomicU64::new(0)),
            },
        ))
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ControlSocket {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the accept loop so that it sees the flag.
        let _ = UnixStream::connect(&self.path);
        let _ = std::fs::remove_file(&self.path);
    }
}

fn publish_events(events: Receiver<Value>, subscribers: Arc<Mutex<Vec<UnixStream>>>) {
    for event in events {
        let mut line = json!({ "event": event }).to_string();
        line.push('\n');
        let mut subs = subscribers.lock().unwrap_or_else(|p| p.into_inner());
        // A subscriber that hung up (or stalls past its write timeout) is
        // dropped; the others still get the event.
        subs.retain_mut(|s| s.write_all(line.as_bytes()).is_ok());
    }
}

fn serve_connection(
    conn: UnixStream,
    requests: SyncSender<Request>,
    subscribers: Arc<Mutex<Vec<UnixStream>>>,
) {
    let Ok(mut out) = conn.try_clone() else {
        return;
    };
    let mut lines = BufReader::new(conn);
    let mut line = String::new();
    loop {
        line.clear();
        match lines
            .by_ref()
            .take(MAX_LINE as u64 + 1)
            .read_line(&mut line)
        {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let reply = if line.len() > MAX_LINE {
            // The rest of an over-long line cannot be resynchronised.
            let _ = writeln!(
                out,
                "{}",
                json!({"ok": false, "error": format!("request longer than {MAX_LINE} bytes")})
            );
            return;
        } else {
            match serde_json::from_str::<Value>(line.trim()) {
                Err(e) => json!({"ok": false, "error": format!("not a JSON request: {e}")}),
                Ok(body) if !body.get("op").is_some_and(Value::is_string) => {
                    json!({"ok": false, "error": "request has no \"op\" string"})
                }
                Ok(body) if body["op"] == "subscribe" => {
                    let ack = json!({"ok": true, "result": "subscribed"});
                    if writeln!(out, "{ack}").is_err() {
                        return;
                    }
                    let _ = out.set_write_timeout(Some(WORKER_TIMEOUT));
                    subscribers
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(out);
                    return;
                }
                Ok(body) => forward(body, &requests),
            }
        };
        // One write per reply (a formatted writeln! on the bare socket is
        // several syscalls, each a wake-up for the reader).
        let mut reply = reply.to_string();
        reply.push('\n');
        if out.write_all(reply.as_bytes()).is_err() {
            return;
        }
    }
}

fn forward(body: Value, requests: &SyncSender<Request>) -> Value {
    let (tx, rx) = mpsc::sync_channel(1);
    match requests.try_send(Request { body, reply: tx }) {
        Ok(()) => {}
        Err(TrySendError::Full(_)) => {
            return json!({"ok": false, "error": "VNF busy: too many control requests queued"});
        }
        Err(TrySendError::Disconnected(_)) => {
            return json!({"ok": false, "error": "VNF is shutting down"});
        }
    }
    match rx.recv_timeout(WORKER_TIMEOUT) {
        Ok(v) => v,
        Err(RecvTimeoutError::Timeout) => {
            json!({"ok": false, "error": "VNF worker did not answer in time"})
        }
        Err(RecvTimeoutError::Disconnected) => {
            json!({"ok": false, "error": "VNF dropped the request unanswered"})
        }
    }
}

/// Why a control call failed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The socket could not be reached or the connection broke.
    #[error("control socket: {0}")]
    Io(#[from] io::Error),
    /// The reply was not JSON.
    #[error("control socket: malformed reply: {0}")]
    Malformed(#[from] serde_json::Error),
    /// The VNF answered with an error.
    #[error("{0}")]
    Refused(String),
}

/// A reply's `result` when it says `"ok": true`, else its `error` as
/// [`CallError::Refused`]: how every client of a control socket reads one.
pub fn reply_result(mut reply: Value) -> Result<Value, CallError> {
    if reply["ok"] == true {
        Ok(reply
            .get_mut("result")
            .map(Value::take)
            .unwrap_or(Value::Null))
    } else {
        Err(CallError::Refused(
            reply["error"]
                .as_str()
                .unwrap_or("unknown error")
                .to_owned(),
        ))
    }
}

/// A client connection to a VNF's control socket.
#[derive(Debug)]
pub struct ControlClient {
    out: UnixStream,
    replies: BufReader<UnixStream>,
}

impl ControlClient {
    /// Connects to the socket at `path`.
    pub fn connect(path: &Path) -> Result<Self, CallError> {
        let out = UnixStream::connect(path)?;
        out.set_read_timeout(Some(WORKER_TIMEOUT * 2))?;
        let replies = BufReader::new(out.try_clone()?);
        Ok(Self { out, replies })
    }

    /// Sends `request` and returns the `result` of its reply.
    pub fn call(&mut self, request: &Value) -> Result<Value, CallError> {
        // One write per request, as the VNF side answers.
        let mut line = request.to_string();
        line.push('\n');
        self.out.write_all(line.as_bytes())?;
        reply_result(self.read()?)
    }

    /// Turns this connection into an event stream; then use
    /// [`ControlClient::next_event`].
    pub fn subscribe(&mut self) -> Result<(), CallError> {
        self.call(&json!({"op": "subscribe"}))?;
        self.out.set_read_timeout(None)?;
        Ok(())
    }

    /// Waits at most `timeout` for the next event of a subscribed
    /// connection; `Ok(None)` on timeout.
    pub fn next_event(&mut self, timeout: Duration) -> Result<Option<Value>, CallError> {
        self.out.set_read_timeout(Some(timeout))?;
        match self.read() {
            Ok(mut v) => Ok(Some(v["event"].take())),
            Err(CallError::Io(e))
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    fn read(&mut self) -> Result<Value, CallError> {
        let mut line = String::new();
        if self.replies.read_line(&mut line)? == 0 {
            return Err(
                io::Error::new(io::ErrorKind::UnexpectedEof, "VNF closed the socket").into(),
            );
        }
        Ok(serde_json::from_str(&line)?)
    }
}

/// One request, one reply: connects to `path`, calls, hangs up.
pub fn call(path: &Path, request: &Value) -> Result<Value, CallError> {
    ControlClient::connect(path)?.call(request)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_become_results_or_refusals() {
        let ok = reply_result(serde_json::json!({"ok": true, "result": {"n": 3}})).unwrap();
        assert_eq!(ok, serde_json::json!({"n": 3}));
        assert_eq!(
            reply_result(serde_json::json!({"ok": true})).unwrap(),
            Value::Null
        );
        let refused = reply_result(serde_json::json!({"ok": false, "error": "no such op"}));
        assert!(matches!(refused, Err(CallError::Refused(e)) if e == "no such op"));
        let bare = reply_result(serde_json::json!({"result": 1}));
        assert!(matches!(bare, Err(CallError::Refused(e)) if e == "unknown error"));
    }

    fn socket_path(tag: &str) -> PathBuf {
        std::env::temp_dir().join(format!("nfv-ctl-{}-{tag}.sock", std::process::id()))
    }

    /// A worker that answers `add` and `health`, like a VNF loop would.
    fn worker(inbox: Inbox, stop: Arc<AtomicBool>) -> thread::JoinHandle<()> {
        thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match inbox.try_next() {
                    Some(r) if r.op() == "add" => {
                        let a = r.body()["a"].as_i64().unwrap_or(0);
                        let b = r.body()["b"].as_i64().unwrap_or(0);
                        inbox.publish(json!({"added": a + b}));
                        r.ok(json!(a + b));
                    }
                    Some(r) if r.op() == "health" => r.ok(json!("ok")),
                    Some(r) => {
                        let op = r.op().to_owned();
                        r.err(format!("unknown op {op:?}"))
                    }
                    None => thread::sleep(Duration::from_millis(1)),
                }
            }
        })
    }

    #[test]
    fn requests_replies_errors_and_events() {
        let path = socket_path("rr");
        let (sock, inbox) = ControlSocket::bind(&path).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let w = worker(inbox, stop.clone());

        let mut events = ControlClient::connect(&path).unwrap();
        events.subscribe().unwrap();

        let mut c = ControlClient::connect(&path).unwrap();
        assert_eq!(c.call(&json!({"op": "add", "a": 2, "b": 3})).unwrap(), 5);
        assert_eq!(call(&path, &json!({"op": "health"})).unwrap(), "ok");
        let e = c.call(&json!({"op": "nope"})).unwrap_err();
        assert_eq!(e.to_string(), "unknown op \"nope\"");
        let e = c.call(&json!({"no_op": 1})).unwrap_err();
        assert!(e.to_string().contains("no \"op\""), "{e}");
        // Malformed JSON gets an error line and the connection still works.
        writeln!(c.out, "{{nope").unwrap();
        let reply = c.read().unwrap();
        assert_eq!(reply["ok"], false);
        assert!(
            reply["error"]
                .as_str()
                .unwrap()
                .contains("not a JSON request")
        );
        assert_eq!(c.call(&json!({"op": "add", "a": 1, "b": 1})).unwrap(), 2);

        let ev = events.next_event(Duration::from_secs(5)).unwrap();
        assert_eq!(ev, Some(json!({"added": 5})));
        let ev = events.next_event(Duration::from_secs(5)).unwrap();
        assert_eq!(ev, Some(json!({"added": 2})));
        assert_eq!(events.next_event(Duration::from_millis(20)).unwrap(), None);

        stop.store(true, Ordering::Relaxed);
        w.join().unwrap();
        drop(sock);
        assert!(!path.exists(), "socket file removed");
    }

    #[test]
    fn a_silent_worker_yields_an_error_not_a_hang() {
        let path = socket_path("silent");
        let (_sock, _inbox) = ControlSocket::bind(&path).unwrap();
        let e = call(&path, &json!({"op": "health"})).unwrap_err();
        assert!(e.to_string().contains("did not answer"), "{e}");
    }

    #[test]
    fn a_stale_socket_file_is_replaced_but_a_live_one_is_not() {
        let path = socket_path("stale");
        let first = ControlSocket::bind(&path).unwrap();
        let e = ControlSocket::bind(&path).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AddrInUse);
        // Leave the file behind as a killed process would.
        std::mem::forget(first);
        let _ = std::fs::remove_file(&path);
        std::os::unix::net::UnixListener::bind(&path)
            .map(drop)
            .unwrap();
        let (_again, _inbox) = ControlSocket::bind(&path).unwrap();
    }
}
