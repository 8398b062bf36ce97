//! Users, API keys, sessions and the bearer-token extractor.
//!
//! API keys and bearer tokens are 32 random bytes from the OS generator,
//! shown to their owner once and stored only as SHA-256 digests. A fast
//! hash is the right tool here, unlike for passwords: with 256 bits of
//! entropy nobody can guess a preimage, so a slow KDF would buy nothing, and
//! a plain digest lets every request find its key or session with one index
//! lookup instead of trying a salted hash per row.

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use rand::RngCore;
use rusqlite::{Connection, OptionalExtension, params};
use sha2::{Digest, Sha256};

use crate::db::now_s;
use crate::error::ApiError;
use crate::state::AppState;

/// Prefix of API keys, so that a leaked one is recognisable in logs and
/// secret scanners.
pub const KEY_PREFIX: &str = "nfvk_";
/// Prefix of bearer tokens.
pub const TOKEN_PREFIX: &str = "nfvt_";

/// `prefix` followed by 32 random bytes in hex.
pub fn random_secret(prefix: &str) -> String {
    let mut b = [0u8; 32];
    rand::rng().fill_bytes(&mut b);
    format!("{prefix}{}", hex::encode(b))
}

/// The SHA-256 digest a secret is stored as.
pub fn digest(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

/// Creates user `name` (or reuses it) and a new API key for it; returns the
/// key, which is not stored anywhere in clear.
pub fn add_key(conn: &mut Connection, name: &str, create: bool) -> anyhow::Result<String> {
    if name.is_empty()
        || name.len() > 64
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.@".contains(c))
    {
        anyhow::bail!("user names are 1-64 characters of [A-Za-z0-9-_.@]");
    }
    let tx = conn.transaction()?;
    let existing: Option<i64> = tx
        .query_row("SELECT id FROM users WHERE name = ?1", [name], |r| r.get(0))
        .optional()?;
    let user_id = match (existing, create) {
        (Some(_), true) => anyhow::bail!("user {name:?} exists; use `nfvinc user key {name}`"),
        (None, false) => anyhow::bail!("no user {name:?}; use `nfvinc user add {name}`"),
        (Some(id), false) => id,
        (None, true) => {
            tx.execute(
                "INSERT INTO users (name, created_at) VALUES (?1, ?2)",
                params![name, now_s()],
            )?;
            tx.last_insert_rowid()
        }
    };
    let key = random_secret(KEY_PREFIX);
    tx.execute(
        "INSERT INTO api_keys (user_id, key_hash, prefix, created_at) VALUES (?1, ?2, ?3, ?4)",
        params![user_id, digest(&key), &key[..KEY_PREFIX.len() + 6], now_s()],
    )?;
    tx.commit()?;
    Ok(key)
}

/// Users and their live key counts, for `nfvinc user list`.
pub fn list_users(conn: &Connection) -> rusqlite::Result<Vec<(String, i64)>> {
    let mut st = conn.prepare(
        "SELECT u.name, (SELECT COUNT(*) FROM api_keys k WHERE k.user_id = u.id AND k.revoked = 0)
         FROM users u ORDER BY u.name",
    )?;
    st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect()
}

/// A new session for the owner of `api_key`: the bearer token and its
/// expiry (Unix seconds).
pub fn open_session(
    conn: &Connection,
    api_key: &str,
    ttl_s: u64,
) -> Result<(String, i64, String), ApiError> {
    let owner: Option<(i64, String)> = conn
        .query_row(
            "SELECT u.id, u.name FROM api_keys k JOIN users u ON u.id = k.user_id
             WHERE k.key_hash = ?1 AND k.revoked = 0",
            [digest(api_key)],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let Some((user_id, name)) = owner else {
        return Err(ApiError::Unauthorized("unknown or revoked API key".into()));
    };
    let token = random_secret(TOKEN_PREFIX);
    let expires = now_s() + ttl_s as i64;
    conn.execute(
        "INSERT INTO sessions (user_id, token_hash, created_at, expires_at) VALUES (?1, ?2, ?3, ?4)",
        params![user_id, digest(&token), now_s(), expires],
    )?;
    // Expired sessions are useless; dropping them here keeps the table small
    // without a separate sweeper.
    conn.execute("DELETE FROM sessions WHERE expires_at < ?1", [now_s()])?;
    Ok((token, expires, name))
}

/// The authenticated caller of a request: its tenant (user) and session.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The user, which is also the tenant.
    pub user_id: i64,
    /// The user's name.
    pub user: String,
    /// The session the bearer token belongs to.
    pub session_id: i64,
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let value = parts
            .headers
            .get(header::AUTHORIZATION)
            .ok_or_else(|| ApiError::Unauthorized("missing Authorization: Bearer header".into()))?;
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .ok_or_else(|| {
                ApiError::Unauthorized("Authorization header is not \"Bearer <token>\"".into())
            })?;
        let hash = digest(token);
        // Every request runs this: on a reader, on this thread, with the
        // statement compiled once.
        state.db.read(|c| {
            let row: Option<(i64, String, i64, i64)> = c
                .prepare_cached(
                    "SELECT s.user_id, u.name, s.id, s.expires_at FROM sessions s
                         JOIN users u ON u.id = s.user_id WHERE s.token_hash = ?1",
                )?
                .query_row([hash], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
                .optional()?;
            match row {
                None => Err(ApiError::Unauthorized("unknown bearer token".into())),
                Some((_, _, _, exp)) if exp <= now_s() => Err(ApiError::Unauthorized(
                    "bearer token expired; open a new session".into(),
                )),
                Some((user_id, user, session_id, _)) => Ok(Caller {
                    user_id,
                    user,
                    session_id,
                }),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::Db;

    #[test]
    fn keys_open_sessions_and_bad_keys_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path()).unwrap();
        let key = db.blocking(|c| add_key(c, "alice", true)).unwrap();
        assert!(key.starts_with(KEY_PREFIX) && key.len() == KEY_PREFIX.len() + 64);
        assert!(db.blocking(|c| add_key(c, "alice", true)).is_err());
        assert!(db.blocking(|c| add_key(c, "bob", false)).is_err());
        assert!(db.blocking(|c| add_key(c, "no spaces", true)).is_err());
        let (tok, exp, name) = db.blocking(|c| open_session(c, &key, 60)).unwrap();
        assert!(tok.starts_with(TOKEN_PREFIX));
        assert!(exp > now_s());
        assert_eq!(name, "alice");
        let e = db
            .blocking(|c| open_session(c, "nfvk_wrong", 60))
            .unwrap_err();
        assert!(matches!(e, ApiError::Unauthorized(_)));
        // Nothing secret is stored in clear.
        let stored: Vec<u8> = db.blocking(|c| {
            c.query_row("SELECT key_hash FROM api_keys", [], |r| r.get(0))
                .unwrap()
        });
        assert_eq!(stored, digest(&key));
    }
}
