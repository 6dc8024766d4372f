//! `AmqpEvents` across a RabbitMQ restart (`scripts/infra.sh stop rabbitmq`, then `start`).
//!
//! The script stops and starts the broker with `rabbitmqctl stop_app` / `start_app`, so this runs
//! against RabbitMQ started any way (the node: `LYMPH_TEST_RABBITMQ_NODE`, else found). A test
//! binary of its own: the restart disturbs every other user of the broker, so it must not run
//! next to the other AMQP tests.
#![cfg(feature = "real-infra")]

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use lymph_core::event::{Deliveries, Event, EventSystem, Subscription};
use lymph_core::{Error, Value};
use lymph_transports::{AmqpConfig, AmqpEvents};

fn unique(prefix: &str) -> String {
    format!("{prefix}{:08x}", rand::random::<u32>())
}

fn event(event_type: &str, n: i64) -> Event {
    Event::new(event_type, Value::Map(vec![(Value::from("n"), Value::from(n))]), None)
}

fn infra(args: &[&str]) -> anyhow::Result<()> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/infra.sh");
    let output = Command::new("bash").arg(script).args(args).output().context("cannot run scripts/infra.sh")?;
    let log = String::from_utf8_lossy(&output.stderr);
    if output.status.success() {
        eprint!("{log}");
    }
    ensure!(output.status.success(), "scripts/infra.sh {} failed ({}):\n{}", args.join(" "), output.status, log.trim());
    Ok(())
}

/// Starts RabbitMQ again when dropped, so that a failing test does not leave it stopped.
struct StartOnDrop;

impl Drop for StartOnDrop {
    fn drop(&mut self) {
        if let Err(error) = infra(&["start", "rabbitmq"]) {
            eprintln!("{error:#}");
        }
    }
}

/// Receives the next event of `deliveries`, which must be number `n`, and acks it.
async fn expect(deliveries: &mut Deliveries, n: i64) -> anyhow::Result<()> {
    let delivery = tokio::time::timeout(Duration::from_secs(5), deliveries.recv())
        .await
        .with_context(|| format!("event {n} did not arrive"))?
        .context("the subscription ended")?;
    assert_eq!(delivery.event.get("n").and_then(Value::as_i64), Some(n));
    delivery.acker.ack().await?;
    Ok(())
}

#[tokio::test]
async fn subscriptions_survive_a_broker_restart() -> anyhow::Result<()> {
    let events = AmqpEvents::connect(AmqpConfig::default()).await.context("is RabbitMQ up? scripts/infra.sh up")?;
    let event_type = unique("restart.event.");
    let queue = unique("restart-queue-");
    let mut shared = events
        .subscribe(Subscription {
            queue: queue.clone(),
            patterns: vec![event_type.clone()],
            broadcast: false,
            once: false,
        })
        .await?;
    let mut broadcast = events
        .subscribe(Subscription {
            queue: unique("restart-bc-"),
            patterns: vec![event_type.clone()],
            broadcast: true,
            once: false,
        })
        .await?;
    events.emit(event(&event_type, 1), Duration::ZERO).await?;
    expect(&mut shared, 1).await?;
    expect(&mut broadcast, 1).await?;

    infra(&["stop", "rabbitmq"])?;
    let restart = StartOnDrop;
    // Down: emits fail promptly, with a transport error, and nothing panics.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let start = Instant::now();
        let result = events.emit(event(&event_type, 0), Duration::ZERO).await;
        ensure!(
            start.elapsed() < Duration::from_secs(2),
            "an emit took {:?} while the broker was down",
            start.elapsed()
        );
        match result {
            Err(Error::Transport(error)) => {
                ensure!(error.to_string().contains("127.0.0.1:5672"), "unclear error: {error}");
                break;
            }
            Err(error) => bail!("unexpected error {error:?}"),
            Ok(()) => ensure!(Instant::now() < deadline, "emits still succeed with the broker stopped"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The supervisor notices the loss (it may take a health check, 250 ms).
    let deadline = Instant::now() + Duration::from_secs(2);
    while events.is_connected() {
        ensure!(Instant::now() < deadline, "the lost connection is not noticed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let start = Instant::now();
    let error = events.emit(event(&event_type, 0), Duration::ZERO).await.err().context("an emit succeeded")?;
    ensure!(start.elapsed() < Duration::from_millis(100), "an emit took {:?} while reconnecting", start.elapsed());
    ensure!(error.to_string().contains("reconnecting"), "unclear error: {error}");

    drop(restart);
    // Back: once emits succeed again, the subscriptions' queues exist again (the reconnection
    // declares them before emits may use it), so the first event emitted arrives at both.
    let deadline = Instant::now() + Duration::from_secs(60);
    while let Err(error) = events.emit(event(&event_type, 2), Duration::ZERO).await {
        ensure!(Instant::now() < deadline, "emits still fail a minute after the restart: {error}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(events.is_connected());
    expect(&mut shared, 2).await?;
    expect(&mut broadcast, 2).await?;
    events.emit(event(&event_type, 3), Duration::ZERO).await?;
    expect(&mut shared, 3).await?;
    expect(&mut broadcast, 3).await?;
    Ok(())
}
