//! [`every_world!`](crate::every_world): one scenario body, a test in every world.

/// Turns scenario functions into a test on the embedded backends, a seed sweep in the simulator,
/// and, when the calling crate's own feature `real-infra` is on, a test on ZeroMQ, RabbitMQ and
/// ZooKeeper.
///
/// Each scenario is an `async fn name(cluster: &impl Cluster) -> lymph::testing::Result` of the
/// module the macro is called in. The macro adds three modules beside them, `embedded`,
/// `simulated` and `real`, each with one test per scenario (`embedded::name`, `simulated::name`,
/// `real::name`):
///
/// - `embedded`: on [`Embedded`](crate::Embedded), on a paused tokio clock, so waits cost no
///   wall time. Write `seeds = N, embedded_clock = real` when a scenario uses real sockets
///   (a web interface on loopback TCP), whose waits a paused clock would cut short.
/// - `simulated`: `N` seeds in the simulator, as `#[lymph::test(seeds = N)]` runs them
///   (`LYMPH_TEST_NUM`, `LYMPH_TEST_SEED`, `LYMPH_TEST_SHARD`, `LYMPH_TEST_TIMELINE` apply).
/// - `real`: on `Real`, a namespace of its own on the servers
///   `scripts/infra.sh up` starts. The calling crate declares the feature and passes it on:
///   `real-infra = ["lymph/real-infra"]` in its `[features]`, then
///   `cargo test --features real-infra`.
///
/// ```ignore
/// use lymph::testing::{Cluster, Result};
///
/// async fn upper_works(cluster: &impl Cluster) -> Result {
///     cluster.start("echo-1", Box::new(|| Container::builder().interface(Echo))).await?;
///     let client = cluster.client().await?;
///     assert_eq!(client.client::<EchoClient>().upper("hi".into()).await?, "HI");
///     Ok(())
/// }
///
/// lymph::testing::every_world!(seeds = 8; upper_works);
/// ```
#[macro_export]
macro_rules! every_world {
    (seeds = $seeds:expr; $($scenario:ident),* $(,)?) => {
        $crate::every_world!(@worlds Paused $seeds; $($scenario),*);
    };
    (seeds = $seeds:expr, embedded_clock = paused; $($scenario:ident),* $(,)?) => {
        $crate::every_world!(@worlds Paused $seeds; $($scenario),*);
    };
    (seeds = $seeds:expr, embedded_clock = real; $($scenario:ident),* $(,)?) => {
        $crate::every_world!(@worlds Real $seeds; $($scenario),*);
    };
    (@worlds $clock:ident $seeds:expr; $($scenario:ident),*) => {
        /// The scenarios on the embedded backends.
        mod embedded {
            $(
                #[test]
                fn $scenario() -> $crate::Result {
                    $crate::__private::block_on($crate::__private::Clock::$clock, async {
                        super::$scenario(&$crate::Embedded::new()).await
                    })
                }
            )*
        }
        /// The scenarios in the simulator, a seed sweep each.
        mod simulated {
            $(
                #[test]
                fn $scenario() {
                    $crate::Runner::new(
                        ::core::concat!(::core::module_path!(), "::", ::core::stringify!($scenario)),
                        ::core::env!("CARGO_PKG_NAME"),
                        ::core::env!("CARGO_CRATE_NAME"),
                    )
                    .seeds($seeds)
                    .run(|world: $crate::World| async move {
                        let outcome: $crate::Result = super::$scenario(&world).await;
                        outcome
                    });
                }
            )*
        }
        /// The scenarios on ZeroMQ, RabbitMQ and ZooKeeper, each cluster in a namespace of its own.
        #[cfg(feature = "real-infra")]
        mod real {
            $(
                #[test]
                fn $scenario() -> $crate::Result {
                    $crate::__private::block_on($crate::__private::Clock::Threads, async {
                        let cluster = $crate::Real::new()?;
                        let outcome = super::$scenario(&cluster).await;
                        cluster.shutdown().await;
                        outcome
                    })
                }
            )*
        }
    };
}

/// What the tests [`every_world!`](crate::every_world) writes run on.
#[derive(Debug, Clone, Copy)]
pub enum Clock {
    /// A current-thread runtime whose clock is paused: sleeps advance it at once.
    Paused,
    /// A current-thread runtime on real time.
    Real,
    /// A two-thread runtime on real time, for real servers.
    Threads,
}

/// Runs `future` to completion on a new tokio runtime of the kind `clock` says.
///
/// # Panics
///
/// When the runtime cannot be built (the system is out of threads or file descriptors).
pub fn block_on<F: std::future::Future>(clock: Clock, future: F) -> F::Output {
    let mut builder = match clock {
        Clock::Paused | Clock::Real => tokio::runtime::Builder::new_current_thread(),
        Clock::Threads => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            builder.worker_threads(2);
            builder
        }
    };
    builder.enable_all().start_paused(matches!(clock, Clock::Paused));
    builder.build().expect("a tokio runtime for the test").block_on(future)
}
