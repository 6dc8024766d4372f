//! What `#[lymph::interface]` generates, checked through its spec, through `Interface` directly,
//! and through a real container with the typed and the dynamic client; plus the expansion of
//! `#[lymph::test]` against a stand-in runner.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lymph::__private::{CallError, Client, Interface};
use lymph::memory::MemoryNetwork;
use lymph::{Container, Context, Error, Event, Result, Value};

#[derive(Default)]
struct Shop {
    stock: Mutex<BTreeMap<String, u32>>,
    seen: Arc<Mutex<Vec<String>>>,
}

/// A tiny shop.
#[lymph::interface(name = "shop", version = "1.2.0")]
impl Shop {
    /// Adds `count` items called `name`.
    ///
    ///   Returns the new stock.
    #[rpc]
    async fn add(&self, name: String, count: u32) -> Result<u32> {
        let mut stock = self.stock.lock().unwrap();
        let entry = stock.entry(name).or_default();
        *entry += count;
        Ok(*entry)
    }

    /// Takes one item and returns the trace id of the request.
    #[rpc(raises = [OutOfStock, "KeyError"])]
    async fn take(&self, ctx: &Context, name: String) -> lymph::Result<String> {
        let mut stock = self.stock.lock().unwrap();
        match stock.get_mut(&name) {
            Some(count) if *count > 0 => {
                *count -= 1;
                Ok(ctx.trace_id().to_owned())
            }
            Some(_) => Err(Error::raise("OutOfStock", format!("no {name} left"))),
            None => Err(Error::raise("KeyError", name)),
        }
    }

    /// The item names, at most `limit` of them.
    #[rpc]
    async fn list(&self, limit: Option<u32>) -> Result<Vec<String>, Error> {
        let stock = self.stock.lock().unwrap();
        let limit = limit.map_or(usize::MAX, |limit| limit as usize);
        Ok(stock.keys().take(limit).cloned().collect())
    }

    #[rpc]
    async fn fail(&self) -> Result<()> {
        Err(Error::raise("RuntimeError", "undeclared"))
    }

    #[event("shop.restocked", "shop.*.restocked", retry = 2)]
    async fn on_restock(&self, event: Event) -> Result<()> {
        self.seen.lock().unwrap().push(event.event_type);
        Ok(())
    }

    #[event("audit.#", sequential, broadcast, queue_name = "audit")]
    async fn on_audit(&self, ctx: &Context, event: &Event) -> Result<()> {
        let _ = ctx.trace_id();
        self.seen.lock().unwrap().push(format!("audit {}", event.event_type));
        Ok(())
    }

    #[event("shop.closed", once)]
    async fn on_close(&self, _event: Event) -> Result<()> {
        Ok(())
    }

    /// An ordinary method: not part of the interface.
    fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

#[test]
fn spec_lists_methods_and_handlers() {
    let spec = Shop::default().spec();
    assert_eq!(spec.name, "shop");
    assert_eq!(spec.version, Some("1.2.0"));
    assert_eq!(spec.doc, "A tiny shop.");

    let methods: Vec<_> = spec.methods.iter().map(|m| (m.name, m.params)).collect();
    assert_eq!(
        methods,
        [("add", &["name", "count"][..]), ("take", &["name"][..]), ("list", &["limit"][..]), ("fail", &[][..]),]
    );
    let add = spec.method("add").unwrap();
    assert_eq!(add.help, "Adds `count` items called `name`.\n\nReturns the new stock.");
    assert!(add.raises.is_empty());
    assert_eq!(spec.method("take").unwrap().raises, ["OutOfStock", "KeyError"]);
    assert_eq!(spec.method("fail").unwrap().help, "");

    let restock = spec.event_handler("on_restock").unwrap();
    assert_eq!(restock.patterns, ["shop.restocked", "shop.*.restocked"]);
    assert_eq!(restock.retry, 2);
    assert_eq!(restock.queue_name, None);
    assert!(!restock.sequential && !restock.broadcast && !restock.once);
    let audit = spec.event_handler("on_audit").unwrap();
    assert_eq!(audit.patterns, ["audit.#"]);
    assert_eq!(audit.queue_name, Some("audit"));
    assert!(audit.sequential && audit.broadcast && !audit.once);
    assert_eq!(audit.retry, 0);
    assert!(spec.event_handler("on_close").unwrap().once);
    assert!(spec.event_handler("seen").is_none());

    assert_eq!(ShopClient::SERVICE, "shop");
}

async fn start() -> Result<Container> {
    Container::builder().network(&MemoryNetwork::new()).interface(Shop::default()).start().await
}

#[tokio::test]
async fn typed_client_calls_methods() -> Result<()> {
    let container = start().await?;
    let shop = container.client::<ShopClient>();

    assert_eq!(shop.add("apple".into(), 2).await?, 2);
    assert_eq!(shop.add("pear".into(), 0).await?, 0);
    assert_eq!(shop.list(None).await?, ["apple", "pear"]);
    assert_eq!(shop.list(Some(1)).await?, ["apple"]);
    let trace_id = shop.take("apple".into()).await?;
    assert_eq!(trace_id, shop.proxy().trace_id());

    // Declared errors come back as remote errors, undeclared ones as NACKs.
    let out = shop.take("pear".into()).await.unwrap_err();
    assert!(out.is_remote("OutOfStock"), "{out:?}");
    let missing = shop.take("plum".into()).await.unwrap_err();
    assert!(missing.is_remote("KeyError"), "{missing:?}");
    let failed = shop.fail().await.unwrap_err();
    assert!(matches!(failed, Error::Nack { .. }), "{failed:?}");

    container.stop().await;
    Ok(())
}

#[tokio::test]
async fn dynamic_client_gets_nack_for_bad_calls() -> Result<()> {
    let container = start().await?;
    let shop = container.proxy("shop");

    // A good call, and an `Option` argument left out.
    let count: u32 =
        shop.call("add", &Value::map([("name", Value::from("fig")), ("count", Value::from(5u32))])).await?;
    assert_eq!(count, 5);
    let names: Vec<String> = shop.call("list", &Value::map::<&str, Value>([])).await?;
    assert_eq!(names, ["fig"]);

    let bad_calls = [
        ("add", Value::map([("name", "fig")])),
        ("add", Value::map([("name", Value::from("fig")), ("count", 1u32.into()), ("colour", "red".into())])),
        ("add", Value::map([("name", "fig"), ("count", "many")])),
        ("remove", Value::map([("name", "fig")])),
    ];
    for (method, args) in bad_calls {
        let error = shop.call::<Value, _>(method, &args).await.unwrap_err();
        assert!(matches!(error, Error::Nack { .. }), "{method}({args:?}): {error:?}");
    }

    container.stop().await;
    Ok(())
}

#[tokio::test]
async fn call_explains_bad_arguments() -> Result<()> {
    let container = start().await?;
    let ctx = container.context();
    let shop = Shop::default();
    let call = |method: &'static str, args: Value| {
        let (shop, ctx) = (&shop, &ctx);
        async move { shop.call(ctx, method, &args.to_msgpack()).await }
    };

    let body = call("add", Value::map([("name", Value::from("fig")), ("count", 2u32.into())])).await.unwrap();
    assert_eq!(lymph::codec::from_msgpack::<u32>(&body).unwrap(), 2);

    let reason = |result: std::result::Result<Vec<u8>, CallError>| match result {
        Err(CallError::BadArguments(reason)) => reason,
        other => panic!("expected bad arguments, got {other:?}"),
    };
    let missing = reason(call("add", Value::map([("name", "fig")])).await);
    assert!(missing.contains("add") && missing.contains("missing field `count`"), "{missing}");
    let extra = Value::map([("name", Value::from("fig")), ("count", 1u32.into()), ("colour", "red".into())]);
    let extra = reason(call("add", extra).await);
    assert!(extra.contains("add") && extra.contains("unknown field `colour`"), "{extra}");
    let mistyped = reason(call("add", Value::map([("name", "fig"), ("count", "many")])).await);
    assert!(mistyped.contains("add") && mistyped.contains("argument `count: u32`"), "{mistyped}");
    let not_a_map = reason(call("fail", Value::from("nope")).await);
    assert!(not_a_map.contains("fail"), "{not_a_map}");

    assert!(matches!(call("remove", Value::map::<&str, Value>([])).await, Err(CallError::UnknownMethod)));
    assert!(matches!(call("seen", Value::map::<&str, Value>([])).await, Err(CallError::UnknownMethod)));
    match call("fail", Value::map::<&str, Value>([])).await {
        Err(CallError::Failed(Error::Raised { type_name, .. })) => assert_eq!(type_name, "RuntimeError"),
        other => panic!("expected a failure, got {other:?}"),
    }

    container.stop().await;
    Ok(())
}

#[tokio::test]
async fn handle_event_dispatches_by_handler_name() -> Result<()> {
    let container = start().await?;
    let ctx = container.context();
    let shop = Shop::default();
    let event = Event::new("audit.shop.opened", Value::Nil, None);

    shop.handle_event(&ctx, "on_restock", &event).await?;
    shop.handle_event(&ctx, "on_audit", &event).await?;
    assert_eq!(shop.seen(), ["audit.shop.opened", "audit audit.shop.opened"]);
    let unknown = shop.handle_event(&ctx, "seen", &event).await.unwrap_err();
    assert!(unknown.to_string().contains("no event handler `seen`"), "{unknown}");

    container.stop().await;
    Ok(())
}

#[tokio::test]
async fn container_delivers_events_to_handlers() -> Result<()> {
    let network = MemoryNetwork::new();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let interface = Shop { seen: seen.clone(), ..Shop::default() };
    let shop = Container::builder().network(&network).interface(interface).start().await?;
    let other = Container::builder().network(&network).start().await?;
    other.emit("shop.north.restocked", Value::map([("name", "kiwi")])).await?;
    other.emit("audit.shop", Value::Nil).await?;
    other.emit("unrelated", Value::Nil).await?;

    let delivered = tokio::time::timeout(Duration::from_secs(5), async {
        while seen.lock().unwrap().len() < 2 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert!(delivered.is_ok(), "events not delivered: {:?}", seen.lock().unwrap());
    let mut seen = seen.lock().unwrap().clone();
    seen.sort();
    assert_eq!(seen, ["audit audit.shop", "shop.north.restocked"]);

    other.stop().await;
    shop.stop().await;
    Ok(())
}

/// A stand-in for `lymph::__private::Runner`, to check what `#[lymph::test]` expands to
/// without the simulator.
mod shim {
    pub(crate) mod __private {
        use std::cell::RefCell;
        use std::future::Future;

        #[derive(Debug, Clone, Default, PartialEq)]
        pub(crate) struct Config {
            pub(crate) test_path: &'static str,
            pub(crate) package: &'static str,
            pub(crate) target: &'static str,
            pub(crate) seed: Option<u64>,
            pub(crate) seeds: Option<u32>,
            pub(crate) check_determinism: Option<bool>,
        }

        thread_local! {
            static CURRENT: RefCell<Config> = RefCell::default();
        }

        /// The runner configuration of the test that is running.
        pub(crate) fn current() -> Config {
            CURRENT.with(|current| current.borrow().clone())
        }

        pub(crate) struct World(pub(crate) u32);

        pub(crate) trait TestOutcome {
            fn check(self);
        }

        impl TestOutcome for () {
            fn check(self) {}
        }

        impl<E: std::fmt::Debug> TestOutcome for Result<(), E> {
            fn check(self) {
                self.unwrap();
            }
        }

        pub(crate) struct Runner(Config);

        impl Runner {
            pub(crate) fn new(test_path: &'static str, package: &'static str, target: &'static str) -> Self {
                Self(Config { test_path, package, target, ..Config::default() })
            }

            pub(crate) fn seed(mut self, seed: u64) -> Self {
                self.0.seed = Some(seed);
                self
            }

            pub(crate) fn seeds(mut self, seeds: u32) -> Self {
                self.0.seeds = Some(seeds);
                self
            }

            pub(crate) fn check_determinism(mut self, check: bool) -> Self {
                self.0.check_determinism = Some(check);
                self
            }

            pub(crate) fn run<F, Fut, R>(self, body: F)
            where
                F: Fn(World) -> Fut + 'static,
                Fut: Future<Output = R> + 'static,
                R: TestOutcome,
            {
                CURRENT.with(|current| *current.borrow_mut() = self.0.clone());
                let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
                for run in 0..self.0.seeds.unwrap_or(1) {
                    runtime.block_on(body(World(run))).check();
                }
            }
        }
    }
}

mod test_macro {
    use crate::shim::__private::{Config, World, current};

    #[lymph::test(crate = "crate::shim")]
    async fn passes_the_test_path(world: World) {
        assert_eq!(world.0, 0);
        let config = current();
        assert_eq!(
            config,
            Config {
                test_path: "macro_interface::test_macro::passes_the_test_path",
                package: env!("CARGO_PKG_NAME"),
                target: "macro_interface",
                ..Config::default()
            }
        );
    }

    /// Options become builder calls; a `Result` body may use `?`.
    #[lymph::test(seeds = 3, check_determinism, crate = "crate::shim")]
    async fn passes_options(mut world: World) -> Result<(), String> {
        world.0 += 1;
        assert!(world.0 <= 3);
        let config = current();
        assert_eq!((config.seed, config.seeds, config.check_determinism), (None, Some(3), Some(true)));
        let parsed: u32 = "7".parse().map_err(|e: std::num::ParseIntError| e.to_string())?;
        assert_eq!(parsed, 7);
        Ok(())
    }

    #[lymph::test(seed = 42, check_determinism = false, crate = "crate::shim")]
    #[should_panic(expected = "boom")]
    async fn keeps_attributes(_: World) -> Result<(), String> {
        assert_eq!(current().seed, Some(42));
        Err("boom".to_owned())
    }
}

/// `#[lymph::test]` against the real runner (`lymph/testing` feature).
#[cfg(feature = "testing")]
mod simulated {
    use lymph::testing::World;

    #[lymph::test]
    async fn runs_in_the_simulator(world: World) {
        let _ = world;
    }

    #[lymph::test(seeds = 2, check_determinism)]
    async fn runs_seeds(_world: World) -> Result<(), String> {
        Ok(())
    }
}
