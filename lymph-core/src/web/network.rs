//! The web seam: where a web interface listens and how a client reaches it.
//!
//! Real TCP ([`TcpWebNetwork`]) serves on the embedded backends and on real infrastructure; the
//! simulator of `lymph-testing` provides one over `turmoil::net`, so one web interface runs in
//! every world unchanged.

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use futures::future::BoxFuture;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};

/// A byte stream an HTTP connection runs over.
pub trait WebIo: AsyncRead + AsyncWrite + Send + Unpin {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin> WebIo for T {}

/// One accepted or opened connection.
pub type Connection = Box<dyn WebIo>;

/// A bound listening socket.
pub trait WebListener: Send {
    /// The next incoming connection.
    ///
    /// # Errors
    ///
    /// When accepting fails; the listener may still accept later connections.
    fn accept(&mut self) -> BoxFuture<'_, io::Result<Connection>>;
}

/// Where web interfaces listen and how clients connect to them.
pub trait WebNetwork: Send + Sync + fmt::Debug {
    /// Binds a listener on `port` (`0`: any free port) and returns it with the address clients
    /// reach it at, which is what the container registers.
    ///
    /// # Errors
    ///
    /// When the port cannot be bound (in use, not permitted).
    fn bind(&self, port: u16) -> BoxFuture<'_, io::Result<(Box<dyn WebListener>, SocketAddr)>>;

    /// Opens a connection to `host:port`.
    ///
    /// # Errors
    ///
    /// When the connection cannot be made.
    fn connect<'a>(&'a self, host: &'a str, port: u16) -> BoxFuture<'a, io::Result<Connection>>;
}

/// Real TCP on one IP address: what web interfaces use outside the simulator.
///
/// Listening sockets handed over by a process manager (`lymph node`'s shared sockets) are used
/// for their ports instead of binding new ones, so several processes serve one port.
#[derive(Debug, Clone)]
pub struct TcpWebNetwork {
    ip: String,
    shared: Arc<Mutex<BTreeMap<u16, std::net::TcpListener>>>,
}

impl TcpWebNetwork {
    /// Listens on `ip` (lymph binds web interfaces to the container's IP).
    pub fn new(ip: impl Into<String>) -> Self {
        Self { ip: ip.into(), shared: Arc::default() }
    }

    /// Uses these already listening sockets, by port, when their port is bound.
    #[must_use]
    pub fn with_shared(self, listeners: impl IntoIterator<Item = (u16, std::net::TcpListener)>) -> Self {
        self.shared.lock().unwrap_or_else(PoisonError::into_inner).extend(listeners);
        self
    }
}

impl Default for TcpWebNetwork {
    /// Loopback: the embedded world's network.
    fn default() -> Self {
        Self::new("127.0.0.1")
    }
}

struct TcpWebListener(TcpListener);

impl WebListener for TcpWebListener {
    fn accept(&mut self) -> BoxFuture<'_, io::Result<Connection>> {
        Box::pin(async move {
            let (stream, _) = self.0.accept().await?;
            stream.set_nodelay(true)?;
            Ok(Box::new(stream) as Connection)
        })
    }
}

impl WebNetwork for TcpWebNetwork {
    fn bind(&self, port: u16) -> BoxFuture<'_, io::Result<(Box<dyn WebListener>, SocketAddr)>> {
        Box::pin(async move {
            let shared =
                if port == 0 { None } else { self.shared.lock().unwrap_or_else(PoisonError::into_inner).remove(&port) };
            let listener = match shared {
                Some(listener) => {
                    listener.set_nonblocking(true)?;
                    TcpListener::from_std(listener)?
                }
                None => TcpListener::bind((self.ip.as_str(), port)).await?,
            };
            let addr = listener.local_addr()?;
            Ok((Box::new(TcpWebListener(listener)) as Box<dyn WebListener>, addr))
        })
    }

    fn connect<'a>(&'a self, host: &'a str, port: u16) -> BoxFuture<'a, io::Result<Connection>> {
        Box::pin(async move {
            let stream = TcpStream::connect((host, port)).await?;
            stream.set_nodelay(true)?;
            Ok(Box::new(stream) as Connection)
        })
    }
}
