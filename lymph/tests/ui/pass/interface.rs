//! Every form the interface macro accepts, and the spec it generates.

use std::sync::Mutex;

use lymph::__private::{Client, Interface};
use lymph::{Context, Event, Result};

#[derive(Default)]
struct Counter {
    count: Mutex<u64>,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Item {
    name: String,
}

/// Counts things.
///
/// Second paragraph.
#[lymph::interface]
impl Counter {
    /// Adds `n`.
    #[rpc]
    async fn add(&self, n: u64) -> lymph::Result<u64> {
        let mut count = self.count.lock().unwrap();
        *count += n;
        Ok(*count)
    }

    #[rpc(raises = [ValueError, "KeyError", errors::NotFound])]
    async fn with_ctx(&self, ctx: &Context, mut text: String, limit: Option<u32>) -> Result<String> {
        text.push_str(ctx.trace_id());
        let _ = limit;
        Ok(text)
    }

    #[rpc]
    async fn ctx_last(&self, r#type: String, ctx: &lymph::Context) -> Result<(), lymph::Error> {
        let _ = (r#type, ctx);
        Ok(())
    }

    #[rpc]
    async fn no_args(&self) -> std::result::Result<Vec<Item>, lymph::Error> {
        Ok(self.helper())
    }

    #[rpc]
    async fn uses_self(&self, other: Option<<Self as Named>::Item>) -> Result<Option<<Self as Named>::Item>> {
        let _ = other;
        Ok(None)
    }

    #[event("a.b", "c.#")]
    async fn on_a(&self, event: Event) -> Result<()> {
        let _ = event;
        Ok(())
    }

    #[event("d.*", sequential, broadcast = false, retry = 3, queue_name = "q")]
    async fn on_d(&self, ctx: &Context, event: &Event) -> Result<()> {
        let _ = (ctx, event);
        Ok(())
    }

    #[event("once.only", once)]
    async fn on_once(&self, _event: Event) -> Result<()> {
        Ok(())
    }

    fn helper(&self) -> Vec<Item> {
        Vec::new()
    }
}

trait Named {
    type Item;
}

impl Named for Counter {
    type Item = Item;
}

mod errors {
    #[allow(dead_code)]
    pub struct NotFound;
}

fn main() {
    let spec = Counter::default().spec();
    assert_eq!(spec.name, "counter");
    assert_eq!(spec.version, None);
    assert_eq!(spec.doc, "Counts things.\n\nSecond paragraph.");
    let names: Vec<_> = spec.methods.iter().map(|m| m.name).collect();
    assert_eq!(names, ["add", "with_ctx", "ctx_last", "no_args", "uses_self"]);
    assert_eq!(spec.methods[0].help, "Adds `n`.");
    assert_eq!(spec.methods[1].params, ["text", "limit"]);
    assert_eq!(spec.methods[1].raises, ["ValueError", "KeyError", "NotFound"]);
    assert_eq!(spec.methods[2].params, ["type"]);
    assert!(spec.methods[3].params.is_empty());
    let on_d = spec.event_handler("on_d").unwrap();
    assert_eq!(on_d.patterns, ["d.*"]);
    assert!(on_d.sequential && !on_d.broadcast && !on_d.once);
    assert_eq!((on_d.retry, on_d.queue_name), (3, Some("q")));
    assert!(spec.event_handler("on_once").unwrap().once);
    assert_eq!(<CounterClient as Client>::SERVICE, "counter");

    // The client's methods exist with the server's parameters (not called here).
    fn _client(client: &CounterClient) {
        let _ = client.add(1);
        let _ = client.with_ctx(String::new(), Some(3));
        let _ = client.ctx_last(String::new());
        let _ = client.no_args();
        let _ = client.uses_self(None);
        let _: &lymph::Proxy = client.proxy();
        let _ = CounterClient::new(client.proxy().clone()).clone();
    }
}
