//! Direct-channel credentials: the session id and key the control plane
//! hands out when an application opens a channel to an instance.
//!
//! Every message the application sends on the channel is tagged under the
//! key ([`dataplane::auth`]), and every message it receives is checked
//! before it is believed: a VNF started by `nfvinc serve` drops untagged
//! messages, and an application should not take a forged "process
//! suspected" at face value either.

use dataplane::auth::{AuthError, SessionKey};

/// A direct channel's credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectAuth {
    /// The session id carried in every message's header.
    pub session: u64,
    /// The key messages are tagged under.
    pub key: SessionKey,
}

impl DirectAuth {
    /// Credentials from the control plane's answer: the session id and the
    /// key as 64 hex digits.
    pub fn new(session: u64, key_hex: &str) -> Result<Self, AuthError> {
        Ok(Self {
            session,
            key: SessionKey::from_hex(key_hex)?,
        })
    }

    /// The credentials of an instance's direct channel, as the answer that
    /// created it gives them; `None` when it carries none (an instance
    /// listed later, or a VNF run without authentication).
    pub fn of(endpoint: &crate::rest::DirectEndpoint) -> Option<Result<Self, AuthError>> {
        match (endpoint.session_id, endpoint.session_key.as_deref()) {
            (Some(session), Some(key)) => Some(Self::new(session, key)),
            _ => None,
        }
    }
}

/// [`DirectAuth::of`] as the REST client's error: none when the endpoint
/// carries no credentials, a decoding error when its key is malformed.
pub(crate) fn of_endpoint(
    endpoint: &crate::rest::DirectEndpoint,
) -> Result<Option<DirectAuth>, crate::rest::Error> {
    DirectAuth::of(endpoint)
        .transpose()
        .map_err(|e| crate::rest::Error::Decode(format!("direct-channel key: {e}")))
}

/// Tags `message` (a whole NFVinc message) when there are credentials.
pub(crate) fn seal(auth: Option<&DirectAuth>, message: &mut [u8]) {
    if let Some(a) = auth {
        // The message was just emitted whole, so signing cannot fail.
        let _ = a.key.sign(message);
    }
}

/// Whether a received `message` is to be believed: always without
/// credentials, else only with a good tag.
pub(crate) fn genuine(auth: Option<&DirectAuth>, message: &[u8]) -> bool {
    auth.is_none_or(|a| a.key.verify(message).is_ok())
}

/// The session id messages carry: the credentials' own, else 0.
pub(crate) fn session_of(auth: Option<&DirectAuth>) -> u64 {
    auth.map_or(0, |a| a.session)
}
