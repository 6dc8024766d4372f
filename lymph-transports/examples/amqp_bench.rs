//! Throughput of `AmqpEvents` against a real RabbitMQ: emits N events (default 50,000) from many
//! concurrent tasks, receives and acks them on one subscription, prints events per second.
//!
//! ```text
//! cargo run --release -p lymph-transports --features amqp --example amqp_bench -- [N] [CONCURRENCY] [URL]
//! ```

use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures::StreamExt;
use lymph_core::Value;
use lymph_core::event::{Event, EventSystem, Subscription};
use lymph_transports::{AmqpConfig, AmqpEvents};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let count: i64 = args.next().map(|n| n.parse()).transpose().context("N must be a number")?.unwrap_or(50_000);
    let concurrency: usize =
        args.next().map(|n| n.parse()).transpose().context("CONCURRENCY must be a number")?.unwrap_or(256);
    let url = args.next().unwrap_or_else(|| AmqpConfig::DEFAULT_URL.to_owned());

    let events = AmqpEvents::connect(AmqpConfig::new(url)).await?;
    let suffix = format!("{:08x}", rand::random::<u32>());
    let event_type = format!("bench.event.{suffix}");
    let queue = format!("bench-{suffix}");
    let mut deliveries = events
        .subscribe(Subscription {
            queue: queue.clone(),
            patterns: vec![event_type.clone()],
            broadcast: false,
            once: false,
        })
        .await?;

    let start = Instant::now();
    let receiver = tokio::spawn(async move {
        let mut received = 0;
        while received < count {
            let delivery = tokio::time::timeout(Duration::from_secs(30), deliveries.recv())
                .await
                .context("no event for 30 s")?
                .context("the subscription ended")?;
            delivery.acker.ack().await?;
            received += 1;
        }
        anyhow::Ok(start.elapsed())
    });

    let payload = Value::Map(vec![(Value::from("text"), Value::from("a benchmark event of some length"))]);
    let results: Vec<_> = futures::stream::iter(0..count)
        .map(|_| events.emit(Event::new(event_type.as_str(), payload.clone(), None), Duration::ZERO))
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let emitted = start.elapsed();
    let failed = results.iter().filter(|result| result.is_err()).count();
    if let Some(Err(error)) = results.into_iter().find(Result::is_err) {
        anyhow::bail!("{failed} emits failed, the first with: {error}");
    }
    let received = receiver.await??;

    let rate = |elapsed: Duration| count as f64 / elapsed.as_secs_f64();
    println!("{count} events, {concurrency} concurrent emits");
    println!("emitted:  {:>9.0} events/s ({emitted:.2?})", rate(emitted));
    println!("received: {:>9.0} events/s ({received:.2?}, acked, from the first emit)", rate(received));

    // One emit at a time, each waiting for its confirm: the round trip bounds this one.
    let serial = 2_000.min(count);
    let start = Instant::now();
    for _ in 0..serial {
        events.emit(Event::new(format!("{event_type}.serial"), payload.clone(), None), Duration::ZERO).await?;
    }
    println!(
        "serial:   {:>9.0} emits/s (one at a time, {serial} emits)",
        serial as f64 / start.elapsed().as_secs_f64()
    );

    let (connection, channel) = {
        let connection =
            lapin::Connection::connect(&events.config().url, lapin::ConnectionProperties::default()).await?;
        let channel = connection.create_channel().await?;
        (connection, channel)
    };
    channel.queue_delete(queue.as_str().into(), lapin::options::QueueDeleteOptions::default()).await?;
    drop(connection);
    Ok(())
}
