//! Listening sockets shared by `lymph node` with its children (lymph's `sockets:` and
//! `LYMPH_SHARED_SOCKET_FDS`), so several instances of a web service serve one port.
//!
//! The node binds every socket of its configuration's `sockets:` (a list, or a map, of
//! `{host, port}`), keeps it open across `exec`, and passes `{"<port>": <fd>, ...}` (JSON, as
//! lymph) in `LYMPH_SHARED_SOCKET_FDS`. An instance whose web interface has a fixed port takes
//! the socket of that port from there instead of binding it, as Python lymph does.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};

use lymph_core::Value;

/// The environment variable lymph passes the shared sockets in.
pub(crate) const ENV: &str = "LYMPH_SHARED_SOCKET_FDS";

/// The node's shared sockets, bound and inheritable, with their `LYMPH_SHARED_SOCKET_FDS` value.
#[derive(Debug)]
pub(crate) struct Shared {
    /// Kept open for as long as the node runs.
    _listeners: Vec<TcpListener>,
    pub(crate) env: String,
}

/// Binds the sockets of a `sockets:` section; `ip` is the host of those that name none.
pub(crate) fn bind(section: &Value, ip: &str) -> Result<Shared, String> {
    let entries: Vec<&Value> = match section {
        Value::Nil => Vec::new(),
        Value::Array(entries) => entries.iter().collect(),
        Value::Map(entries) => entries.iter().map(|(_, v)| v).collect(),
        _ => return Err("sockets: expected a list or a map of {host, port}".to_owned()),
    };
    let mut listeners = Vec::new();
    let mut fds = serde_json::Map::new();
    for (i, entry) in entries.into_iter().enumerate() {
        let port = entry
            .get("port")
            .and_then(Value::as_u64)
            .and_then(|p| u16::try_from(p).ok())
            .filter(|p| *p != 0)
            .ok_or_else(|| format!("sockets[{i}].port: expected a port number"))?;
        let host = entry.get("host").and_then(Value::as_str).unwrap_or(ip);
        let listener = TcpListener::bind((host, port))
            .map_err(|e| format!("sockets[{i}]: cannot listen on {host}:{port}: {e}"))?;
        // Children inherit it across exec.
        rustix::io::fcntl_setfd(&listener, rustix::io::FdFlags::empty())
            .map_err(|e| format!("sockets[{i}]: cannot share {host}:{port}: {e}"))?;
        fds.insert(port.to_string(), listener.as_raw_fd().into());
        listeners.push(listener);
    }
    Ok(Shared { _listeners: listeners, env: serde_json::Value::Object(fds).to_string() })
}

/// The listening sockets a node shared with this process, by port; bad entries are logged and
/// left out.
pub(crate) fn inherited() -> BTreeMap<u16, TcpListener> {
    let Ok(text) = std::env::var(ENV) else { return BTreeMap::new() };
    let fds: BTreeMap<String, i64> = match serde_json::from_str(&text) {
        Ok(fds) => fds,
        Err(error) => {
            tracing::warn!(%error, "{ENV} is not a JSON map of ports to file descriptors; ignored");
            return BTreeMap::new();
        }
    };
    let mut listeners = BTreeMap::new();
    for (port, fd) in fds {
        let adopted = port
            .parse::<u16>()
            .map_err(|e| format!("port {port:?}: {e}"))
            .and_then(|port| Ok((port, adopt(RawFd::try_from(fd).map_err(|e| e.to_string())?)?)));
        match adopted {
            Ok((port, listener)) => {
                listeners.insert(port, listener);
            }
            Err(error) => tracing::warn!(port, fd, %error, "shared socket not used"),
        }
    }
    listeners
}

/// A listening TCP socket of this process, given by number, as a listener of its own (a
/// duplicate of the descriptor).
fn adopt(fd: RawFd) -> Result<TcpListener, String> {
    // Check the descriptor is an open socket before touching it.
    let link = std::fs::read_link(format!("/proc/self/fd/{fd}")).map_err(|e| format!("fd {fd}: {e}"))?;
    if !link.to_string_lossy().starts_with("socket:") {
        return Err(format!("fd {fd} is {} and not a socket", link.display()));
    }
    #[allow(unsafe_code)]
    // SAFETY: `fd` is open (its /proc entry exists) and stays open while it is borrowed here:
    // nothing else in this process closes descriptors it did not open, and the node passed it
    // for this process to use. It is only duplicated, never closed.
    let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
    if !rustix::net::sockopt::socket_acceptconn(borrowed).map_err(|e| format!("fd {fd}: {e}"))? {
        return Err(format!("fd {fd} is not a listening socket"));
    }
    let owned = borrowed.try_clone_to_owned().map_err(|e| format!("fd {fd}: {e}"))?;
    Ok(TcpListener::from(owned))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bound_socket_is_adopted_and_a_file_is_refused() {
        let shared = bind(&Value::Array(vec![Value::map([("port", Value::from(0))])]), "127.0.0.1");
        assert_eq!(shared.unwrap_err(), "sockets[0].port: expected a port number");
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let adopted = adopt(listener.as_raw_fd()).unwrap();
        assert_eq!(adopted.local_addr().unwrap(), listener.local_addr().unwrap());
        let file = std::fs::File::open("/proc/self/status").unwrap();
        assert!(adopt(file.as_raw_fd()).unwrap_err().contains("not a socket"));
        let unconnected = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        assert!(adopt(unconnected.as_raw_fd()).is_err());
        assert!(adopt(99_999).is_err());
    }
}
