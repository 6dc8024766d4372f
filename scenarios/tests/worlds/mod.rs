//! One scenario, a test in each world: `every_world!` turns each `async fn(&impl Cluster) ->
//! Result` of the test file into a test on the embedded backends, a seed sweep in the
//! simulator, and (feature `real-infra`) a test on ZeroMQ, RabbitMQ and ZooKeeper.

/// `every_world!(#[embedded test attribute], seeds; scenario, ...)`: the embedded attribute is
/// `#[tokio::test(start_paused = true)]` for in-process backends, or `#[tokio::test]` when the
/// scenario uses real sockets (loopback TCP), whose waits a paused clock would cut short.
macro_rules! every_world {
    (#[$embedded:meta], $seeds:tt; $($scenario:ident),* $(,)?) => {
        mod embedded {
            $(
                #[$embedded]
                async fn $scenario() -> super::Result {
                    super::$scenario(&super::Embedded::new()).await
                }
            )*
        }
        mod simulated {
            $(
                #[lymph::test(seeds = $seeds)]
                async fn $scenario(world: super::World) -> super::Result {
                    super::$scenario(&world).await
                }
            )*
        }
        /// On ZeroMQ, RabbitMQ and ZooKeeper (`scripts/infra.sh up`), each in a namespace of its own.
        #[cfg(feature = "real-infra")]
        mod real {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() -> super::Result {
                    let cluster = lymph::testing::Real::new()?;
                    let outcome = super::$scenario(&cluster).await;
                    cluster.shutdown().await;
                    outcome
                }
            )*
        }
    };
}
