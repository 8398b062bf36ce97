//! The one error type of the API. Every failure a client can see is an
//! [`ApiError`], rendered as an RFC 9457 problem document
//! (`application/problem+json`) with a stable `type`, the HTTP status, a
//! short `title` and a `detail` that says precisely what was wrong.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// A failure, as the client sees it.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No credentials, or credentials that are wrong or expired.
    #[error("{0}")]
    Unauthorized(String),
    /// The thing does not exist, or belongs to another tenant (the two are
    /// indistinguishable on purpose).
    #[error("{0}")]
    NotFound(String),
    /// The request is malformed: not JSON, wrong types, missing fields.
    #[error("{0}")]
    BadRequest(String),
    /// The request is well-formed but asks for something impossible.
    #[error("{0}")]
    Unprocessable(String),
    /// The request conflicts with the current state (a limit, a name).
    #[error("{0}")]
    Conflict(String),
    /// The body is larger than `max_body_bytes`.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// The body is not `application/json`.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// The path exists but not with this method.
    #[error("{0}")]
    MethodNotAllowed(String),
    /// The instance cannot answer now and the request cannot be scheduled.
    #[error("{0}")]
    Unavailable(String),
    /// The VNF answered with an error, or its answer could not be read.
    #[error("{0}")]
    BadGateway(String),
    /// Something on the daemon's side failed; logged with details.
    #[error("{0}")]
    Internal(String),
}

/// The RFC 9457 problem document every error response carries.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    /// A URI reference naming the kind of problem.
    #[serde(rename = "type")]
    pub kind: String,
    /// A short summary of the kind of problem.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// What precisely went wrong with this request.
    pub detail: String,
}

impl ApiError {
    /// The status and the problem type's slug.
    fn parts(&self) -> (StatusCode, &'static str, &'static str) {
        use ApiError::*;
        match self {
            Unauthorized(_) => (
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "Authentication required",
            ),
            NotFound(_) => (StatusCode::NOT_FOUND, "not-found", "Not found"),
            BadRequest(_) => (StatusCode::BAD_REQUEST, "bad-request", "Malformed request"),
            Unprocessable(_) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid-request",
                "Request cannot be carried out",
            ),
            Conflict(_) => (StatusCode::CONFLICT, "conflict", "Conflict"),
            PayloadTooLarge(_) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload-too-large",
                "Request body too large",
            ),
            UnsupportedMediaType(_) => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "Unsupported media type",
            ),
            MethodNotAllowed(_) => (
                StatusCode::METHOD_NOT_ALLOWED,
                "method-not-allowed",
                "Method not allowed",
            ),
            Unavailable(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "Instance unavailable",
            ),
            BadGateway(_) => (StatusCode::BAD_GATEWAY, "vnf-error", "The VNF failed"),
            Internal(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "Internal error",
            ),
        }
    }

    /// The problem document for this error.
    pub fn problem(&self) -> Problem {
        let (status, slug, title) = self.parts();
        Problem {
            kind: format!("/problems/{slug}"),
            title: title.into(),
            status: status.as_u16(),
            detail: self.to_string(),
        }
    }

    /// A "not found" for `what` (`instance`, `request`) `id`.
    pub fn not_found(what: &str, id: &str) -> Self {
        ApiError::NotFound(format!("no {what} {id:?}"))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, _, _) = self.parts();
        if let ApiError::Internal(detail) = &self {
            tracing::error!(%detail, "internal error");
        }
        let body = serde_json::to_vec(&self.problem()).unwrap_or_default();
        let mut resp = (status, body).into_response();
        let headers = resp.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        match self {
            ApiError::Unauthorized(_) => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"nfvinc\""),
                );
            }
            ApiError::Unavailable(_) => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            _ => {}
        }
        resp
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        let detail = r.body_text();
        match r.status() {
            StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge(detail),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::UnsupportedMediaType(
                "expected a body with Content-Type: application/json".into(),
            ),
            StatusCode::UNPROCESSABLE_ENTITY => ApiError::Unprocessable(detail),
            _ => ApiError::BadRequest(detail),
        }
    }
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> Self {
        ApiError::BadRequest(r.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        ApiError::BadRequest(r.body_text())
    }
}

impl From<rusqlite::Error> for ApiError {
    fn from(e: rusqlite::Error) -> Self {
        ApiError::Internal(format!("database: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problems_carry_status_type_and_detail() {
        let p = ApiError::not_found("instance", "i-1").problem();
        assert_eq!(p.status, 404);
        assert_eq!(p.kind, "/problems/not-found");
        assert_eq!(p.detail, "no instance \"i-1\"");
        let r = ApiError::Unauthorized("missing bearer token".into()).into_response();
        assert_eq!(r.status(), 401);
        assert_eq!(
            r.headers()[header::CONTENT_TYPE],
            "application/problem+json"
        );
        assert!(r.headers().contains_key(header::WWW_AUTHENTICATE));
    }
}
