//! A seed replays exactly, whatever ran before it in the same process, crashes and restarts
//! included.

use lymph::testing::{RenderOptions, Runner, World};
use scenarios::echo::EchoClient;
use scenarios::talk;

/// Crashes and restarts an echo instance while a client calls it.
async fn crash_and_restart(world: World) {
    let talk = talk::start(&world).await.expect("the talk starts");
    let echo: EchoClient = talk.client.client();
    for i in 0..4 {
        echo.echo(format!("{i}")).await.expect("echo before the crash");
    }
    world.crash("echo-1");
    for i in 0..10 {
        let _ = echo.echo(format!("{i}")).await;
    }
    world.restart("echo-1").await.expect("echo-1 restarts");
    for i in 0..10 {
        let _ = echo.echo(format!("{i}")).await;
    }
}

/// tokio numbers tasks with a process-wide counter and, when turmoil drops a crashed host's
/// runtime, drops its tasks in an order that depends on those numbers; tokio's watch channels
/// wake waiters in a random order. Neither may leak into a simulation: here the counter is
/// moved between runs of one seed, and every run must give the same timeline.
#[test]
fn a_crash_replays_whatever_ran_before_it() {
    let runner = Runner::new("replay::a_crash_replays_whatever_ran_before_it", "scenarios", "replay");
    let options = RenderOptions { heartbeats: true, ..Default::default() };
    let runtime = tokio::runtime::Builder::new_current_thread().build().expect("a runtime");
    for seed in [1, 2, 3] {
        let first = runner.run_seed(seed, &crash_and_restart).timeline.render(&options);
        assert!(first.contains("crash echo-1") && first.contains("restart echo-1"), "{first}");
        for shift in 1..4 {
            for _ in 0..shift {
                runtime.block_on(async { tokio::spawn(async {}).await.expect("a task") });
            }
            let again = runner.run_seed(seed, &crash_and_restart).timeline.render(&options);
            if again != first {
                let line = first.lines().zip(again.lines()).position(|(a, b)| a != b).unwrap_or(0);
                panic!(
                    "seed {seed} replayed differently after {shift} more tokio tasks, at line {}:\n  {}\n  {}",
                    line + 1,
                    first.lines().nth(line).unwrap_or("<end>"),
                    again.lines().nth(line).unwrap_or("<end>")
                );
            }
        }
    }
}
