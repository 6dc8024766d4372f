//! lymph-style test cases: one service with RPC mocks and recorded events, several containers,
//! and the waiting helpers.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use lymph::{Container, Context, Error, Event, MessageKind, Value};
use lymph_testing::{MockReply, MultiServiceTestCase, RpcCall, ServiceTestCase, eventually, for_a_while};

#[derive(Debug, Clone, Default)]
struct Shouter {
    heard: Arc<Mutex<Vec<String>>>,
}

#[lymph::interface(name = "shouter")]
impl Shouter {
    /// Upper-cases through the `str` service and announces the result.
    #[rpc]
    async fn shout(&self, ctx: &Context, text: String) -> lymph::Result<String> {
        let upper: String = ctx.proxy("str").call("upper", &Value::map([("text", text.as_str())])).await?;
        ctx.emit("str.uppered", Value::map([("text", upper.as_str())])).await?;
        Ok(upper)
    }

    /// Asks `str.check`, which may raise.
    #[rpc(raises = [RemoteError])]
    async fn check(&self, ctx: &Context, text: String) -> lymph::Result<bool> {
        ctx.proxy("str").call("check", &Value::map([("text", text.as_str())])).await
    }

    /// Records `name` from `greeting` events.
    #[event("greeting")]
    async fn on_greeting(&self, event: Event) -> lymph::Result<()> {
        self.heard.lock().unwrap().push(event["name"].as_str().unwrap_or_default().to_owned());
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn rpc_mocks_answer_and_record_calls() -> lymph_testing::Result {
    let case = ServiceTestCase::builder()
        .service(Shouter::default())
        .mock("str.upper", MockReply::Value(Value::from("HELLO WORLD")))
        .mock(
            "str.check",
            MockReply::With(Box::new(|body| match body["text"].as_str() {
                Some("ok") => Ok(Value::from(true)),
                _ => Err(Error::raise("ValueError", "not ok")),
            })),
        )
        .start()
        .await?;
    let shouter: ShouterClient = case.client();
    assert_eq!(shouter.shout("hello world".to_owned()).await?, "HELLO WORLD");
    case.assert_rpc_calls(&[RpcCall::new("str.upper", Value::map([("text", "hello world")]))])?;
    assert!(shouter.check("ok".to_owned()).await?);
    // The mock raised ValueError: the shouter got a RemoteError it does not declare, so a NACK.
    assert!(matches!(shouter.check("no".to_owned()).await, Err(Error::Nack { .. })));
    case.assert_any_rpc_calls(&[
        RpcCall::new("str.upper", Value::map([("text", "hello world")])),
        RpcCall::new("str.check", Value::map([("text", "no")])),
    ])?;
    assert!(case.assert_rpc_calls(&[]).is_err(), "an exact check against a wrong list fails");
    assert!(
        case.assert_any_rpc_calls(&[
            RpcCall::new("str.check", Value::map([("text", "no")])),
            RpcCall::new("str.upper", Value::map([("text", "hello world")]))
        ])
        .is_err(),
        "order matters"
    );
    case.assert_events_emitted(&[("str.uppered", Value::map([("text", "HELLO WORLD")]))]).await?;
    assert!(case.assert_events_emitted(&[("str.uppered", Value::map([("text", "other")]))]).await.is_err());
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn raw_requests_show_the_reply_kind_and_events_reach_handlers() -> lymph_testing::Result {
    let shouter = Shouter::default();
    let case = ServiceTestCase::start(shouter.clone()).await?;
    let reply = case.request("lymph.ping", &Value::map([("payload", 42)])).await?;
    assert_eq!(reply.kind, MessageKind::Rep);
    assert_eq!(reply.body_value()?, Value::from(42));
    let nack = case.request("shouter.nosuch", &Value::Map(Vec::new())).await?;
    assert_eq!(nack.kind, MessageKind::Nack);
    case.emit("greeting", Value::map([("name", "Ada")])).await?;
    let heard = shouter.heard.clone();
    eventually("the greeting was handled", Duration::from_secs(1), || heard.lock().unwrap().len() == 1).await?;
    assert_eq!(shouter.heard.lock().unwrap()[0], "Ada");
    let emitted = case.emitted();
    assert_eq!(emitted.len(), 1);
    assert_eq!(emitted[0].source, case.client_container().identity());
    case.stop().await;
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn waiting_helpers_fail_when_they_should() {
    let flag = Arc::new(Mutex::new(false));
    let setter = flag.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        *setter.lock().unwrap() = true;
    });
    let f = flag.clone();
    assert!(eventually("set", Duration::from_millis(100), || *f.lock().unwrap()).await.is_err());
    let f = flag.clone();
    assert!(eventually("set", Duration::from_secs(1), || *f.lock().unwrap()).await.is_ok());
    let f = flag.clone();
    assert!(for_a_while("still set", Duration::from_secs(1), || *f.lock().unwrap()).await.is_ok());
    let f = flag.clone();
    let error = for_a_while("unset", Duration::from_secs(1), || !*f.lock().unwrap()).await.unwrap_err();
    assert!(error.to_string().contains("unset"));
}

#[derive(Debug, Default)]
struct Foo;

#[lymph::interface(name = "foo")]
impl Foo {
    /// Says which version answered.
    #[rpc]
    async fn which(&self, ctx: &Context) -> lymph::Result<String> {
        Ok(ctx.config()["v"].as_str().unwrap_or_default().to_owned())
    }
}

#[tokio::test(start_paused = true)]
async fn multi_service_case_runs_lymphs_versioning_test() -> lymph_testing::Result {
    let case = MultiServiceTestCase::start([
        Container::builder().interface_as("foo@1.1", Foo, Value::map([("v", "1.1")])),
        Container::builder().interface_as("foo@1.5", Foo, Value::map([("v", "1.5")])),
    ])
    .await?;
    let v: String = case.client().proxy("foo").version("1.2").call("which", &Value::Map(Vec::new())).await?;
    assert_eq!(v, "1.5");
    let none = case.client().proxy("foo").version("1.7").call::<String, _>("which", &Value::Map(Vec::new())).await;
    assert!(matches!(none, Err(Error::NotConnected { .. })), "{none:?}");
    assert_eq!(case.containers().len(), 2);
    Ok(())
}
