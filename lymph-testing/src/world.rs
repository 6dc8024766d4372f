//! The simulated world a `#[lymph::test]` body runs in.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use lymph_core::{Container, ContainerBuilder, Error};
use tokio::sync::Notify;

use crate::loss::LOSS_INTERVAL;
use crate::sim::{
    DEFAULT_BROKER_PORT, DEFAULT_REGISTRY_PORT, MessageFault, MessageFaults, REGISTRY_PING_INTERVAL,
    REGISTRY_SESSION_TIMEOUT, SimEvents, SimHost, SimRegistry, SimRpc, SimWebNetwork,
};
use crate::{Entry, Timeline, seed};

/// The host the registry runs on.
pub const REGISTRY_HOST: &str = "registry";
/// The host the broker runs on.
pub const BROKER_HOST: &str = "broker";
/// The host the test body runs on.
pub const TEST_HOST: &str = "test";
/// The port service containers bind in the simulator.
pub const SERVICE_PORT: u16 = 4000;

/// How long [`World::expire_session`] (and `Real`'s) cuts a host off from the registry: the session timeout,
/// and two of the client's pings for the registry to notice (the last one heard may have come up
/// to a ping interval before the cut).
pub const SESSION_EXPIRY: Duration = REGISTRY_SESSION_TIMEOUT.saturating_add(REGISTRY_PING_INTERVAL.saturating_mul(2));

/// Makes the container of a service host: its interfaces and settings. The world adds the
/// simulated backends and a seed. Called again each time the host restarts.
pub(crate) type Factory = Rc<dyn Fn() -> ContainerBuilder>;

/// What a bare host runs on its first boot (see [`World::bare_host`]).
pub(crate) type Setup = Rc<RefCell<Option<Box<dyn FnOnce(&SimHost)>>>>;

/// What a host's software shares with the world: started, stop requested, stopped, and the
/// power switch of its current incarnation.
#[derive(Default)]
pub(crate) struct HostControl {
    pub(crate) started: Cell<bool>,
    pub(crate) incarnation: Cell<u32>,
    pub(crate) stop: Notify,
    pub(crate) stopped: Cell<bool>,
    pub(crate) container: RefCell<Option<Container>>,
    /// The current incarnation's host, to power off before a crash or restart.
    pub(crate) power: RefCell<Option<SimHost>>,
}

impl HostControl {
    /// A new incarnation of the host starts: a fresh, powered-on [`SimHost`].
    pub(crate) fn power_on(&self, name: &str, timeline: &Timeline, faults: &MessageFaults) -> SimHost {
        let host = SimHost::new(name, timeline.clone()).with_faults(faults.clone());
        *self.power.borrow_mut() = Some(host.clone());
        self.started.set(true);
        host
    }
}

/// A change to the simulation that only the runner can make, between two steps. `Latency` sets a
/// link's latency range (a fixed latency is a range of one value), `None` meaning the world's
/// default range.
pub(crate) enum Command {
    Start {
        host: String,
        factory: Factory,
        control: Rc<HostControl>,
    },
    /// A host without a service: its software runs `setup` once, on its first boot.
    Bare {
        host: String,
        setup: Setup,
        control: Rc<HostControl>,
    },
    Crash(String),
    Restart(String),
    Latency {
        a: String,
        b: String,
        range: Option<(Duration, Duration)>,
    },
}

/// The shared state of one simulation run.
pub(crate) struct WorldState {
    pub(crate) seed: u64,
    pub(crate) timeline: Timeline,
    pub(crate) commands: RefCell<VecDeque<Command>>,
    pub(crate) hosts: RefCell<BTreeMap<String, Rc<HostControl>>>,
    test_host: SimHost,
    pub(crate) faults: MessageFaults,
    clients: Cell<u16>,
    /// The pairs of hosts a partition (or hold) cuts now.
    partitioned: RefCell<BTreeSet<(String, String)>>,
    /// Per pair of hosts, how many times its loss rate was set: the task of an older setting
    /// stops.
    losses: RefCell<BTreeMap<(String, String), u64>>,
    /// Checked by the runner after every simulation step.
    invariants: RefCell<Vec<Invariant>>,
}

/// A named property of the services' state, registered with [`World::invariant`].
struct Invariant {
    name: String,
    check: Box<dyn Fn() -> Result<(), String>>,
}

/// A handle on the simulated world, given to the body of a `#[lymph::test]`.
///
/// The world has a registry host (`registry`, a simulated ZooKeeper), a broker host (`broker`, a
/// simulated RabbitMQ) and the test's own host (`test`), on a simulated network where time is
/// virtual: sleeping 10 s takes no wall-clock time. Service hosts are added with
/// [`start`](World::start); clients made with [`client`](World::client) run in the test host.
/// Everything that crosses the network is recorded on the [`Timeline`].
///
/// All methods must be called from within the simulation (the test body).
#[derive(Clone)]
pub struct World {
    pub(crate) state: Rc<WorldState>,
}

impl fmt::Debug for World {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("World")
            .field("seed", &self.state.seed)
            .field("hosts", &self.state.hosts.borrow().keys().collect::<Vec<_>>())
            .finish()
    }
}

impl World {
    pub(crate) fn new(seed: u64, timeline: Timeline) -> Self {
        let faults = MessageFaults::default();
        Self {
            state: Rc::new(WorldState {
                seed,
                test_host: SimHost::new(TEST_HOST, timeline.clone()).with_faults(faults.clone()),
                faults,
                timeline,
                commands: RefCell::new(VecDeque::new()),
                hosts: RefCell::new(BTreeMap::new()),
                clients: Cell::new(0),
                partitioned: RefCell::new(BTreeSet::new()),
                losses: RefCell::new(BTreeMap::new()),
                invariants: RefCell::new(Vec::new()),
            }),
        }
    }

    /// Registers the registry or broker host, so that it can be crashed and restarted.
    pub(crate) fn infrastructure(&self, host: &str) -> Rc<HostControl> {
        let control = Rc::new(HostControl::default());
        self.state.hosts.borrow_mut().insert(host.to_owned(), control.clone());
        control
    }

    /// The seed of this run.
    pub fn seed(&self) -> u64 {
        self.state.seed
    }

    /// The timeline recorded so far.
    pub fn timeline(&self) -> &Timeline {
        &self.state.timeline
    }

    /// Notes something on the timeline, as the test host (e.g. a step of the scenario).
    pub fn note(&self, kind: &str, detail: impl Into<String>) {
        self.state.timeline.record(Entry::now(TEST_HOST, kind, "").detail(detail));
    }

    /// Adds a property of the services' state that must hold at every step of the simulation
    /// from now on, such as "no order is charged twice": `check` reads state the test shares with
    /// its services and says what is wrong. The runner calls every invariant after each step;
    /// the first one to fail ends the run at once, and the failure names the invariant, its
    /// message and the simulated time, which is also noted on the timeline (kind `invariant`).
    ///
    /// ```no_run
    /// # use std::sync::{Arc, Mutex};
    /// # fn body(world: lymph_testing::World) {
    /// let charges = Arc::new(Mutex::new(std::collections::BTreeMap::<u64, u32>::new()));
    /// let ledger = charges.clone();
    /// world.invariant("no order charged twice", move || {
    ///     match ledger.lock().unwrap().iter().find(|(_, n)| **n > 1) {
    ///         Some((order, n)) => Err(format!("order {order} was charged {n} times")),
    ///         None => Ok(()),
    ///     }
    /// });
    /// # }
    /// ```
    pub fn invariant<E: fmt::Display>(&self, name: &str, check: impl Fn() -> Result<(), E> + 'static) {
        let check = Box::new(move || check().map_err(|e| e.to_string()));
        self.state.invariants.borrow_mut().push(Invariant { name: name.to_owned(), check });
    }

    /// The first invariant that does not hold at simulated time `time`, noted on the timeline;
    /// `None` when all hold.
    pub(crate) fn broken_invariant(&self, time: Duration) -> Option<String> {
        let invariants = self.state.invariants.borrow();
        let (name, message) =
            invariants.iter().find_map(|i| (i.check)().err().map(|message| (i.name.clone(), message)))?;
        self.state.timeline.record(
            Entry { time, ..Entry::now(TEST_HOST, "invariant", name.clone()) }.detail(format!("broken: {message}")),
        );
        Some(format!("invariant {name:?} broken at {:.3}s: {message}", time.as_secs_f64()))
    }

    /// Starts a service host named `host` running the container `factory` makes, and waits until
    /// the container has started (bound, subscribed and registered).
    ///
    /// # Errors
    ///
    /// When a host of that name exists already, or the container does not start within 30 s.
    pub async fn start(&self, host: &str, factory: impl Fn() -> ContainerBuilder + 'static) -> Result<(), Error> {
        if self.state.hosts.borrow().contains_key(host) || [REGISTRY_HOST, BROKER_HOST, TEST_HOST].contains(&host) {
            return Err(Error::Config(format!("a host named {host:?} exists already")));
        }
        let control = Rc::new(HostControl::default());
        self.state.hosts.borrow_mut().insert(host.to_owned(), control.clone());
        self.state.commands.borrow_mut().push_back(Command::Start {
            host: host.to_owned(),
            factory: Rc::new(factory),
            control: control.clone(),
        });
        self.wait_started(host, &control).await
    }

    /// Starts a host named `host` that runs no service, calls `make` on it, and returns what
    /// `make` returned: backend clients that live on that host but are used from the test body,
    /// for checks of one seam. Their connections are the host's, so the host's faults apply to
    /// them ([`crash`](World::crash), [`partition`](World::partition),
    /// [`expire_session`](World::expire_session)); a crash powers them off for good (a restart
    /// boots the host with nothing on it).
    ///
    /// ```no_run
    /// # async fn body(world: lymph_testing::World) -> Result<(), lymph_core::Error> {
    /// use lymph_testing::sim::SimRegistry;
    /// let registry = world.bare_host("client-1", |host| SimRegistry::connect("registry:2181", host)).await??;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// When a host of that name exists already.
    pub async fn bare_host<T: 'static>(
        &self,
        host: &str,
        make: impl FnOnce(&SimHost) -> T + 'static,
    ) -> Result<T, Error> {
        if self.state.hosts.borrow().contains_key(host) || [REGISTRY_HOST, BROKER_HOST, TEST_HOST].contains(&host) {
            return Err(Error::Config(format!("a host named {host:?} exists already")));
        }
        let made: Rc<RefCell<Option<T>>> = Rc::default();
        let slot = made.clone();
        let setup: Setup = Rc::new(RefCell::new(Some(Box::new(move |sim_host: &SimHost| {
            *slot.borrow_mut() = Some(make(sim_host));
        }))));
        let control = Rc::new(HostControl::default());
        self.state.hosts.borrow_mut().insert(host.to_owned(), control.clone());
        self.state.commands.borrow_mut().push_back(Command::Bare {
            host: host.to_owned(),
            setup,
            control: control.clone(),
        });
        self.wait_started(host, &control).await?;
        let made = made.borrow_mut().take();
        made.ok_or_else(|| Error::Config(format!("host {host:?} started without running its setup")))
    }

    async fn wait_started(&self, host: &str, control: &HostControl) -> Result<(), Error> {
        let waited = tokio::time::timeout(Duration::from_secs(30), async {
            while !control.started.get() {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
        .await;
        waited.map_err(|_| Error::Config(format!("host {host:?} did not start within 30 s")))
    }

    /// A client container in the test host: it registers nothing, and calls services and emits
    /// events on the simulated network.
    ///
    /// # Errors
    ///
    /// When the container cannot start.
    pub async fn client(&self) -> Result<Container, Error> {
        let n = self.state.clients.get();
        self.state.clients.set(n + 1);
        let host = &self.state.test_host;
        Container::builder()
            .rpc(SimRpc::new(host, 5000 + n))
            .events(SimEvents::connect(&broker_addr(), host)?)
            .registry(SimRegistry::connect(&registry_addr(), host)?)
            .web_network(Arc::new(SimWebNetwork::new(host)))
            .seed(seed::derive(self.state.seed, &format!("{TEST_HOST}/client-{n}")))
            .start()
            .await
    }

    /// The running container of `host`, if it has one.
    pub fn container(&self, host: &str) -> Option<Container> {
        self.state.hosts.borrow().get(host).and_then(|c| c.container.borrow().clone())
    }

    /// Crashes `host`: its connections close, its software stops, nothing is deregistered.
    ///
    /// The crash takes two simulator steps (one tick): first the host's connections are closed by
    /// the tasks that own them, in an order the seed fixes, then its software is dropped (see
    /// [`SimHost`](crate::sim::SimHost)).
    pub fn crash(&self, host: &str) {
        self.note("fault", format!("crash {host}"));
        if let Some(control) = self.state.hosts.borrow().get(host) {
            control.started.set(false);
            control.container.borrow_mut().take();
        }
        self.state.commands.borrow_mut().push_back(Command::Crash(host.to_owned()));
    }

    /// Restarts `host` from its factory (after a crash, or as a crash and restart in one), and
    /// waits until its new container has started.
    ///
    /// # Errors
    ///
    /// When there is no such host or it does not start within 30 s.
    pub async fn restart(&self, host: &str) -> Result<(), Error> {
        let control = self.state.hosts.borrow().get(host).cloned();
        let control = control.ok_or_else(|| Error::Config(format!("no host named {host:?}")))?;
        self.note("fault", format!("restart {host}"));
        control.started.set(false);
        control.stopped.set(false);
        control.container.borrow_mut().take();
        self.state.commands.borrow_mut().push_back(Command::Restart(host.to_owned()));
        self.wait_started(host, &control).await
    }

    /// Stops the container of `host` gracefully (stop consuming, deregister, serve a moment for
    /// callers that have not noticed, drain; see [`Container::stop`]) and waits until it has
    /// stopped.
    ///
    /// # Errors
    ///
    /// When there is no such host.
    pub async fn stop(&self, host: &str) -> Result<(), Error> {
        let control = self.state.hosts.borrow().get(host).cloned();
        let control = control.ok_or_else(|| Error::Config(format!("no host named {host:?}")))?;
        self.note("fault", format!("stop {host}"));
        control.stop.notify_one();
        while !control.stopped.get() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        Ok(())
    }

    /// Cuts the network between `a` and `b`, both ways, as a real partition cuts a TCP network:
    /// nothing gets through while it lasts, and nothing is lost. Bytes in flight and sent
    /// meanwhile are held and arrive, in order, when the partition heals, as TCP retransmits
    /// them (Linux gives up after about 15 minutes, `tcp_retries2`; the simulator holds them as
    /// long as the partition lasts), and connecting hangs until then. Connections stay open unless a heartbeat gives up on them, at the real timeouts:
    /// ZooKeeper's client after two thirds of the session timeout, RabbitMQ's after
    /// [`AMQP_HEARTBEAT`](crate::sim::AMQP_HEARTBEAT); ZeroMQ has no heartbeat, so a request sent
    /// into a partition is handled when it heals, after its caller may have given up.
    pub fn partition(&self, a: &str, b: &str) {
        self.note("fault", format!("partition {a} {b}"));
        self.state.partitioned.borrow_mut().insert(pair(a, b));
        turmoil::hold(a, b);
    }

    /// Heals a partition between `a` and `b`, both ways: what it held is delivered.
    pub fn repair(&self, a: &str, b: &str) {
        self.note("fault", format!("repair {a} {b}"));
        self.state.partitioned.borrow_mut().remove(&pair(a, b));
        turmoil::release(a, b);
    }

    /// Drops every message from `from` to `to` from now on (`to` still reaches `from`), until
    /// [`repair_oneway`](World::repair_oneway). Unlike [`partition`](World::partition), what is
    /// dropped is gone: the simulated network does not retransmit, so a connection that lost a
    /// segment this way stalls, and the backends give up on it at their heartbeat timeouts. Real
    /// TCP has no such fault; use it to test what a silent peer does to a service.
    pub fn partition_oneway(&self, from: &str, to: &str) {
        self.note("fault", format!("partition {from} -> {to}"));
        self.state.faults.cut(from, to);
        turmoil::partition_oneway(from, to);
    }

    /// Heals a one-way partition from `from` to `to`.
    pub fn repair_oneway(&self, from: &str, to: &str) {
        self.note("fault", format!("repair {from} -> {to}"));
        turmoil::repair_oneway(from, to);
    }

    /// Holds every message between `a` and `b` (both ways) until [`release`](World::release):
    /// nothing is lost, everything is late. A [`partition`](World::partition) by another name,
    /// noted as `hold` on the timeline.
    pub fn hold(&self, a: &str, b: &str) {
        self.note("fault", format!("hold {a} {b}"));
        self.state.partitioned.borrow_mut().insert(pair(a, b));
        turmoil::hold(a, b);
    }

    /// Delivers what [`hold`](World::hold) kept back, and lets messages flow again.
    pub fn release(&self, a: &str, b: &str) {
        self.note("fault", format!("release {a} {b}"));
        self.state.partitioned.borrow_mut().remove(&pair(a, b));
        turmoil::release(a, b);
    }

    /// Sets the latency of the link between `a` and `b` (both ways), from the next step on.
    pub fn set_latency(&self, a: &str, b: &str, latency: Duration) {
        self.note("fault", format!("latency {a} {b} {latency:?}"));
        let range = Some((latency, latency));
        self.state.commands.borrow_mut().push_back(Command::Latency { a: a.to_owned(), b: b.to_owned(), range });
    }

    /// Makes the latency of the link between `a` and `b` (both ways) vary between `min` and `max`,
    /// from the next step on: each message's latency is drawn from the run's seeded generator,
    /// mostly close to `min` (turmoil draws it from an exponential distribution), never above
    /// `max` (a `max` below `min` is taken as `min`). Messages of one connection still arrive in
    /// the order they were sent; a message sent after a slow one waits for it.
    pub fn set_jitter(&self, a: &str, b: &str, min: Duration, max: Duration) {
        let max = max.max(min);
        self.note("fault", format!("jitter {a} {b} {min:?}..{max:?}"));
        let range = Some((min, max));
        self.state.commands.borrow_mut().push_back(Command::Latency { a: a.to_owned(), b: b.to_owned(), range });
    }

    /// Gives the link between `a` and `b` the world's default latency range back (see
    /// [`Runner::latency`](crate::Runner::latency)), from the next step on: undoes
    /// [`set_latency`](World::set_latency) and [`set_jitter`](World::set_jitter).
    pub fn reset_latency(&self, a: &str, b: &str) {
        self.note("fault", format!("latency {a} {b} reset"));
        self.state.commands.borrow_mut().push_back(Command::Latency { a: a.to_owned(), b: b.to_owned(), range: None });
    }

    /// Makes the link between `a` and `b` lose segments at `rate` (0 to 1), from now on, as a
    /// lossy network does to TCP: nothing is lost, the connection stalls. Every
    /// [`LOSS_INTERVAL`] of the link's time (the first at once) a segment is lost with
    /// probability `rate`; then the
    /// link holds everything for the retransmission timeout, 200 ms (Linux's least), doubled for
    /// each retransmission lost as well, up to 120 s (Linux's most), and delivers what it held
    /// in order. A rate of 0 ends it. The draws come from the run's seed.
    pub fn set_loss(&self, a: &str, b: &str, rate: f64) {
        self.note("fault", format!("loss {a} {b} {rate}"));
        let key = pair(a, b);
        let generation = {
            let mut losses = self.state.losses.borrow_mut();
            let generation = losses.entry(key.clone()).or_default();
            *generation += 1;
            *generation
        };
        if rate > 0.0 {
            let world = self.clone();
            tokio::task::spawn_local(async move { world.lose(key, rate.min(1.0), generation).await });
        }
    }

    /// The stalls of a lossy link (see [`set_loss`](World::set_loss)), until its loss rate is
    /// set again.
    async fn lose(self, (a, b): (String, String), rate: f64, generation: u64) {
        use rand::SeedableRng;

        let key = (a.clone(), b.clone());
        let current = || self.state.losses.borrow().get(&key).copied() == Some(generation);
        let partitioned = || self.state.partitioned.borrow().contains(&key);
        let mut rng =
            rand::rngs::StdRng::seed_from_u64(seed::derive(self.state.seed, &format!("loss {a} {b} {generation}")));
        while current() {
            let Some(rto) = crate::loss::stall(&mut rng, rate) else {
                tokio::time::sleep(LOSS_INTERVAL).await;
                continue;
            };
            if !partitioned() {
                turmoil::hold(a.as_str(), b.as_str());
            }
            let until = tokio::time::Instant::now() + rto;
            while current() && tokio::time::Instant::now() < until {
                tokio::time::sleep(LOSS_INTERVAL.min(until - tokio::time::Instant::now())).await;
            }
            if !partitioned() {
                turmoil::release(a.as_str(), b.as_str());
            }
        }
    }

    /// Applies `fault` to the next RPC messages it matches, whichever host sends them, or to the
    /// next events it matches as the broker routes them (kind `EVENT`, see [`MessageFault`]):
    /// drop, duplicate or delay them.
    pub fn inject(&self, fault: MessageFault) {
        self.note("fault", format!("{fault:?}"));
        self.state.faults.add(fault);
    }

    /// Expires the registry session of `host`: cuts it off from the registry until the registry
    /// has expired the session (and with it deleted the host's registrations), then heals the
    /// link; the host reconnects, finds its session expired, and registers again on a new one.
    /// A shorter partition from the registry leaves the session alive: the host resumes it.
    pub async fn expire_session(&self, host: &str) {
        self.cut_off_session(host);
        tokio::time::sleep(SESSION_EXPIRY).await;
        self.repair(host, REGISTRY_HOST);
    }

    /// The first half of [`expire_session`](World::expire_session): notes it and cuts `host` off
    /// from the registry, to be repaired [`SESSION_EXPIRY`] later.
    pub(crate) fn cut_off_session(&self, host: &str) {
        self.note("fault", format!("expire session {host}"));
        self.partition(host, REGISTRY_HOST);
    }
}

/// The unordered pair of hosts `a` and `b`.
fn pair(a: &str, b: &str) -> (String, String) {
    if a <= b { (a.to_owned(), b.to_owned()) } else { (b.to_owned(), a.to_owned()) }
}

pub(crate) fn registry_addr() -> String {
    format!("{REGISTRY_HOST}:{DEFAULT_REGISTRY_PORT}")
}

pub(crate) fn broker_addr() -> String {
    format!("{BROKER_HOST}:{DEFAULT_BROKER_PORT}")
}

/// The software of a service host: build the container with simulated backends, serve until
/// asked to stop.
pub(crate) async fn run_service(
    host: String,
    factory: Factory,
    control: Rc<HostControl>,
    world_seed: u64,
    timeline: Timeline,
    faults: MessageFaults,
) -> Result<(), Box<dyn std::error::Error>> {
    let incarnation = control.incarnation.get();
    control.incarnation.set(incarnation + 1);
    let sim_host = SimHost::new(&host, timeline).with_faults(faults);
    *control.power.borrow_mut() = Some(sim_host.clone());
    // Like a supervisor (lymph's node), start again until the container starts: it cannot while
    // the broker or the registry is out of reach.
    let mut attempt = 0u32;
    let container = loop {
        let seed_key =
            if attempt == 0 { format!("{host}/{incarnation}") } else { format!("{host}/{incarnation}/{attempt}") };
        let started = factory()
            .rpc(SimRpc::new(&sim_host, SERVICE_PORT))
            .events(SimEvents::connect(&broker_addr(), &sim_host)?)
            .registry(SimRegistry::connect(&registry_addr(), &sim_host)?)
            .web_network(Arc::new(SimWebNetwork::new(&sim_host)))
            .seed(seed::derive(world_seed, &seed_key))
            .start()
            .await;
        match started {
            Ok(container) => break container,
            Err(error) => {
                sim_host.timeline().record(Entry::now(&host, "fault", "").detail(format!("start failed: {error}")));
                attempt += 1;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    };
    *control.container.borrow_mut() = Some(container.clone());
    control.started.set(true);
    control.stop.notified().await;
    container.stop().await;
    control.container.borrow_mut().take();
    control.stopped.set(true);
    std::future::pending::<()>().await;
    Ok(())
}
