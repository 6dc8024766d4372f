//! `scenarios instance`: configuration mistakes and unreachable servers give one clear line and a
//! distinct exit status (3 configuration, 4 unreachable, 2 usage), before anything starts. Needs
//! no infrastructure.

use std::path::PathBuf;
use std::process::{Command, Output};

fn config(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lymph-cli-{}-{:08x}", std::process::id(), rand::random::<u32>()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn instance(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_scenarios")).arg("instance").args(args).output().unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

const UNREACHABLE: &str = "container:
  registry:
    class: lymph.discovery.zookeeper:ZookeeperServiceRegistry
    zkclient:
      class: kazoo.client:KazooClient
      hosts: 127.0.0.1:1
  events:
    class: lymph.events.null:NullEventSystem
interfaces:
  echo:
    class: CLASS
";

#[test]
fn an_unknown_class_is_named_with_its_key_and_the_known_classes() {
    let path = config("echo.yml", &UNREACHABLE.replace("CLASS", "echo:Nope"));
    let output = instance(&["-c", path.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(3));
    let message = stderr(&output);
    assert!(message.contains("interfaces.echo.class") && message.contains("echo:Nope"), "{message}");
    assert!(message.contains("echo:Echo, listener:Listener"), "{message}");
}

#[test]
fn an_unreachable_zookeeper_is_one_line_naming_it() {
    let path = config("echo.yml", &UNREACHABLE.replace("CLASS", "echo:Echo"));
    let output = instance(&["-c", path.to_str().unwrap(), "--loglevel", "ERROR"]);
    assert_eq!(output.status.code(), Some(4));
    let message = stderr(&output);
    assert!(message.contains("container.registry: ZooKeeper at 127.0.0.1:1"), "{message}");
    assert_eq!(message.trim().lines().count(), 1, "{message}");
}

#[test]
fn a_missing_file_and_a_missing_section_are_errors_naming_them() {
    let output = instance(&["-c", "/nonexistent/echo.yml"]);
    assert_eq!(output.status.code(), Some(3));
    assert!(stderr(&output).contains("/nonexistent/echo.yml"), "{}", stderr(&output));

    let path = config("echo.yml", "container:\n  ip: 127.0.0.1\ninterfaces: {}\n");
    let output = instance(&["-c", path.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(3));
    assert!(stderr(&output).contains("container.registry"), "{}", stderr(&output));
}

#[test]
fn bad_arguments_are_usage_errors() {
    let output = instance(&["--port", "many"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("--port"), "{}", stderr(&output));
}
