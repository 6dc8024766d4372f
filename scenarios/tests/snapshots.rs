//! The talk's timeline for one seed, snapshot-tested: any change in what crosses the network, or
//! when, shows up as a readable diff (`cargo insta review`, or `INSTA_UPDATE=always`).

use lymph::testing::{RenderOptions, Runner, World};

#[test]
fn the_talk_timeline_for_seed_42() {
    let runner = Runner::new("snapshots::the_talk_timeline_for_seed_42", "scenarios", "snapshots");
    let report = runner.run_seed(42, &|world: World| async move {
        let summary = scenarios::talk::run(&world, 3).await?;
        if summary.passed() { Ok(()) } else { Err(Box::<dyn std::error::Error>::from(summary.to_string())) }
    });
    report.outcome.expect("the talk passes with seed 42");
    insta::assert_snapshot!(report.timeline.render(&RenderOptions::default()));
}
