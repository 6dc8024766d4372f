//! Embedded-backend RPC throughput: sequential calls and calls with 50 in flight, one client and
//! one service on an in-process network, printed as calls per second.
//!
//! `cargo run --release -p lymph --example bench_embedded [calls]`

use std::time::Instant;

use lymph::memory::MemoryNetwork;
use lymph::{Container, Result};

#[derive(Debug, Default)]
struct Echo;

#[lymph::interface(name = "echo")]
impl Echo {
    /// Returns `text`.
    #[rpc]
    async fn echo(&self, text: String) -> Result<String> {
        Ok(text)
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let calls: usize = std::env::args().nth(1).and_then(|n| n.parse().ok()).unwrap_or(50_000);
    let network = MemoryNetwork::new();
    let _service = Container::builder().network(&network).interface(Echo).start().await?;
    let client = Container::builder().network(&network).start().await?;
    let echo: EchoClient = client.client();
    echo.echo("warm".to_owned()).await?;

    let started = Instant::now();
    for _ in 0..calls {
        echo.echo("hello".to_owned()).await?;
    }
    let sequential = calls as f64 / started.elapsed().as_secs_f64();

    let started = Instant::now();
    let per_task = calls / 50;
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let echo = echo.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..per_task {
                echo.echo("hello".to_owned()).await?;
            }
            Ok::<(), lymph::Error>(())
        }));
    }
    for task in tasks {
        task.await.map_err(lymph::Error::transport)??;
    }
    let concurrent = (per_task * 50) as f64 / started.elapsed().as_secs_f64();
    println!("embedded rpc, {calls} calls: sequential {sequential:.0} calls/s, 50 in flight {concurrent:.0} calls/s");
    Ok(())
}
