//! A failing simulated test prints a replay line, and its seed reproduces the failure exactly.

use std::process::Command;

use lymph_testing::{Runner, World};

/// Fails for about half of all seeds: when the first trace id its client makes starts with a
/// digit below 8. Run only as a child process by the tests below.
#[test]
#[ignore = "fails on purpose; run by replay_line_reproduces_the_failure"]
fn deliberately_failing() {
    Runner::new("replay::deliberately_failing", "lymph-testing", "replay").seeds(4).run(|world: World| async move {
        let client = world.client().await.expect("client");
        let trace = client.context().trace_id().to_owned();
        if trace.as_bytes()[0] < b'8' {
            return Err(format!("unlucky trace {trace}"));
        }
        Ok(())
    });
}

fn run_child(envs: &[(&str, &str)]) -> (bool, String) {
    let mut command = Command::new(std::env::current_exe().expect("test binary"));
    command.args(["--ignored", "--exact", "deliberately_failing", "--nocapture"]);
    command.env_remove("LYMPH_TEST_SEED").env_remove("LYMPH_TEST_NUM").env_remove("LYMPH_TEST_CHECK_DETERMINISM");
    for (key, value) in envs {
        command.env(key, value);
    }
    let output = command.output().expect("run the test binary");
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.success(), text)
}

fn unlucky_trace(output: &str) -> Option<String> {
    let start = output.find("unlucky trace ")? + "unlucky trace ".len();
    Some(output[start..start + 32].to_owned())
}

#[test]
fn replay_line_reproduces_the_failure() {
    let (passed, output) = run_child(&[("LYMPH_TEST_NUM", "32"), ("LYMPH_TEST_SEED", "")]);
    // An empty LYMPH_TEST_SEED is not a seed: the child must fail to parse it rather than pass.
    assert!(!passed, "{output}");

    let (passed, output) = run_child(&[("LYMPH_TEST_NUM", "32")]);
    assert!(!passed, "32 seeds should include an unlucky one:\n{output}");
    let line = output.lines().find(|l| l.trim_start().starts_with("LYMPH_TEST_SEED=")).expect(&output);
    assert!(
        line.contains("cargo test -p lymph-testing --test replay -- deliberately_failing --exact"),
        "replay line: {line}"
    );
    let seed = line.trim_start().trim_start_matches("LYMPH_TEST_SEED=").split_whitespace().next().unwrap().to_owned();
    let trace = unlucky_trace(&output).expect(&output);

    for _ in 0..2 {
        let (passed, replay) = run_child(&[("LYMPH_TEST_SEED", &seed)]);
        assert!(!passed, "seed {seed} passed on replay:\n{replay}");
        assert_eq!(unlucky_trace(&replay).as_deref(), Some(trace.as_str()), "the replay failed differently");
        assert!(replay.contains(&format!("with seed {seed}")), "{replay}");
    }
}

#[test]
fn the_same_seed_gives_the_same_timeline_and_another_seed_another() {
    let runner = Runner::new("replay::timeline", "lymph-testing", "replay");
    let body = |world: World| async move {
        let client = world.client().await.map_err(|e| e.to_string())?;
        let _ = client.proxy("nobody").call::<lymph_core::Value, _>("x", &lymph_core::Value::Map(Vec::new())).await;
        Ok::<(), String>(())
    };
    let options = lymph_testing::RenderOptions { heartbeats: true, ..Default::default() };
    let a = runner.run_seed(7, &body).timeline.render(&options);
    let b = runner.run_seed(7, &body).timeline.render(&options);
    let c = runner.run_seed(8, &body).timeline.render(&options);
    assert!(!a.is_empty());
    assert_eq!(a, b);
    assert_ne!(a, c);
}
