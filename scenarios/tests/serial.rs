//! `#[serial_event]`: events with one key are handled in order, once, spread over the
//! instances of the service, on the embedded backends, in the simulator and on RabbitMQ.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use lymph::testing::{Cluster, Embedded, World, eventually};
use lymph::{Container, Event, Result, Value};

type Log = Arc<Mutex<Vec<(String, String, i64)>>>;

/// Books entries per account; entries of one account must be booked in order.
#[derive(Debug, Clone)]
struct Ledger {
    instance: String,
    log: Log,
}

#[lymph::interface(name = "ledger")]
impl Ledger {
    /// Books one entry.
    #[serial_event("account.entry", key = "account", partition_count = 6)]
    async fn on_entry(&self, event: Event) -> Result<()> {
        let account = event["account"].as_str().unwrap_or_default().to_owned();
        let seq = event["seq"].as_i64().unwrap_or(-1);
        // Take some time, so that events handled concurrently would interleave.
        tokio::time::sleep(Duration::from_millis(u64::try_from(seq % 3).unwrap_or(0) + 1)).await;
        self.log.lock().unwrap().push((self.instance.clone(), account, seq));
        Ok(())
    }
}

const ACCOUNTS: usize = 5;
const PER_ACCOUNT: i64 = 12;

async fn entries_of_one_account_stay_in_order(cluster: &impl Cluster, settle: Duration) -> lymph::testing::Result {
    let log = Log::default();
    for name in ["ledger-1", "ledger-2"] {
        let ledger = Ledger { instance: name.to_owned(), log: log.clone() };
        cluster.start(name, Box::new(move || Container::builder().interface(ledger.clone()))).await?;
    }
    // The instances see each other in the registry and share the partitions out.
    tokio::time::sleep(settle).await;
    let client = cluster.client().await?;
    for seq in 0..PER_ACCOUNT {
        for account in 0..ACCOUNTS {
            client
                .emit(
                    "account.entry",
                    Value::map([("account", Value::from(format!("acc-{account}"))), ("seq", Value::from(seq))]),
                )
                .await?;
        }
    }
    let total = ACCOUNTS * usize::try_from(PER_ACCOUNT)?;
    let seen = log.clone();
    eventually("every entry was booked", Duration::from_secs(30), move || seen.lock().unwrap().len() >= total).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let log = log.lock().unwrap().clone();
    assert_eq!(log.len(), total, "an entry was booked twice: {log:?}");
    for account in 0..ACCOUNTS {
        let account = format!("acc-{account}");
        let seqs: Vec<i64> = log.iter().filter(|(_, a, _)| *a == account).map(|(_, _, s)| *s).collect();
        assert_eq!(seqs, (0..PER_ACCOUNT).collect::<Vec<_>>(), "{account} out of order");
        let instances: Vec<&String> = log.iter().filter(|(_, a, _)| *a == account).map(|(i, _, _)| i).collect();
        assert!(instances.windows(2).all(|w| w[0] == w[1]), "{account} moved between instances: {instances:?}");
    }
    let first = log.iter().filter(|(i, _, _)| i == "ledger-1").count();
    assert!(first > 0 && first < total, "one instance booked everything ({first} of {total} on ledger-1)");
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn entries_of_one_account_stay_in_order_embedded() -> lymph::testing::Result {
    entries_of_one_account_stay_in_order(&Embedded::new(), Duration::from_secs(2)).await
}

#[lymph::test(seeds = 4)]
async fn entries_of_one_account_stay_in_order_simulated(world: World) -> lymph::testing::Result {
    entries_of_one_account_stay_in_order(&world, Duration::from_secs(3)).await
}

#[cfg(feature = "real-infra")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_of_one_account_stay_in_order_real() -> lymph::testing::Result {
    let cluster = lymph::testing::Real::new()?;
    let outcome = entries_of_one_account_stay_in_order(&cluster, Duration::from_secs(2)).await;
    cluster.shutdown().await;
    outcome
}

/// When an instance stops, the other takes its partitions and the push queue over.
#[tokio::test(start_paused = true)]
async fn a_stopped_instance_hands_its_partitions_over() -> lymph::testing::Result {
    let cluster = Embedded::new();
    let log = Log::default();
    for name in ["ledger-1", "ledger-2"] {
        let ledger = Ledger { instance: name.to_owned(), log: log.clone() };
        cluster.start(name, Box::new(move || Container::builder().interface(ledger.clone()))).await?;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    cluster.stop("ledger-1").await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let client = cluster.client().await?;
    for account in 0..ACCOUNTS {
        client
            .emit(
                "account.entry",
                Value::map([("account", Value::from(format!("acc-{account}"))), ("seq", Value::from(0))]),
            )
            .await?;
    }
    let seen = log.clone();
    eventually("every entry was booked", Duration::from_secs(10), move || seen.lock().unwrap().len() == ACCOUNTS)
        .await?;
    assert!(log.lock().unwrap().iter().all(|(instance, _, _)| instance == "ledger-2"));
    Ok(())
}
