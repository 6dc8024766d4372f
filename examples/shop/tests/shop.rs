//! The shop's scenarios, each a test on the embedded backends, a seed sweep in the simulator,
//! and with `--features real-infra` a test on ZeroMQ, RabbitMQ and ZooKeeper.

use std::time::Duration;

use lymph::testing::{Cluster, Result, TestError, eventually};
use lymph::{Container, Error};
use shop::{Payments, PaymentsClient, Wallet, WalletClient};

/// Starts `payments-1` and `wallet-1`.
async fn start_shop(cluster: &impl Cluster) -> Result {
    cluster.start("payments-1", Box::new(|| Container::builder().interface(Payments))).await?;
    cluster.start("wallet-1", Box::new(|| Container::builder().interface(Wallet::default()))).await?;
    Ok(())
}

/// A payment reaches the wallet: its balance, read over RPC, becomes the amount paid.
async fn a_payment_is_credited(cluster: &impl Cluster) -> Result {
    start_shop(cluster).await?;
    let client = cluster.client().await?;
    client.client::<PaymentsClient>().pay("alice".into(), 30).await?;
    let wallet = client.client::<WalletClient>();
    eventually("alice's balance is 30", Duration::from_secs(10), async || {
        wallet.balance("alice".into()).await.is_ok_and(|balance| balance == 30)
    })
    .await?;
    Ok(())
}

/// A payment of nothing is refused with the service's own error, and credits nothing.
async fn a_bad_payment_is_refused(cluster: &impl Cluster) -> Result {
    start_shop(cluster).await?;
    let client = cluster.client().await?;
    let refused = client.client::<PaymentsClient>().pay("bob".into(), 0).await;
    if !matches!(&refused, Err(Error::RemoteError { type_name, .. }) if type_name == "ValueError") {
        return Err(TestError::new(format!("expected a ValueError, got {refused:?}")).into());
    }
    let balance = client.client::<WalletClient>().balance("bob".into()).await?;
    if balance != 0 {
        return Err(TestError::new(format!("bob's balance is {balance} after a refused payment")).into());
    }
    Ok(())
}

lymph::testing::every_world!(seeds = 8; a_payment_is_credited, a_bad_payment_is_refused);

/// A scenario that fails on purpose, to see what a failing seed prints: the replay line and the
/// file its timeline was written to. `cargo test -- --ignored` runs it.
#[lymph::test(seeds = 1)]
#[ignore = "fails on purpose: shows the output of a failing seed"]
async fn a_failing_seed_names_its_timeline(world: lymph::testing::World) -> Result {
    start_shop(&world).await?;
    let client = world.client().await?;
    client.client::<PaymentsClient>().pay("carol".into(), 5).await?;
    let balance = client.client::<WalletClient>().balance("carol".into()).await?;
    Err(TestError::new(format!("planted failure (carol's balance was {balance})")).into())
}
