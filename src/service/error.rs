//! The one place where errors become gRPC statuses (and, for the HTTP port, HTTP statuses).

use crate::store::StoreError;

/// Why a call could not be answered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServiceError {
    /// The request is malformed; `field` names the offending field.
    #[error("{field}: {reason}")]
    InvalidArgument {
        /// Path of the field, e.g. `descriptors[0].limit.unit`.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The counter store failed: unavailable (`UNAVAILABLE`, HTTP 503) or refused this request
    /// (`INTERNAL`, HTTP 500); Envoy then applies its `failure_mode_deny`.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A bug: parts of sluice disagreed (never caused by input).
    #[error("internal error: {0}")]
    Internal(String),
    /// Rules come from xDS and none has been applied yet (started with
    /// `force_start_without_initial_config`): upstream answers gRPC `UNKNOWN` with this text.
    #[error("no rate limit configuration loaded")]
    NoConfig,
}

/// upstream's `err_type` label of a failed ShouldRateLimit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrType {
    /// `redis_error`: the counter store failed (only Redis can).
    Redis,
    /// `service_error`: a request refused as invalid (upstream counts its request checks —
    /// empty domain or descriptors — there), or a bug.
    Service,
}

impl ErrType {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrType::Redis => "redis_error",
            ErrType::Service => "service_error",
        }
    }
}

impl From<crate::request::InvalidRequest> for ServiceError {
    fn from(e: crate::request::InvalidRequest) -> ServiceError {
        ServiceError::InvalidArgument {
            field: e.field,
            reason: e.reason,
        }
    }
}

impl From<crate::limiter::plan::OutcomeMismatch> for ServiceError {
    fn from(e: crate::limiter::plan::OutcomeMismatch) -> ServiceError {
        ServiceError::Internal(e.to_string())
    }
}

impl ServiceError {
    /// An invalid-argument error for `field`.
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> ServiceError {
        ServiceError::InvalidArgument {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

impl ServiceError {
    /// How upstream counts this failure in `ratelimit_service_should_rate_limit_error`.
    pub fn err_type(&self) -> ErrType {
        match self {
            ServiceError::Store(_) => ErrType::Redis,
            ServiceError::InvalidArgument { .. }
            | ServiceError::Internal(_)
            | ServiceError::NoConfig => ErrType::Service,
        }
    }

    /// The HTTP status of this error on the HTTP port (`/json`, `/admin/*`).
    pub fn http_status(&self) -> u16 {
        match self {
            ServiceError::InvalidArgument { .. } => 400,
            ServiceError::Store(StoreError::Rejected(_)) => 500,
            ServiceError::Store(StoreError::Unavailable(_)) => 503,
            ServiceError::Internal(_) | ServiceError::NoConfig => 500,
        }
    }
}

impl From<ServiceError> for tonic::Status {
    fn from(e: ServiceError) -> tonic::Status {
        match &e {
            ServiceError::InvalidArgument { .. } => tonic::Status::invalid_argument(e.to_string()),
            ServiceError::Store(StoreError::Rejected(_)) => tonic::Status::internal(e.to_string()),
            ServiceError::Store(StoreError::Unavailable(_)) => {
                tonic::Status::unavailable(e.to_string())
            }
            ServiceError::Internal(_) => tonic::Status::internal(e.to_string()),
            ServiceError::NoConfig => tonic::Status::unknown(e.to_string()),
        }
    }
}
