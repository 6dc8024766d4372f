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
    for var in
        ["LYMPH_TEST_SEED", "LYMPH_TEST_NUM", "LYMPH_TEST_CHECK_DETERMINISM", "LYMPH_TEST_SHARD", "LYMPH_TEST_TIMELINE"]
    {
        command.env_remove(var);
    }
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

    // Next to the replay line, the file the failed seed's timeline was written to.
    let marker = format!("the timeline of seed {seed} is in ");
    let path = output.lines().find_map(|l| l.split_once(&marker).map(|(_, p)| p.trim().to_owned())).expect(&output);
    assert!(path.contains("lymph-timelines") && path.ends_with(&format!("-{seed}.txt")), "{path}");
    let timeline = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    assert!(
        timeline.lines().any(|l| l.contains("broker") && l.contains("start")),
        "the timeline of seed {seed}:\n{timeline}"
    );
}

/// Passes on every seed. Run only as a child process by the tests below.
#[test]
#[ignore = "run by shards_run_disjoint_parts_of_one_sweep"]
fn always_passing() {
    Runner::new("replay::always_passing", "lymph-testing", "replay")
        .seeds(6)
        .run(|world: World| async move { world.client().await.map(drop) });
}

/// The seeds `always_passing` ran, from the lines `LYMPH_TEST_TIMELINE=1` prints for each run.
fn seeds_run(shard: Option<&str>) -> Vec<String> {
    let mut command = Command::new(std::env::current_exe().expect("test binary"));
    command.args(["--ignored", "--exact", "always_passing"]);
    for var in ["LYMPH_TEST_SEED", "LYMPH_TEST_NUM", "LYMPH_TEST_CHECK_DETERMINISM", "LYMPH_TEST_SHARD"] {
        command.env_remove(var);
    }
    command.env("LYMPH_TEST_TIMELINE", "1").env("LYMPH_TEST_BASE_SEED", "7");
    if let Some(shard) = shard {
        command.env("LYMPH_TEST_SHARD", shard);
    }
    let output = command.output().expect("run the test binary");
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert_eq!(output.status.success(), shard != Some("4/3"), "{text}");
    let marker = "lymph: the timeline of replay::always_passing with seed ";
    text.lines().filter_map(|l| l.strip_prefix(marker)).map(|l| l.split(' ').next().unwrap().to_owned()).collect()
}

#[test]
fn shards_run_disjoint_parts_of_one_sweep() {
    let whole = seeds_run(None);
    assert_eq!(whole.len(), 6, "{whole:?}");
    let shards: Vec<Vec<String>> = ["1/3", "2/3", "3/3"].into_iter().map(|k| seeds_run(Some(k))).collect();
    for shard in &shards {
        assert_eq!(shard.len(), 2, "{shards:?}");
    }
    let mut all: Vec<String> = shards.concat();
    all.sort();
    let mut expected = whole.clone();
    expected.sort();
    assert_eq!(all, expected, "the shards together run the sweep, each seed once");
    assert_eq!(shards[0][0], whole[0], "shard 1/3 starts where the sweep does");
    assert!(seeds_run(Some("4/3")).is_empty());
}
