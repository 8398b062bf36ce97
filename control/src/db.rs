//! The Configuration Agent's state in SQLite: opening, schema migrations,
//! and the bridge from async handlers to the (blocking) connection.
//!
//! One writing connection behind a mutex is enough: every statement here
//! is a point lookup or a single-row write (microseconds), and SQLite
//! serialises writers anyway. Its calls run on tokio's blocking pool so
//! that an fsync never stalls the async workers. WAL with
//! `synchronous = FULL` makes every committed transaction durable before
//! the API acknowledges it, which the Scheduler's "logged before 202"
//! promise depends on.
//!
//! The look-ups every request makes (its session, the instance it names)
//! run instead on read-only connections, on the calling thread
//! ([`Db::read`]): in WAL mode a reader never waits for the writer (nor
//! its fsync), and a point look-up on a hot page takes microseconds, less
//! than the two thread switches of a trip through the blocking pool,
//! which under load were most of the daemon's time.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OpenFlags};

use crate::error::ApiError;

/// Schema versions, applied in order; `PRAGMA user_version` records how many
/// have run. Append, never edit: a released database has run the old ones.
const MIGRATIONS: &[&str] = &[
    // 1: the initial schema.
    "
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE users (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        created_at INTEGER NOT NULL
    );
    CREATE TABLE api_keys (
        id INTEGER PRIMARY KEY,
        user_id INTEGER NOT NULL REFERENCES users(id),
        key_hash BLOB NOT NULL UNIQUE,
        prefix TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        revoked INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE sessions (
        id INTEGER PRIMARY KEY,
        user_id INTEGER NOT NULL REFERENCES users(id),
        token_hash BLOB NOT NULL UNIQUE,
        created_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL
    );
    CREATE TABLE tenant_networks (
        user_id INTEGER PRIMARY KEY REFERENCES users(id),
        netns TEXT NOT NULL UNIQUE,
        host_if TEXT NOT NULL UNIQUE,
        subnet INTEGER NOT NULL UNIQUE,
        host_addr TEXT NOT NULL,
        tenant_addr TEXT NOT NULL,
        created_at INTEGER NOT NULL
    );
    CREATE TABLE instances (
        id TEXT PRIMARY KEY,
        user_id INTEGER NOT NULL REFERENCES users(id),
        service TEXT NOT NULL,
        version TEXT NOT NULL,
        name TEXT,
        state TEXT NOT NULL,
        available INTEGER NOT NULL,
        pid INTEGER,
        addr TEXT NOT NULL,
        port INTEGER NOT NULL,
        control_path TEXT NOT NULL,
        config TEXT NOT NULL,
        scale_min INTEGER NOT NULL,
        scale_max INTEGER NOT NULL,
        replicas INTEGER NOT NULL,
        restarts INTEGER NOT NULL DEFAULT 0,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
    );
    CREATE INDEX instances_user ON instances(user_id);
    CREATE TABLE flow_routes (
        id INTEGER PRIMARY KEY,
        instance_id TEXT NOT NULL REFERENCES instances(id) ON DELETE CASCADE,
        session_id INTEGER,
        dst_addr TEXT NOT NULL,
        dst_port INTEGER NOT NULL,
        session_key BLOB NOT NULL,
        installed INTEGER NOT NULL DEFAULT 0,
        created_at INTEGER NOT NULL
    );
    CREATE TABLE scheduled_requests (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        instance_id TEXT NOT NULL,
        user_id INTEGER NOT NULL,
        op TEXT NOT NULL,
        body TEXT NOT NULL,
        status TEXT NOT NULL,
        result TEXT,
        error TEXT,
        created_at INTEGER NOT NULL,
        completed_at INTEGER
    );
    CREATE INDEX scheduled_pending ON scheduled_requests(instance_id, status, seq);
    CREATE TABLE events (
        id INTEGER PRIMARY KEY,
        at INTEGER NOT NULL,
        user_id INTEGER,
        instance_id TEXT,
        kind TEXT NOT NULL,
        detail TEXT NOT NULL
    );
    ",
    // 2: every process of a multi-process instance (JSON array of pids),
    // and a sequencer's members as its VNF last listed them (JSON array of
    // [process, "ip:port"]), for heals that take the group over.
    "
    ALTER TABLE instances ADD COLUMN pids TEXT NOT NULL DEFAULT '[]';
    ALTER TABLE instances ADD COLUMN members TEXT NOT NULL DEFAULT '[]';
    ",
];

/// Seconds since the Unix epoch.
pub fn now_s() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The shared database handle.
#[derive(Clone, Debug)]
pub struct Db {
    conn: Arc<Mutex<Connection>>,
    path: Arc<PathBuf>,
    /// Idle read-only connections for [`Db::read`]; as many are opened as
    /// threads read at once (the async workers, a few).
    readers: Arc<Mutex<Vec<Connection>>>,
}

/// Idle read-only connections kept; more may be open while in use.
const READERS: usize = 8;

impl Db {
    /// Opens (creating) `dir/nfvinc.db` and brings its schema up to date.
    pub fn open(dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let mut conn = Connection::open(dir.join("nfvinc.db"))?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = FULL;
             PRAGMA foreign_keys = ON;
             PRAGMA busy_timeout = 5000;",
        )?;
        migrate(&mut conn)?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
            path: Arc::new(dir.join("nfvinc.db")),
            readers: Arc::default(),
        })
    }

    /// Runs the read-only `f` on a read-only connection, on this thread
    /// (see the module's documentation for why that is fine in an async
    /// handler). It sees every transaction committed before it starts.
    pub fn read<R>(
        &self,
        f: impl FnOnce(&Connection) -> Result<R, ApiError>,
    ) -> Result<R, ApiError> {
        let kept = self.readers.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let conn = match kept {
            Some(c) => c,
            None => open_reader(&self.path)
                .map_err(|e| ApiError::Internal(format!("opening a database reader: {e}")))?,
        };
        let r = f(&conn);
        let mut readers = self.readers.lock().unwrap_or_else(|p| p.into_inner());
        if readers.len() < READERS {
            readers.push(conn);
        }
        r
    }

    /// Runs `f` on the connection from a blocking thread.
    pub async fn call<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<R, ApiError> + Send + 'static,
    ) -> Result<R, ApiError> {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut c = conn.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut c)
        })
        .await
        .map_err(|e| ApiError::Internal(format!("database task failed: {e}")))?
    }

    /// Runs `f` on the connection on this thread (start-up, admin commands).
    pub fn blocking<R>(&self, f: impl FnOnce(&mut Connection) -> R) -> R {
        let mut c = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut c)
    }
}

/// A read-only connection to the database at `path` (which the writing
/// connection has opened in WAL mode).
fn open_reader(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    // Waiting is only for the rare moments a reader must (another process
    // recovering the WAL); never for a writer.
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    Ok(conn)
}

fn migrate(conn: &mut Connection) -> rusqlite::Result<()> {
    let done: usize = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(done) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.execute_batch(&format!("PRAGMA user_version = {}", i + 1))?;
        tx.commit()?;
        tracing::info!(version = i + 1, "database schema migrated");
    }
    Ok(())
}

/// Reads a `meta` value, setting it to `make()` the first time.
pub fn meta_get_or_init(
    conn: &Connection,
    key: &str,
    make: impl FnOnce() -> String,
) -> rusqlite::Result<String> {
    use rusqlite::OptionalExtension;
    if let Some(v) = conn
        .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
        .optional()?
    {
        return Ok(v);
    }
    let v = make();
    conn.execute(
        "INSERT INTO meta (key, value) VALUES (?1, ?2)",
        rusqlite::params![key, v],
    )?;
    Ok(v)
}

/// Records a lifecycle event (kept for operators; also streamed over SSE).
pub fn record_event(
    conn: &Connection,
    user_id: Option<i64>,
    instance_id: Option<&str>,
    kind: &str,
    detail: &serde_json::Value,
) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO events (at, user_id, instance_id, kind, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
        rusqlite::params![now_ms(), user_id, instance_id, kind, detail.to_string()],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_run_once_and_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path()).unwrap();
        let v1 = db.blocking(|c| meta_get_or_init(c, "daemon_id", || "abc".into()).unwrap());
        drop(db);
        let db = Db::open(dir.path()).unwrap();
        let v2 = db.blocking(|c| meta_get_or_init(c, "daemon_id", || "xyz".into()).unwrap());
        assert_eq!(v1, "abc");
        assert_eq!(v2, "abc");
        let version: usize = db.blocking(|c| {
            c.query_row("PRAGMA user_version", [], |r| r.get(0))
                .unwrap()
        });
        assert_eq!(version, MIGRATIONS.len());
    }

    #[test]
    fn readers_see_committed_writes_and_cannot_write() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path()).unwrap();
        let get = |db: &Db| {
            db.read(|c| {
                Ok(
                    c.query_row("SELECT value FROM meta WHERE key = 'k'", [], |r| {
                        r.get::<_, String>(0)
                    })?,
                )
            })
        };
        assert!(get(&db).is_err(), "nothing there yet");
        db.blocking(|c| meta_get_or_init(c, "k", || "v1".into()).unwrap());
        assert_eq!(get(&db).unwrap(), "v1");
        db.blocking(|c| c.execute("UPDATE meta SET value = 'v2' WHERE key = 'k'", []))
            .unwrap();
        assert_eq!(get(&db).unwrap(), "v2", "a kept reader sees the new value");
        let w = db.read(|c| Ok(c.execute("UPDATE meta SET value = 'v3'", [])?));
        assert!(w.is_err(), "a reader does not write");
        assert_eq!(get(&db).unwrap(), "v2");
    }
}
