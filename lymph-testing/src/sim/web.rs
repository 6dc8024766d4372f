//! The web seam in the simulator: web interfaces listen and clients connect over turmoil's TCP.

use std::io;
use std::net::SocketAddr;

use futures::future::BoxFuture;
use lymph_core::web::{Connection, WebListener, WebNetwork};
use turmoil::net::{TcpListener, TcpStream};

use super::SimHost;

/// A [`WebNetwork`] of one simulated host: web interfaces bind its ports, and register the
/// host's simulated IP address.
#[derive(Debug, Clone)]
pub struct SimWebNetwork {
    host: String,
}

impl SimWebNetwork {
    /// The web network of `host`; use it from within that host.
    pub fn new(host: &SimHost) -> Self {
        Self { host: host.name().to_owned() }
    }
}

struct SimWebListener(TcpListener);

impl WebListener for SimWebListener {
    fn accept(&mut self) -> BoxFuture<'_, io::Result<Connection>> {
        Box::pin(async move {
            let (stream, _) = self.0.accept().await?;
            Ok(Box::new(stream) as Connection)
        })
    }
}

impl WebNetwork for SimWebNetwork {
    fn bind(&self, port: u16) -> BoxFuture<'_, io::Result<(Box<dyn WebListener>, SocketAddr)>> {
        Box::pin(async move {
            let listener = TcpListener::bind(("0.0.0.0", port)).await?;
            let port = listener.local_addr()?.port();
            let addr = SocketAddr::new(turmoil::lookup(self.host.as_str()), port);
            Ok((Box::new(SimWebListener(listener)) as Box<dyn WebListener>, addr))
        })
    }

    fn connect<'a>(&'a self, host: &'a str, port: u16) -> BoxFuture<'a, io::Result<Connection>> {
        Box::pin(async move {
            let stream = TcpStream::connect((host, port)).await?;
            Ok(Box::new(stream) as Connection)
        })
    }
}
