//! The error type of lymph-core.

use std::time::Duration;

use crate::codec::{DecodeError, EncodeError};

/// A boxed error from a backend (ZeroMQ, RabbitMQ, ZooKeeper, the simulator), so that no backend
/// type shows in lymph's API.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A `Result` with lymph's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why no instance of a service could be called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum NotConnectedReason {
    /// The service is known to the registry but has no instances now.
    NoInstances,
    /// There are instances but none of the requested version.
    NoMatchingVersion,
    /// Every instance (this many) stopped answering heartbeats.
    AllUnresponsive(usize),
}

/// What can go wrong in lymph.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No reply arrived within the timeout.
    #[error("request {subject} timed out after {timeout:?}")]
    Timeout {
        /// The request's subject.
        subject: String,
        /// The timeout that passed.
        timeout: Duration,
    },
    /// The service refused the request: unknown interface, version or method, bad arguments, or a
    /// failure the method did not declare.
    #[error("request {subject} was not acknowledged (NACK)")]
    Nack {
        /// The request's subject.
        subject: String,
    },
    /// The method failed with an error it declares (lymph's `raises`).
    #[error("remote error {type_name}: {message}")]
    RemoteError {
        /// The error's type name, e.g. `ValueError`.
        type_name: String,
        /// Its message.
        message: String,
    },
    /// A handler raises an error for its caller to see as [`Error::RemoteError`] (if the method
    /// declares `type_name` in `raises`; otherwise the caller gets a NACK).
    #[error("{type_name}: {message}")]
    Raised {
        /// The error's type name, e.g. `ValueError`.
        type_name: String,
        /// Its message.
        message: String,
    },
    /// The registry does not know the service.
    #[error("lookup failure: no service named {service:?} in the registry")]
    LookupFailure {
        /// The service name.
        service: String,
    },
    /// No instance of the service can be called now.
    #[error("{}", not_connected_message(service, *reason))]
    NotConnected {
        /// The service name (with its version constraint, if any).
        service: String,
        /// Why.
        reason: NotConnectedReason,
    },
    /// A message could not be encoded.
    #[error("encode error: {0}")]
    Encode(#[from] EncodeError),
    /// A message could not be decoded.
    #[error("decode error: {0}")]
    Decode(#[from] DecodeError),
    /// The container is not running (not started yet, or stopped).
    #[error("the container is not running")]
    Stopped,
    /// Bad configuration or a misuse of the API.
    #[error("configuration error: {0}")]
    Config(String),
    /// A backend failed.
    #[error("transport error: {0}")]
    Transport(#[source] BoxError),
}

/// The source of an [`Error::not_sent`]: the transport's reason.
#[derive(Debug)]
struct NotSent(String);

impl std::fmt::Display for NotSent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NotSent {}

fn not_connected_message(service: &str, reason: NotConnectedReason) -> String {
    match reason {
        NotConnectedReason::NoInstances => format!("not connected: service {service:?} has no instances"),
        NotConnectedReason::NoMatchingVersion => {
            format!("not connected: no instance of service {service:?} has a matching version")
        }
        NotConnectedReason::AllUnresponsive(n) => {
            format!("not connected: all {n} instances of service {service:?} are unresponsive")
        }
    }
}

impl Error {
    /// An error a handler raises for its caller, as Python's `raise ValueError(message)`.
    ///
    /// Declare the type in `#[rpc(raises = [ValueError])]` so callers get it as
    /// [`Error::RemoteError`]; an undeclared one gives them a NACK, as in lymph.
    pub fn raise(type_name: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Raised { type_name: type_name.into(), message: message.into() }
    }

    /// Wraps a backend error.
    pub fn transport(error: impl Into<BoxError>) -> Self {
        Self::Transport(error.into())
    }

    /// A transport error for a message that certainly did not leave this process: the endpoint
    /// does not parse, nobody is bound there, the connection was refused or timed out before a
    /// byte of the message was written. It is an [`Error::Transport`] that says `reason`.
    ///
    /// Transports return it from [`RpcTransport::send`](crate::RpcTransport::send) when they know
    /// this, so that a [`Proxy`](crate::Proxy) may send the request to another instance instead;
    /// an error after which the message may have arrived must be an ordinary
    /// [`transport`](Self::transport) error.
    pub fn not_sent(reason: impl Into<String>) -> Self {
        Self::Transport(Box::new(NotSent(reason.into())))
    }

    /// Whether this error says a message certainly was not sent (see [`not_sent`](Self::not_sent)),
    /// so that no handler saw it.
    pub fn is_not_sent(&self) -> bool {
        matches!(self, Self::Transport(error) if error.is::<NotSent>())
    }

    /// Whether this is a [`Error::RemoteError`] of the given type.
    pub fn is_remote(&self, type_name: &str) -> bool {
        matches!(self, Self::RemoteError { type_name: t, .. } if t == type_name)
    }
}
