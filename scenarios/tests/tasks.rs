//! `#[task]`: applied as `lymph.tasks.<interface>.<task>` events, run only by worker containers,
//! on the embedded backends and in the simulator.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use lymph::memory::MemoryNetwork;
use lymph::testing::{Cluster, Embedded, World, eventually};
use lymph::{Container, Context, Error, Registry, Result, Value};

/// Sends mail later: `notify` applies the `send_mail` task; workers run it.
#[derive(Debug, Clone, Default)]
struct Mailer {
    sent: Arc<Mutex<Vec<(String, u32)>>>,
}

impl Mailer {
    fn sent(&self) -> Vec<(String, u32)> {
        self.sent.lock().unwrap().clone()
    }
}

#[lymph::interface(name = "mailer")]
impl Mailer {
    /// Queues a mail to `to`.
    #[rpc]
    async fn notify(&self, ctx: &Context, to: String) -> Result<()> {
        ctx.client::<MailerClient>().apply_send_mail(to, 1).await
    }

    /// Sends `copies` mails to `to`.
    #[task]
    async fn send_mail(&self, to: String, copies: u32) -> Result<()> {
        self.sent.lock().unwrap().push((to, copies));
        Ok(())
    }

    /// Runs one task at a time.
    #[task(sequential)]
    async fn rebuild_index(&self, ctx: &Context) -> Result<()> {
        self.sent.lock().unwrap().push((format!("index {}", ctx.trace_id().len()), 0));
        Ok(())
    }
}

async fn only_workers_run_tasks(cluster: &impl Cluster, wait: Duration) -> lymph::testing::Result {
    let instance = Mailer::default();
    let worker = Mailer::default();
    let factory = instance.clone();
    cluster.start("mailer", Box::new(move || Container::builder().interface(factory.clone()))).await?;
    let factory = worker.clone();
    cluster
        .start("mailer-worker", Box::new(move || Container::builder().interface(factory.clone()).worker(true)))
        .await?;

    let client = cluster.client().await?;
    let mailer: MailerClient = client.client();
    mailer.notify("ann@example.com".to_owned()).await?;
    mailer.apply_send_mail("bob@example.com".to_owned(), 3).await?;
    let seen = worker.clone();
    eventually("the worker ran both tasks", wait, move || seen.sent().len() == 2).await?;
    let mut sent = worker.sent();
    sent.sort();
    assert_eq!(sent, vec![("ann@example.com".to_owned(), 1), ("bob@example.com".to_owned(), 3)]);
    assert!(instance.sent().is_empty(), "a container that is not a worker ran a task: {:?}", instance.sent());

    // A task is not an RPC method.
    let nack = client.proxy("mailer").call::<Value, _>("send_mail", &Value::map([("to", "x"), ("copies", "1")])).await;
    assert!(matches!(nack, Err(Error::Nack { .. })), "{nack:?}");
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn only_workers_run_tasks_embedded() -> lymph::testing::Result {
    only_workers_run_tasks(&Embedded::new(), Duration::from_secs(5)).await
}

#[lymph::test(seeds = 4)]
async fn only_workers_run_tasks_simulated(world: World) -> lymph::testing::Result {
    only_workers_run_tasks(&world, Duration::from_secs(10)).await
}

#[tokio::test(start_paused = true)]
async fn a_worker_registers_as_name_dot_worker_and_consumes_its_own_queues() -> Result<()> {
    let network = MemoryNetwork::new();
    let worker = Mailer::default();
    let _worker = Container::builder().network(&network).interface(worker.clone()).worker(true).start().await?;
    let mut services = network.registry().discover().await?;
    services.sort();
    assert_eq!(services, vec!["lymph".to_owned(), "mailer.worker".to_owned()]);
    let instances = network.registry().watch("mailer.worker").await?.borrow().clone();
    assert!(instances.iter().all(|i| i.worker), "{instances:?}");
    let mut queues = network.events().queues();
    queues.sort();
    assert_eq!(queues, vec!["mailer.worker-rebuild_index".to_owned(), "mailer.worker-send_mail".to_owned()]);

    // A task event whose body does not fit the task is rejected; the next one runs.
    let client = Container::builder().network(&network).start().await?;
    client.emit("lymph.tasks.mailer.send_mail", Value::map([("to", "x")])).await?;
    client
        .proxy("mailer")
        .apply("send_mail", &Value::map([("to", Value::from("y")), ("copies", Value::from(2))]))
        .await?;
    client.proxy("mailer").apply("rebuild_index", &Value::Map(Vec::new())).await?;
    let seen = worker.clone();
    eventually("the good tasks ran", Duration::from_secs(5), move || seen.sent().len() == 2)
        .await
        .map_err(|e| Error::Config(e.to_string()))?;
    let sent = worker.sent();
    assert!(sent.contains(&("y".to_owned(), 2)), "{sent:?}");
    assert!(sent.contains(&("index 32".to_owned(), 0)), "{sent:?}");
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn a_worker_without_tasks_hosts_only_the_builtin_interface() -> Result<()> {
    #[derive(Debug, Default)]
    struct Plain;
    #[lymph::interface(name = "plain")]
    impl Plain {
        /// Nothing.
        #[rpc]
        async fn nothing(&self) -> Result<()> {
            Ok(())
        }
    }
    let network = MemoryNetwork::new();
    let _worker = Container::builder()
        .network(&network)
        .interface(Plain)
        .interface(Mailer::default())
        .worker(true)
        .start()
        .await?;
    let mut services = network.registry().discover().await?;
    services.sort();
    assert_eq!(services, vec!["lymph".to_owned(), "mailer.worker".to_owned()]);
    Ok(())
}

/// On RabbitMQ: the task queue is `mailer.worker-send_mail`, bound to `lymph.tasks.mailer.send_mail`.
#[cfg(feature = "real-infra")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_workers_run_tasks_real() -> lymph::testing::Result {
    let cluster = lymph::testing::Real::new()?;
    let outcome = only_workers_run_tasks(&cluster, Duration::from_secs(10)).await;
    cluster.shutdown().await;
    outcome
}
