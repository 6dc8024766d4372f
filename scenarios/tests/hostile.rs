//! Hostile input against a `scenarios instance` process on ZeroMQ, RabbitMQ and ZooKeeper: the
//! process never exits, every probe is answered, its memory comes back to within 20 % of what
//! it was before the attack, made-up names add no metrics series, and nothing panics.
#![cfg(feature = "real-infra")]

use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lymph::testing::Real;
use scenarios::hostile::{self, Budget, Target};

/// A `scenarios instance` process whose output lines are kept; killed when dropped.
struct Instance {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Instance {
    fn start(config: &std::path::Path) -> Instance {
        let mut child = Command::new(env!("CARGO_BIN_EXE_scenarios"))
            .args(["instance", "--loglevel", "INFO", "--no-color", "-c"])
            .arg(config)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stdout: Box<dyn std::io::Read + Send> = Box::new(child.stdout.take().unwrap());
        let stderr: Box<dyn std::io::Read + Send> = Box::new(child.stderr.take().unwrap());
        for stream in [stdout, stderr] {
            let lines = lines.clone();
            std::thread::spawn(move || {
                for line in std::io::BufReader::new(stream).lines().map_while(Result::ok) {
                    lines.lock().unwrap().push(line);
                }
            });
        }
        Instance { child, lines }
    }

    /// The RPC endpoint from the line that says the instance started, within 20 s.
    fn endpoint(&mut self) -> String {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let found = self.lines.lock().unwrap().iter().find(|line| line.contains("scenarios started")).cloned();
            if let Some(line) = found {
                let endpoint = line.split("endpoint=").nth(1).and_then(|rest| rest.split_whitespace().next());
                return endpoint.unwrap_or_default().trim_matches('"').to_owned();
            }
            assert!(self.child.try_wait().unwrap().is_none(), "the instance exited: {}", self.output());
            assert!(std::time::Instant::now() < deadline, "the instance did not start: {}", self.output());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn output(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_a_peer_sends_takes_an_instance_down_or_its_memory_up() {
    let started = std::time::Instant::now();
    let cluster = Real::new().unwrap();
    let (hosts, chroot) = cluster.zookeeper().split_once('/').unwrap();
    let dir = std::env::temp_dir().join(format!("lymph-hostile-{}-{:08x}", std::process::id(), rand::random::<u32>()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("echo.yml");
    std::fs::write(
        &config,
        format!(
            "container:\n  ip: 127.0.0.1\n  registry:\n    \
             class: lymph.discovery.zookeeper:ZookeeperServiceRegistry\n    zkclient:\n      \
             class: kazoo.client:KazooClient\n      hosts: {hosts}/{chroot}\n  events:\n    \
             class: lymph.events.kombu:KombuEventSystem\n    hostname: {}\ninterfaces:\n  echo:\n    \
             class: echo:Echo\n  listener:\n    class: listener:Listener\n",
            cluster.amqp()
        ),
    )
    .unwrap();
    let mut instance = Instance::start(&config);
    let mut target = Target::new(instance.endpoint());
    target.pid = Some(instance.child.id());
    target.amqp = Some(cluster.amqp().to_owned());

    // Two warm-up rounds: the runtime's threads, the allocator's arenas, the connections to the
    // servers and the listener's record of events (bounded, see `listener::MAX_RECORDED_BYTES`)
    // are all there before the memory is first read.
    let warm_up = Budget { rounds: 2, time: Duration::from_secs(20), settle: Duration::from_millis(500), seed: 1 };
    let report = hostile::run(&target, &warm_up).await.unwrap();
    assert!(report.problems(Duration::from_secs(2)).is_empty(), "warm-up:\n{report}");

    let budget = Budget { rounds: 2, time: Duration::from_secs(25), settle: Duration::from_secs(2), seed: 2 };
    let report = hostile::run(&target, &budget).await.unwrap();
    eprintln!("{report}");
    assert!(instance.child.try_wait().unwrap().is_none(), "the instance exited:\n{report}\n{}", instance.output());
    assert!(!report.out_of_time && report.rounds == 2, "the budget was too small:\n{report}");
    for family in ["zmtp", "rpc", "readers", "amqp"] {
        assert!(
            report.families.iter().any(|f| f.name == family && f.inputs > 0),
            "nothing sent by {family}:\n{report}"
        );
    }
    assert!(report.probes.len() >= 9 && report.probes_answered(), "{report}");
    assert!(report.problems(Duration::from_secs(2)).is_empty(), "{report}");
    assert!(report.notes.is_empty(), "the attack itself failed:\n{report}");
    assert_eq!(report.series_after, report.series_after_first_round, "made-up names added series:\n{report}");
    let growth = report.rss_growth().expect("the instance's RSS was read");
    assert!(growth <= 1.2, "RSS grew by {:.1} %:\n{report}", (growth - 1.0) * 100.0);
    let output = instance.output();
    assert!(!output.contains("panicked"), "{output}");
    drop(instance);
    cluster.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
    eprintln!("the test took {:.1} s", started.elapsed().as_secs_f64());
}
