//! Typed errors carrying ZooKeeper's codes.

use roost_proto::ErrorCode;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// An error code from the server, or ConnectionLoss / SessionExpired /
    /// AuthFailed / OperationTimeout from the session itself.
    #[error("{0}")]
    Zk(ErrorCode),
    /// A multi failed at operation `index` with `code`; nothing was applied.
    #[error("multi failed at operation {index}: {code}")]
    Multi { index: usize, code: ErrorCode },
    /// The client was closed.
    #[error("client closed")]
    Closed,
    /// Rejected before it was sent (a bad path, connect string, ...).
    #[error("bad arguments: {0}")]
    BadArguments(String),
}

impl Error {
    /// ZooKeeper's code for this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            Error::Zk(code) | Error::Multi { code, .. } => *code,
            Error::Closed => ErrorCode::ConnectionLoss,
            Error::BadArguments(_) => ErrorCode::BadArguments,
        }
    }

    /// Whether the operation may simply be tried again on the same session:
    /// its outcome is unknown because the connection dropped or it timed out.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Error::Zk(ErrorCode::ConnectionLoss | ErrorCode::OperationTimeout)
        )
    }
}

impl From<ErrorCode> for Error {
    fn from(code: ErrorCode) -> Self {
        Error::Zk(code)
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
