//! A TCP fault proxy: the network faults of the simulator, on loopback, in front of a real server.
//!
//! A client that connects through a [`FaultProxy`] instead of to the server directly can be cut
//! off (a partition: no byte flows either way, connections stay open, new ones hang until the
//! link heals, then everything held is delivered, as TCP retransmission would), slowed (every
//! byte arrives a fixed latency after it was sent, in order), made lossy (the link stalls for
//! retransmission timeouts drawn as in the simulator) or crashed (every connection
//! closes at once and new ones are refused, as when the client's machine dies). The kernel here
//! has network namespaces and nftables but no netem; a proxy needs neither root nor a kernel
//! module, touches nothing but loopback, and gives partitions and latencies the same meaning as
//! the simulator's.

use std::net::SocketAddr;
use std::time::Duration;

use rand::SeedableRng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// The state of the proxied link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Link {
    /// Bytes flow (else they are held, in both directions).
    open: bool,
    /// Added to every byte's trip.
    latency: Duration,
    /// Crashed: every connection closes, the listener is gone.
    down: bool,
    /// Stalled by a loss, for a retransmission timeout.
    stalled: bool,
    /// How many times the loss rate was set: the stalls of an older setting stop.
    loss: u64,
}

/// A TCP proxy on `127.0.0.1` in front of one server address, with faults.
///
/// Dropping it closes its listener and every connection through it.
#[derive(Debug)]
pub struct FaultProxy {
    addr: SocketAddr,
    target: String,
    link: watch::Sender<Link>,
}

impl FaultProxy {
    /// Starts a proxy on a free loopback port that forwards every connection to `target`
    /// (`host:port`). Must be called within a tokio runtime.
    ///
    /// # Errors
    ///
    /// When no loopback port can be bound.
    pub async fn start(target: &str) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let link =
            watch::Sender::new(Link { open: true, latency: Duration::ZERO, down: false, stalled: false, loss: 0 });
        tokio::spawn(accept(listener, target.to_owned(), link.subscribe()));
        Ok(Self { addr, target: target.to_owned(), link })
    }

    /// The address clients connect to instead of the target's.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The address the proxy forwards to.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// Cuts the link both ways: bytes in flight and sent from now on are held, new connections
    /// hang; nothing is closed.
    pub fn cut(&self) {
        self.link.send_modify(|link| link.open = false);
    }

    /// Heals a cut: what was held is delivered, in order, and held connections go through.
    pub fn heal(&self) {
        self.link.send_modify(|link| link.open = true);
    }

    /// Every byte arrives `latency` after it was sent, in both directions (zero: no delay).
    pub fn set_latency(&self, latency: Duration) {
        self.link.send_modify(|link| link.latency = latency);
    }

    /// Loses segments at `rate` (0 to 1) from now on, as the simulator does
    /// ([`World::set_loss`](crate::World::set_loss)): every 100 ms a segment is lost with that
    /// probability, and the link holds everything for TCP's retransmission timeout, 200 ms
    /// doubled for each retransmission lost as well. A rate of 0 ends it.
    pub fn set_loss(&self, rate: f64) {
        let mut generation = 0;
        self.link.send_modify(|link| {
            link.loss += 1;
            link.stalled = false;
            generation = link.loss;
        });
        if rate > 0.0 {
            tokio::spawn(lose(self.link.clone(), rate.min(1.0), generation));
        }
    }

    /// Closes every connection at once and refuses new ones, for good: the client's machine died.
    pub fn crash(&self) {
        self.link.send_modify(|link| link.down = true);
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.crash();
    }
}

/// The stalls of a lossy link, until its loss rate is set again or it goes down.
async fn lose(link: watch::Sender<Link>, rate: f64, generation: u64) {
    let mut rng = rand::rngs::StdRng::from_os_rng();
    let current = |link: &watch::Sender<Link>| {
        let state = link.borrow();
        state.loss == generation && !state.down
    };
    while current(&link) {
        let Some(rto) = crate::loss::stall(&mut rng, rate) else {
            tokio::time::sleep(crate::loss::LOSS_INTERVAL).await;
            continue;
        };
        link.send_if_modified(|state| {
            let mine = state.loss == generation;
            state.stalled |= mine;
            mine
        });
        let until = Instant::now() + rto;
        while current(&link) && Instant::now() < until {
            tokio::time::sleep(crate::loss::LOSS_INTERVAL.min(until - Instant::now())).await;
        }
        link.send_if_modified(|state| {
            let mine = state.loss == generation;
            if mine {
                state.stalled = false;
            }
            mine
        });
    }
}

async fn accept(listener: TcpListener, target: String, mut link: watch::Receiver<Link>) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = link.wait_for(|link| link.down) => return,
        };
        let Ok((client, _)) = accepted else { continue };
        tokio::spawn(connection(client, target.clone(), link.clone()));
    }
}

/// One proxied connection: connects to the target once the link is open, then pumps both ways.
async fn connection(client: TcpStream, target: String, mut link: watch::Receiver<Link>) {
    if !wait_open(&mut link).await {
        return;
    }
    let server = tokio::select! {
        server = TcpStream::connect(&target) => server,
        _ = link.wait_for(|link| link.down) => return,
    };
    let Ok(server) = server else { return };
    let _ = (client.set_nodelay(true), server.set_nodelay(true));
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    let up = pump(client_read, server_write, link.clone());
    let down = pump(server_read, client_write, link.clone());
    tokio::select! {
        _ = async { tokio::join!(up, down) } => {}
        _ = link.wait_for(|link| link.down) => {}
    }
}

/// Waits until the link is open; `false` when it went down instead.
async fn wait_open(link: &mut watch::Receiver<Link>) -> bool {
    match link.wait_for(|link| (link.open && !link.stalled) || link.down).await {
        Ok(state) => !state.down,
        Err(_) => false,
    }
}

/// Copies one direction: a reader stamps each chunk with the time it may arrive, a writer holds
/// it until then and while the link is cut. At most 64 chunks wait, so a cut link fills the
/// sender's socket buffers as a real partition does.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    link: watch::Receiver<Link>,
) {
    let (chunks, mut held) = mpsc::channel::<(Instant, Vec<u8>)>(64);
    let mut reader_link = link.clone();
    let reader = async move {
        let mut buffer = vec![0; 64 * 1024];
        loop {
            if !wait_open(&mut reader_link).await {
                return;
            }
            let n = match from.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let due = Instant::now() + reader_link.borrow().latency;
            if chunks.send((due, buffer[..n].to_vec())).await.is_err() {
                return;
            }
        }
    };
    let mut writer_link = link;
    let writer = async move {
        while let Some((due, chunk)) = held.recv().await {
            tokio::time::sleep_until(due).await;
            if !wait_open(&mut writer_link).await || to.write_all(&chunk).await.is_err() {
                return;
            }
        }
        // The reader saw the end of the stream: pass it on.
        let _ = to.shutdown().await;
    };
    tokio::join!(reader, writer);
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn echo_server() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buffer = [0; 1024];
                    while let Ok(n) = stream.read(&mut buffer).await {
                        if n == 0 || stream.write_all(&buffer[..n]).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        addr
    }

    async fn round_trip(stream: &mut TcpStream, text: &[u8]) -> Vec<u8> {
        stream.write_all(text).await.unwrap();
        let mut answer = vec![0; text.len()];
        stream.read_exact(&mut answer).await.unwrap();
        answer
    }

    #[tokio::test]
    async fn forwards_holds_while_cut_and_delivers_after() {
        let proxy = FaultProxy::start(&echo_server().await.to_string()).await.unwrap();
        let mut stream = TcpStream::connect(proxy.addr()).await.unwrap();
        assert_eq!(round_trip(&mut stream, b"hello").await, b"hello");
        proxy.cut();
        stream.write_all(b"held").await.unwrap();
        let mut answer = [0; 4];
        let early = tokio::time::timeout(Duration::from_millis(300), stream.read_exact(&mut answer)).await;
        assert!(early.is_err(), "nothing crosses a cut link");
        proxy.heal();
        stream.read_exact(&mut answer).await.unwrap();
        assert_eq!(&answer, b"held", "what was held is delivered after the cut");
    }

    #[tokio::test]
    async fn latency_delays_every_byte() {
        let proxy = FaultProxy::start(&echo_server().await.to_string()).await.unwrap();
        let mut stream = TcpStream::connect(proxy.addr()).await.unwrap();
        proxy.set_latency(Duration::from_millis(150));
        let start = std::time::Instant::now();
        assert_eq!(round_trip(&mut stream, b"slow").await, b"slow");
        assert!(start.elapsed() >= Duration::from_millis(300), "two trips of 150 ms: {:?}", start.elapsed());
    }

    #[tokio::test]
    async fn a_crash_closes_connections_and_refuses_new_ones() {
        let proxy = FaultProxy::start(&echo_server().await.to_string()).await.unwrap();
        let mut stream = TcpStream::connect(proxy.addr()).await.unwrap();
        assert_eq!(round_trip(&mut stream, b"x").await, b"x");
        proxy.crash();
        let mut rest = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(2), stream.read_to_end(&mut rest)).await;
        assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "the connection is closed: {read:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(TcpStream::connect(proxy.addr()).await.is_err(), "new connections are refused");
    }

    #[tokio::test]
    async fn a_lossy_link_stalls_and_loses_nothing() {
        let proxy = FaultProxy::start(&echo_server().await.to_string()).await.unwrap();
        let mut stream = TcpStream::connect(proxy.addr()).await.unwrap();
        assert_eq!(round_trip(&mut stream, b"clean").await, b"clean");
        // At a rate of 1 every segment is lost, and every retransmission too: the link stalls.
        proxy.set_loss(1.0);
        stream.write_all(b"late").await.unwrap();
        let mut answer = [0; 4];
        let early = tokio::time::timeout(Duration::from_millis(500), stream.read_exact(&mut answer)).await;
        assert!(early.is_err(), "nothing crosses a link that loses everything");
        proxy.set_loss(0.0);
        tokio::time::timeout(Duration::from_secs(2), stream.read_exact(&mut answer)).await.unwrap().unwrap();
        assert_eq!(&answer, b"late", "what the stall held arrives once the loss ends");
        // At a moderate rate everything arrives, in order.
        proxy.set_loss(0.3);
        for n in 0..20u8 {
            assert_eq!(round_trip(&mut stream, &[n]).await, [n]);
        }
        proxy.set_loss(0.0);
    }
}
