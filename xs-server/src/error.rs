//! Errors of the daemon: why it could not start or serve, and the one place where a store
//! error becomes an HTTP status with a `{"error": "..."}` body.

use hyper::StatusCode;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Store(#[from] xs::Error),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Config(String),
    #[error("internal error: {0}")]
    Internal(String),
}

/// An error answered to an HTTP client.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// More fields for the error body, beside `error` (a 409's `last`).
    pub extra: Option<(&'static str, serde_json::Value)>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            extra: None,
        }
    }

    /// The `{"error": ...}` body, with the extra field if any.
    pub fn body(&self) -> String {
        let mut body = serde_json::json!({ "error": self.message });
        if let Some((k, v)) = &self.extra {
            body[*k] = v.clone();
        }
        body.to_string()
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, message)
    }
}

impl From<xs::Error> for ApiError {
    fn from(e: xs::Error) -> ApiError {
        use xs::Error as E;
        let status = match &e {
            E::Invalid(_) => StatusCode::BAD_REQUEST,
            E::NotFound(_) => StatusCode::NOT_FOUND,
            E::Conflict(_) | E::Fenced { .. } => StatusCode::CONFLICT,
            E::ExpectFailed { last, .. } => {
                let mut err = ApiError::new(StatusCode::CONFLICT, e.to_string());
                err.extra = Some(("last", serde_json::json!(last.map(|id| id.to_string()))));
                return err;
            }
            E::Closed => StatusCode::SERVICE_UNAVAILABLE,
            E::Unavailable(_) => {
                tracing::warn!(error = %e, "write refused");
                StatusCode::SERVICE_UNAVAILABLE
            }
            E::NoSpace(_) => {
                tracing::warn!(error = %e, "write refused");
                StatusCode::INSUFFICIENT_STORAGE
            }
            E::Locked { .. }
            | E::Corrupt(_)
            | E::Io { .. }
            | E::Storage(_)
            | E::Failed(_)
            | E::Cas(_)
            | E::Write(_)
            | E::Internal(_) => {
                tracing::error!(error = %e, "request failed");
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        ApiError::new(status, e.to_string())
    }
}
