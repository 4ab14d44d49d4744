//! `AppError`: every way a request can fail, and the JSON error reply each one becomes.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use shared::api::{ApiError, ErrorBody};
use shared::ValidationErrors;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// 400: a field of the request is invalid (each one named).
    #[error("invalid request: {0}")]
    Validation(ValidationErrors),
    /// 400: the body is not the JSON we expect.
    #[error("bad JSON: {0}")]
    BadJson(String),
    /// 400: a query parameter is invalid.
    #[error("bad query: {0}")]
    BadQuery(String),
    /// 404: no such execution or resource.
    #[error("not found: {0}")]
    NotFound(String),
    /// 409: the run would turn IMDSv1 off where it is still used; names the instances and their calls.
    #[error("IMDSv1 still in use on {} instance(s)", .0.len())]
    Imdsv1InUse(Vec<shared::api::InstanceUsage>),
    /// 409: the request conflicts with the state (e.g. stopping a finished run).
    #[error("conflict: {code}: {message}")]
    Conflict { code: String, message: String },
    /// A refusal with its own status: a duplicated identity header (400), too many sign-ins (429), a
    /// forbidden change (403).
    #[error("{code}: {message}")]
    Refused {
        status: StatusCode,
        code: String,
        message: String,
    },
    /// AWS said no: its code and message carried through, with the status that fits the cause
    /// (403 for missing permissions, 400 for parameters AWS refused, 429 for throttling, 502 otherwise).
    #[error("AWS {code}: {message}")]
    Aws {
        status: StatusCode,
        code: String,
        message: String,
        /// What happened on the wire: whether the call may be sent again.
        fault: crate::aws::AwsFault,
    },
    /// 503: AWS could not be reached (timeout, connection refused).
    #[error("AWS unavailable: {0}")]
    AwsUnavailable(String),
    /// 500: our own fault; the client sees a generic message, and the cause, with the chain of
    /// errors under it, goes to the log.
    #[error("internal error: {message}")]
    Internal {
        message: String,
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
}

impl AppError {
    /// A 400 that names one bad field and says what is allowed.
    pub fn field(field: &str, message: impl Into<String>) -> AppError {
        AppError::Validation(shared::ValidationErrors(vec![shared::FieldError {
            field: field.into(),
            message: message.into(),
        }]))
    }

    pub fn internal(e: impl std::fmt::Display) -> AppError {
        AppError::Internal {
            message: e.to_string(),
            source: None,
        }
    }

    /// An internal error caused by `source`, kept so that the log shows the whole chain.
    pub fn internal_from(
        message: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> AppError {
        AppError::Internal {
            message: message.into(),
            source: Some(Box::new(source)),
        }
    }

    /// The error and each cause under it, `: `-separated, for the log.
    pub fn chain(&self) -> String {
        let mut out = self.to_string();
        let mut cause = std::error::Error::source(self);
        while let Some(c) = cause {
            out.push_str(": ");
            out.push_str(&c.to_string());
            cause = c.source();
        }
        out
    }

    pub fn refused(status: StatusCode, code: &str, message: impl Into<String>) -> AppError {
        AppError::Refused {
            status,
            code: code.to_owned(),
            message: message.into(),
        }
    }

    /// The status and body this error becomes.
    pub fn to_parts(&self) -> (StatusCode, ApiError) {
        let plain = |code: &str, message: String| ApiError {
            code: code.to_owned(),
            message,
            field: None,
            fields: vec![],
            instances: vec![],
            request_id: None,
        };
        match self {
            AppError::Validation(errors) => (
                StatusCode::BAD_REQUEST,
                ApiError {
                    code: "ValidationError".into(),
                    message: errors.to_string(),
                    field: errors.0.first().map(|e| e.field.clone()),
                    fields: errors.0.clone(),
                    instances: vec![],
                    request_id: None,
                },
            ),
            AppError::Imdsv1InUse(instances) => (
                StatusCode::CONFLICT,
                ApiError {
                    code: "Imdsv1InUse".into(),
                    message: format!(
                        "{} target instance(s) made IMDSv1 calls in the look-back window and would break: {}. \
                         Update that software first, or start with \"override\": {{\"reason\": \"...\"}}.",
                        instances.len(),
                        instances.iter().map(|i| format!("{} ({} calls)", i.instance_id, i.imdsv1_calls)).collect::<Vec<_>>().join(", ")
                    ),
                    field: None,
                    fields: vec![],
                    instances: instances.clone(),
                    request_id: None,
                },
            ),
            AppError::BadJson(m) => (StatusCode::BAD_REQUEST, plain("BadJson", m.clone())),
            AppError::BadQuery(m) => (StatusCode::BAD_REQUEST, plain("BadQuery", m.clone())),
            AppError::NotFound(m) => (StatusCode::NOT_FOUND, plain("NotFound", m.clone())),
            AppError::Conflict { code, message } => (StatusCode::CONFLICT, plain(code, message.clone())),
            AppError::Aws {
                status,
                code,
                message,
                ..
            }
            | AppError::Refused {
                status,
                code,
                message,
            } => (*status, plain(code, message.clone())),
            AppError::AwsUnavailable(m) => (
                StatusCode::SERVICE_UNAVAILABLE,
                plain(
                    "AwsUnavailable",
                    format!("AWS could not be reached: {m}. Try again shortly."),
                ),
            ),
            AppError::Internal { .. } => (
                StatusCode::INTERNAL_SERVER_ERROR,
                plain(
                    "Internal",
                    "Something went wrong on the server; the details are in its log.".into(),
                ),
            ),
        }
    }
}

impl From<store::StoreError> for AppError {
    fn from(e: store::StoreError) -> AppError {
        match e {
            store::StoreError::NotFound(what) => AppError::NotFound(what),
            store::StoreError::Conflict { code, message } => AppError::Conflict {
                code: code.to_owned(),
                message,
            },
            other => AppError::internal_from("the store failed", other),
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        if let AppError::Internal { .. } = &self {
            tracing::error!(cause = %self.chain(), "internal error");
        }
        let (status, mut error) = self.to_parts();
        error.request_id = crate::telemetry::request_id();
        let refusal = (status == StatusCode::FORBIDDEN).then(|| Refusal(error.code.clone()));
        let mut resp = (status, Json(ErrorBody { error })).into_response();
        if let Some(refusal) = refusal {
            resp.extensions_mut().insert(refusal);
        }
        resp
    }
}

/// The code of a 403 a handler answered, kept on the response so that the access layer can record
/// the refused change in the audit trail (as it records its own refusals).
#[derive(Debug, Clone)]
pub struct Refusal(pub String);

#[cfg(test)]
mod tests {
    use super::AppError;

    #[test]
    fn an_internal_error_keeps_its_causes_for_the_log_and_tells_the_client_none() {
        let io = std::io::Error::other("disk full");
        let e = AppError::internal_from("cannot write the sandbox's state", io);
        assert_eq!(
            e.chain(),
            "internal error: cannot write the sandbox's state: disk full"
        );
        let from_store: AppError = store::StoreError::Database("deadlock detected".into()).into();
        assert_eq!(
            from_store.chain(),
            "internal error: the store failed: store: deadlock detected"
        );
        let (status, body) = from_store.to_parts();
        assert_eq!(status, axum::http::StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!body.message.contains("deadlock"), "{}", body.message);
    }
}
