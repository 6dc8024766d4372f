//! The talk's services, each scenario run on the embedded backends, in the simulator and, with
//! the `real-infra` feature, on ZeroMQ, RabbitMQ and ZooKeeper.

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use lymph::testing::{Cluster, Embedded, Result, TestError, World, eventually};
use lymph::{Container, Error, Value};
use scenarios::echo::{Echo, EchoClient, UPPERCASED};
use scenarios::talk;

fn check(condition: bool, what: impl Into<String>) -> Result {
    if condition { Ok(()) } else { Err(Box::new(TestError::new(what))) }
}

async fn upper_reaches_the_listener_in_one_trace(cluster: &impl Cluster) -> Result {
    let talk = talk::start(cluster).await?;
    let ctx = talk.client.context();
    let reply = ctx.client::<EchoClient>().upper("hi".to_owned()).await?;
    check(reply == "HI", format!("upper returned {reply:?}"))?;
    let listener = talk.listener.clone();
    eventually("the listener got the event", Duration::from_secs(5), || !listener.received().is_empty()).await?;
    let event = &talk.listener.received()[0];
    check(event.event_type == UPPERCASED, format!("event type {}", event.event_type))?;
    check(event.get("text") == Some(&Value::from("hi")), format!("event body {}", event.body))?;
    check(event.trace_id() == Some(ctx.trace_id()), format!("trace {:?} != {:?}", event.trace_id(), ctx.trace_id()))?;
    Ok(())
}

async fn two_instances_share_the_load(cluster: &impl Cluster) -> Result {
    let talk = talk::start(cluster).await?;
    let echo: EchoClient = talk.client.client();
    for i in 0..40 {
        check(echo.echo(format!("{i}")).await? == format!("{i}"), "echo changed its text")?;
    }
    let served: Vec<usize> = talk.echoes.iter().map(Echo::served).collect();
    check(served.iter().sum::<usize>() == 40, format!("served {served:?}"))?;
    check(served.iter().all(|&n| n >= 5), format!("the load is not shared: {served:?}"))?;
    Ok(())
}

async fn fail_raises_a_remote_value_error(cluster: &impl Cluster) -> Result {
    let talk = talk::start(cluster).await?;
    match talk.client.client::<EchoClient>().fail("boom".to_owned()).await {
        Err(Error::RemoteError { type_name, message }) => {
            check(type_name == "ValueError" && message == "boom", format!("{type_name}: {message}"))
        }
        other => Err(Box::new(TestError::new(format!("expected RemoteError(ValueError), got {other:?}")))),
    }
}

async fn an_unknown_method_is_nacked(cluster: &impl Cluster) -> Result {
    let talk = talk::start(cluster).await?;
    let reply = talk.client.proxy("echo").call::<Value, _>("nosuchmethod", &Value::Map(Vec::new())).await;
    check(matches!(reply, Err(Error::Nack { .. })), format!("expected a NACK, got {reply:?}"))?;
    let bad_args = talk.client.proxy("echo").call::<String, _>("upper", &Value::map([("txt", "hi")])).await;
    check(
        matches!(bad_args, Err(Error::Nack { .. })),
        format!("expected a NACK for a bad argument, got {bad_args:?}"),
    )?;
    // The service keeps serving.
    check(talk.client.client::<EchoClient>().echo("still".to_owned()).await? == "still", "echo after a NACK")
}

async fn a_stopped_instance_is_not_chosen(cluster: &impl Cluster) -> Result {
    let talk = talk::start(cluster).await?;
    cluster.stop("echo-1").await?;
    let before = talk.echoes[0].served();
    let echo: EchoClient = talk.client.client();
    for i in 0..10 {
        check(echo.echo(format!("{i}")).await? == format!("{i}"), "echo changed its text")?;
    }
    check(talk.echoes[0].served() == before, "the stopped instance served requests")?;
    check(talk.echoes[1].served() >= 10, "the other instance did not serve them")
}

async fn no_instances_is_told_apart_from_no_service(cluster: &impl Cluster) -> Result {
    let echo_count = Arc::new(AtomicUsize::new(0));
    cluster
        .start("echo-1", Box::new(move || Container::builder().interface(Echo::counting(echo_count.clone()))))
        .await?;
    let client = cluster.client().await?;
    let missing = client.proxy("nosuchservice").call::<Value, _>("x", &Value::Map(Vec::new())).await;
    check(matches!(missing, Err(Error::LookupFailure { .. })), format!("expected LookupFailure, got {missing:?}"))?;
    cluster.stop("echo-1").await?;
    let client = cluster.client().await?;
    let gone = client.client::<EchoClient>().echo("x".to_owned()).await;
    check(
        matches!(gone, Err(Error::NotConnected { reason: lymph::NotConnectedReason::NoInstances, .. })),
        format!("expected NotConnected(NoInstances), got {gone:?}"),
    )
}

lymph::testing::every_world!(
    seeds = 4;
    upper_reaches_the_listener_in_one_trace,
    two_instances_share_the_load,
    fail_raises_a_remote_value_error,
    an_unknown_method_is_nacked,
    a_stopped_instance_is_not_chosen,
    no_instances_is_told_apart_from_no_service,
);

#[lymph::test(seeds = 2)]
async fn the_talk_passes(world: World) -> Result {
    let summary = talk::run(&world, 5).await?;
    check(summary.passed(), summary.to_string())
}

#[tokio::test(start_paused = true)]
async fn the_talk_passes_embedded() -> Result {
    let summary = talk::run(&Embedded::new(), 5).await?;
    check(summary.passed(), summary.to_string())
}

/// A crashed instance stops answering: its registry session ends and clients route around it.
#[lymph::test(seeds = 4)]
async fn a_crashed_instance_is_routed_around(world: World) -> Result {
    let talk = talk::start(&world).await?;
    let echo: EchoClient = talk.client.client();
    for i in 0..4 {
        echo.echo(format!("{i}")).await?;
    }
    world.crash("echo-1");
    let mut failures = 0;
    for i in 0..20 {
        if echo.echo(format!("{i}")).await.is_err() {
            failures += 1;
        }
    }
    check(failures <= 5, format!("{failures} of 20 calls failed after the crash"))?;
    let served_after: usize = talk.echoes[1].served();
    check(served_after >= 15, format!("echo-2 served only {served_after}"))
}
