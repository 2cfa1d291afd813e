//! An error answered to a client: its kind (which both front ends map to
//! their own status: HTTP code, gRPC code) and a one-line message.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// 400 / INVALID_ARGUMENT
    BadRequest,
    /// 401 / UNAUTHENTICATED
    Unauthorized,
    /// 404 / NOT_FOUND
    NotFound,
    /// 408 / DEADLINE_EXCEEDED: the body did not arrive in time.
    Timeout,
    /// 413 / RESOURCE_EXHAUSTED
    TooLarge,
    /// 415 / UNIMPLEMENTED: a content encoding the server does not read.
    UnsupportedEncoding,
    /// 503 / UNAVAILABLE: draining, or the queue is full.
    Unavailable,
    /// 500 / INTERNAL: the runtime failed.
    Internal,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    pub kind: Kind,
    pub message: String,
}

impl ApiError {
    pub fn new(kind: Kind, message: impl Into<String>) -> ApiError {
        ApiError { kind, message: message.into() }
    }
    pub fn bad(message: impl Into<String>) -> ApiError {
        ApiError::new(Kind::BadRequest, message)
    }
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(Kind::NotFound, message)
    }

    pub fn http_status(&self) -> u16 {
        match self.kind {
            Kind::BadRequest => 400,
            Kind::Unauthorized => 401,
            Kind::NotFound => 404,
            Kind::Timeout => 408,
            Kind::TooLarge => 413,
            Kind::UnsupportedEncoding => 415,
            Kind::Unavailable => 503,
            Kind::Internal => 500,
        }
    }

    pub fn grpc_status(&self) -> tonic::Status {
        let code = match self.kind {
            Kind::BadRequest => tonic::Code::InvalidArgument,
            Kind::Unauthorized => tonic::Code::Unauthenticated,
            Kind::NotFound => tonic::Code::NotFound,
            Kind::Timeout => tonic::Code::DeadlineExceeded,
            Kind::TooLarge => tonic::Code::ResourceExhausted,
            Kind::UnsupportedEncoding => tonic::Code::Unimplemented,
            Kind::Unavailable => tonic::Code::Unavailable,
            Kind::Internal => tonic::Code::Internal,
        };
        tonic::Status::new(code, self.message.clone())
    }
}

/// `?` on an [`ApiError`] in a gRPC call.
impl From<ApiError> for tonic::Status {
    fn from(e: ApiError) -> tonic::Status {
        e.grpc_status()
    }
}
