//! Food ordering, in the spirit of the company that wrote lymph: `gateway`, `order` (×2),
//! `restaurant` (×2), `delivery` and `notification`, talking over RPC and events, with retries
//! and a delayed event.
//!
//! An order goes: `gateway.place_order` → `order.create` (stores it, charges the customer,
//! emits `order.created` and a delayed `order.deadline`) → `restaurant` accepts (`order.accepted`)
//! → `delivery` delivers (`order.delivered`) → `order` marks it delivered and `notification`
//! tells the customer. An order not delivered by its deadline is cancelled and refunded.
//!
//! Every service keeps its state in a [`Store`], the stand-in for its database: it outlives
//! crashes of the service's hosts, as a database would. Handlers are idempotent, so the
//! at-least-once delivery of events (redelivery after a crash) does no harm.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lymph::testing::Cluster;
use lymph::testing::schedule::Schedule;
use lymph::{Container, Context, Error, Event, Result};
use serde_json::json;

/// How long the restaurant and the courier need, and the deadline of an order.
pub const COOKING: Duration = Duration::from_millis(800);
/// See [`COOKING`].
pub const DELIVERING: Duration = Duration::from_millis(1500);
/// An order not delivered this long after it was placed is cancelled.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// Where an order is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Status {
    /// Placed and charged.
    Placed,
    /// The restaurant accepted it.
    Accepted,
    /// Delivered (final).
    Delivered,
    /// Cancelled and refunded (final).
    Cancelled,
}

/// The databases of the food services, shared by their instances and surviving their crashes.
#[derive(Debug, Clone, Default)]
pub struct Store {
    inner: Arc<Mutex<StoreState>>,
}

#[derive(Debug, Default)]
struct StoreState {
    orders: BTreeMap<String, Status>,
    charges: BTreeMap<String, u32>,
    refunds: BTreeMap<String, u32>,
    cooked: BTreeMap<String, u32>,
    notified: BTreeMap<String, u32>,
}

impl Store {
    fn with<T>(&self, f: impl FnOnce(&mut StoreState) -> T) -> T {
        f(&mut self.inner.lock().expect("store lock"))
    }

    /// Every order and its status.
    pub fn orders(&self) -> BTreeMap<String, Status> {
        self.with(|s| s.orders.clone())
    }

    /// Checks the scenario's invariants: every order is delivered or cancelled, none is charged
    /// (or refunded) twice, every delivered order was notified once and every cancelled one refunded.
    ///
    /// # Errors
    ///
    /// The first invariant that does not hold, naming the order.
    pub fn check(&self) -> std::result::Result<(), String> {
        self.with(|s| {
            for (order, status) in &s.orders {
                let count = |m: &BTreeMap<String, u32>| m.get(order).copied().unwrap_or(0);
                if count(&s.charges) != 1 {
                    return Err(format!("order {order} was charged {} times", count(&s.charges)));
                }
                match status {
                    Status::Placed | Status::Accepted => {
                        return Err(format!("order {order} is stuck: {status:?}, neither delivered nor cancelled"));
                    }
                    Status::Delivered if count(&s.notified) != 1 => {
                        return Err(format!("delivered order {order} was notified {} times", count(&s.notified)));
                    }
                    Status::Cancelled if count(&s.refunds) != 1 => {
                        return Err(format!("cancelled order {order} was refunded {} times", count(&s.refunds)));
                    }
                    _ => {}
                }
            }
            Ok(())
        })
    }
}

/// The RPC entry point.
#[derive(Debug, Clone, Default)]
pub struct Gateway;

#[lymph::interface(name = "gateway")]
impl Gateway {
    /// Places an order; returns its id.
    #[rpc]
    async fn place_order(&self, ctx: &Context, customer: String, dish: String) -> Result<String> {
        ctx.proxy("order").call("create", &json!({ "customer": customer, "dish": dish })).await
    }
}

/// Orders: creation, charging, status, deadline.
#[derive(Debug, Clone)]
pub struct Orders {
    store: Store,
}

#[lymph::interface(name = "order")]
impl Orders {
    /// Creates and charges an order, and starts its deadline.
    ///
    /// The deadline goes to the broker before the order is stored: whatever happens next (the
    /// `order.created` emit fails, this instance crashes), a stored order is cancelled and
    /// refunded at its deadline if nothing else moves it. Storing first could leave an order
    /// placed for ever, which the fault sweep found (`a_crash_between_storing_and_emitting...`).
    #[rpc]
    async fn create(&self, ctx: &Context, customer: String, dish: String) -> Result<String> {
        let order = ctx.with_rng(|rng| format!("{:08x}", rand::Rng::random::<u32>(rng)));
        ctx.emit_delayed("order.deadline", json!({ "order": order }), DEADLINE).await?;
        self.store.with(|s| {
            s.orders.insert(order.clone(), Status::Placed);
            *s.charges.entry(order.clone()).or_default() += 1;
        });
        ctx.emit("order.created", json!({ "order": order, "customer": customer, "dish": dish })).await?;
        Ok(order)
    }

    /// The restaurant accepted the order.
    #[event("order.accepted", retry = 3)]
    async fn on_accepted(&self, event: Event) -> Result<()> {
        let order = order_of(&event)?;
        self.store.with(|s| {
            if let Some(status @ Status::Placed) = s.orders.get_mut(&order) {
                *status = Status::Accepted;
            }
        });
        Ok(())
    }

    /// The courier delivered the order.
    #[event("order.delivered", retry = 3)]
    async fn on_delivered(&self, event: Event) -> Result<()> {
        let order = order_of(&event)?;
        self.store.with(|s| {
            if let Some(status @ (Status::Placed | Status::Accepted)) = s.orders.get_mut(&order) {
                *status = Status::Delivered;
            }
        });
        Ok(())
    }

    /// The deadline passed: an order not delivered yet is cancelled and refunded.
    #[event("order.deadline", retry = 3)]
    async fn on_deadline(&self, ctx: &Context, event: Event) -> Result<()> {
        let order = order_of(&event)?;
        let cancelled = self.store.with(|s| match s.orders.get_mut(&order) {
            Some(status @ (Status::Placed | Status::Accepted)) => {
                *status = Status::Cancelled;
                *s.refunds.entry(order.clone()).or_default() += 1;
                true
            }
            _ => false,
        });
        if cancelled {
            ctx.emit("order.cancelled", json!({ "order": order })).await?;
        }
        Ok(())
    }
}

/// Restaurants cook what is ordered.
#[derive(Debug, Clone)]
pub struct Restaurant {
    store: Store,
}

#[lymph::interface(name = "restaurant")]
impl Restaurant {
    /// Cooks a new order (once per order, however often the event comes) and hands it over.
    #[event("order.created", retry = 3)]
    async fn on_created(&self, ctx: &Context, event: Event) -> Result<()> {
        let order = order_of(&event)?;
        tokio::time::sleep(COOKING).await;
        self.store.with(|s| *s.cooked.entry(order.clone()).or_default() += 1);
        ctx.emit("order.accepted", json!({ "order": order })).await
    }
}

/// The courier.
#[derive(Debug, Clone, Default)]
pub struct Delivery;

#[lymph::interface(name = "delivery")]
impl Delivery {
    /// Delivers an accepted order.
    #[event("order.accepted", retry = 3)]
    async fn on_accepted(&self, ctx: &Context, event: Event) -> Result<()> {
        let order = order_of(&event)?;
        tokio::time::sleep(DELIVERING).await;
        ctx.emit("order.delivered", json!({ "order": order })).await
    }
}

/// Tells customers their food has arrived.
#[derive(Debug, Clone)]
pub struct Notification {
    store: Store,
}

#[lymph::interface(name = "notification")]
impl Notification {
    /// Notifies the customer of a delivered order, once.
    #[event("order.delivered", retry = 3)]
    async fn on_delivered(&self, event: Event) -> Result<()> {
        let order = order_of(&event)?;
        let cancelled = self.store.with(|s| s.orders.get(&order) == Some(&Status::Cancelled));
        self.store.with(|s| {
            let sent = s.notified.entry(order).or_default();
            if *sent == 0 && !cancelled {
                *sent += 1;
            }
        });
        Ok(())
    }
}

fn order_of(event: &Event) -> Result<String> {
    event["order"].as_str().map(str::to_owned).ok_or_else(|| Error::raise("ValueError", "the event has no order"))
}

/// A schedule that leaves orders stuck, by lymph's design: both restaurants crash, orders are
/// placed (their `order.created` waits in the restaurants' queue, their deadlines in the
/// broker), the broker restarts and loses both (lymph's queues are not durable), then the
/// restaurants come back.
pub fn stuck_by_a_broker_restart() -> Schedule {
    Schedule::new()
        .crash(0, "restaurant-1")
        .crash(0, "restaurant-2")
        .restart(3_500, lymph::testing::BROKER_HOST)
        .restart(4_000, "restaurant-1")
        .restart(4_000, "restaurant-2")
}

/// The hosts of the food services, in start order.
pub const HOSTS: [&str; 7] =
    ["order-1", "order-2", "restaurant-1", "restaurant-2", "delivery", "notification", "gateway"];

/// Starts every food service on `cluster`, all keeping their state in `store`.
///
/// # Errors
///
/// When a container does not start.
pub async fn start(cluster: &impl Cluster, store: &Store) -> std::result::Result<(), Error> {
    for host in HOSTS {
        let store = store.clone();
        let factory: Box<dyn Fn() -> lymph::ContainerBuilder> = match host.split('-').next().unwrap_or(host) {
            "order" => Box::new(move || Container::builder().interface(Orders { store: store.clone() })),
            "restaurant" => Box::new(move || Container::builder().interface(Restaurant { store: store.clone() })),
            "delivery" => Box::new(|| Container::builder().interface(Delivery)),
            "notification" => Box::new(move || Container::builder().interface(Notification { store: store.clone() })),
            _ => Box::new(|| Container::builder().interface(Gateway)),
        };
        cluster.start(host, factory).await?;
    }
    Ok(())
}

/// What a run of the food scenario saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Orders the gateway confirmed to the customer.
    pub confirmed: usize,
    /// Orders placed, by final status.
    pub by_status: BTreeMap<String, usize>,
    /// The invariants' verdict.
    pub verdict: std::result::Result<(), String>,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.verdict {
            Ok(()) => write!(f, "PASS: ")?,
            Err(violation) => write!(f, "FAIL ({violation}): ")?,
        }
        write!(f, "{} orders confirmed to customers, final states {:?}", self.confirmed, self.by_status)
    }
}

/// Places `orders` orders, one every 400 ms, while `schedule` runs; then restarts every host the
/// schedule left crashed (as an orchestrator would), waits for the system to settle and checks
/// the invariants.
///
/// # Errors
///
/// When the services do not start; broken invariants are in the [`Summary`].
pub async fn run(cluster: &impl Cluster, orders: usize, schedule: &Schedule) -> std::result::Result<Summary, Error> {
    let store = Store::default();
    start(cluster, &store).await?;
    let client = cluster.client().await?;
    let place = async {
        let mut confirmed = 0;
        for i in 0..orders {
            let reply: Result<String> = client
                .proxy("gateway")
                .call("place_order", &json!({ "customer": format!("c{i}"), "dish": "pho" }))
                .await;
            confirmed += usize::from(reply.is_ok());
            tokio::time::sleep(Duration::from_millis(400)).await;
        }
        confirmed
    };
    let (confirmed, ()) = tokio::join!(place, schedule.run(cluster));
    for host in HOSTS {
        if !cluster.is_running(host) {
            cluster.restart(host).await?;
        }
    }
    tokio::time::sleep(DEADLINE + Duration::from_secs(10)).await;
    let mut by_status = BTreeMap::new();
    for status in store.orders().values() {
        *by_status.entry(format!("{status:?}")).or_insert(0) += 1;
    }
    Ok(Summary { confirmed, by_status, verdict: store.check() })
}
