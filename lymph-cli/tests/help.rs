//! The help text of every command, snapshot-tested: a change in options or wording shows up as
//! a diff to review (`INSTA_UPDATE=always cargo test -p lymph-cli --test help`, or
//! `cargo insta review`).

use lymph_cli::Application;

async fn run(args: &[&str]) -> (u8, String) {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = Application::new("lymph").execute(["lymph"].iter().chain(args), &mut out, &mut err).await;
    (code, String::from_utf8(out).unwrap() + &String::from_utf8(err).unwrap())
}

#[tokio::test]
async fn every_command_has_help() {
    let (code, list) = run(&["list"]).await;
    assert_eq!(code, 0);
    insta::assert_snapshot!("list", list);
    let commands: Vec<String> = list.lines().filter_map(|l| l.split_whitespace().next()).map(str::to_owned).collect();
    assert!(commands.len() >= 10, "{list}");
    for command in commands {
        let (code, help) = run(&["help", &command]).await;
        assert_eq!(code, 0, "{help}");
        insta::assert_snapshot!(format!("help_{command}"), help);
    }
    let (code, top) = run(&["--help"]).await;
    assert_eq!(code, 0);
    insta::assert_snapshot!("help", top);
}

#[tokio::test]
async fn usage_errors_exit_with_2() {
    let (code, text) = run(&["request"]).await;
    assert_eq!(code, 2);
    assert!(text.contains("<SUBJECT>"), "{text}");
    let (code, _) = run(&["nosuchcommand"]).await;
    assert_eq!(code, 2);
}
