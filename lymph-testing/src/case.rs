//! lymph-style test cases on the embedded backends: one service with mocks and recorded events,
//! or several containers at once.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use lymph_core::event::Subscription;
use lymph_core::interface::{CallError, Client, Interface, InterfaceSpec};
use lymph_core::memory::MemoryNetwork;
use lymph_core::{Container, ContainerBuilder, Context, Error, Event, EventSystem, Message, Proxy, Value, codec};
use serde::Serialize;

use crate::TestError;
use crate::wait::eventually;

/// A closure answering a mocked request from its body.
pub type MockFn = Box<dyn Fn(&Value) -> Result<Value, Error> + Send + Sync>;

/// What a mocked method answers.
pub enum MockReply {
    /// This value.
    Value(Value),
    /// What the closure returns for the request body (a map of keyword arguments).
    With(MockFn),
    /// An ERROR reply `{type, message}`, as a declared error of the real service.
    Raise(String, String),
}

impl fmt::Debug for MockReply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Value(value) => f.debug_tuple("Value").field(value).finish(),
            Self::With(_) => f.write_str("With(..)"),
            Self::Raise(type_name, message) => f.debug_tuple("Raise").field(type_name).field(message).finish(),
        }
    }
}

/// One request a mock received: its subject and body.
#[derive(Debug, Clone, PartialEq)]
pub struct RpcCall {
    /// `<service>.<method>`.
    pub subject: String,
    /// The keyword arguments.
    pub body: Value,
}

impl RpcCall {
    /// A call to compare with recorded ones.
    pub fn new(subject: &str, body: Value) -> Self {
        Self { subject: subject.to_owned(), body }
    }
}

type Calls = Arc<Mutex<Vec<RpcCall>>>;

static MOCK_SPEC: InterfaceSpec =
    InterfaceSpec { name: "mock", version: None, doc: "A mocked service.", methods: &[], event_handlers: &[] };

/// A service whose methods answer what the test says.
struct MockService {
    service: String,
    replies: Arc<Mutex<BTreeMap<String, MockReply>>>,
    calls: Calls,
}

impl Interface for MockService {
    fn spec(&self) -> &'static InterfaceSpec {
        &MOCK_SPEC
    }

    fn declares(&self, _method: &str, _type_name: &str) -> bool {
        true
    }

    fn call<'a>(
        &'a self,
        _ctx: &'a Context,
        method: &'a str,
        body: &'a [u8],
    ) -> BoxFuture<'a, Result<Vec<u8>, CallError>> {
        Box::pin(async move {
            let subject = format!("{}.{method}", self.service);
            let body = Value::from_msgpack(body).map_err(|e| CallError::BadArguments(e.to_string()))?;
            self.calls.lock().expect("calls lock").push(RpcCall { subject: subject.clone(), body: body.clone() });
            let replies = self.replies.lock().expect("replies lock");
            let value = match replies.get(&subject) {
                None => return Err(CallError::UnknownMethod),
                Some(MockReply::Value(value)) => value.clone(),
                Some(MockReply::With(f)) => f(&body).map_err(CallError::Failed)?,
                Some(MockReply::Raise(type_name, message)) => {
                    return Err(CallError::Failed(Error::raise(type_name, message)));
                }
            };
            Ok(value.to_msgpack())
        })
    }

    fn handle_event<'a>(
        &'a self,
        _ctx: &'a Context,
        handler: &'a str,
        _event: &'a Event,
    ) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move { Err(Error::Config(format!("a mock has no event handler {handler:?}"))) })
    }
}

/// Records every event published on a network.
#[derive(Debug, Clone, Default)]
struct Recorder {
    events: Arc<Mutex<Vec<Event>>>,
}

impl Recorder {
    async fn attach(network: &MemoryNetwork) -> Result<Self, Error> {
        let recorder = Self::default();
        let subscription = Subscription {
            queue: "_lymph_testing-recorder".to_owned(),
            patterns: vec!["#".to_owned()],
            broadcast: true,
            once: false,
        };
        let mut deliveries = network.events().subscribe(subscription).await?;
        let events = recorder.events.clone();
        tokio::spawn(async move {
            while let Some(delivery) = deliveries.recv().await {
                events.lock().expect("events lock").push(delivery.event.clone());
                let _ = delivery.acker.ack().await;
            }
        });
        Ok(recorder)
    }
}

/// A test case for one service on the embedded backends, as lymph's `RPCServiceTestCase` with
/// `RpcMockTestCase` and `EventMockTestCase`.
///
/// It starts the service in a container on a fresh [`MemoryNetwork`], a client container next to
/// it, services that answer as mocked, and a recorder of every event emitted.
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use lymph_core::Value;
/// use lymph_testing::{MockReply, ServiceTestCase};
///
/// // A case with no service of its own, only a mocked `str` service.
/// let case = ServiceTestCase::builder()
///     .mock("str.upper", MockReply::Value(Value::from("HELLO")))
///     .start()
///     .await?;
/// let reply: String = case.proxy("str").call("upper", &Value::map([("text", "hello")])).await?;
/// assert_eq!(reply, "HELLO");
/// case.assert_rpc_calls(&[lymph_testing::RpcCall::new("str.upper", Value::map([("text", "hello")]))])?;
/// # Ok::<(), Box<dyn std::error::Error>>(()) }).unwrap();
/// ```
pub struct ServiceTestCase {
    network: MemoryNetwork,
    service: Option<Container>,
    client: Container,
    mocks: Vec<Container>,
    calls: Calls,
    recorder: Recorder,
}

impl fmt::Debug for ServiceTestCase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceTestCase").field("service", &self.service).finish_non_exhaustive()
    }
}

/// Sets up a [`ServiceTestCase`].
pub struct ServiceTestCaseBuilder {
    service: Option<ContainerBuilder>,
    mocks: BTreeMap<String, MockReply>,
}

impl fmt::Debug for ServiceTestCaseBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceTestCaseBuilder").field("mocks", &self.mocks).finish_non_exhaustive()
    }
}

impl ServiceTestCaseBuilder {
    /// The service under test, installed under the name it declares.
    pub fn service(mut self, interface: impl Interface) -> Self {
        self.service = Some(Container::builder().interface(interface));
        self
    }

    /// The service under test as a container builder (to set a name, version or config).
    pub fn container(mut self, builder: ContainerBuilder) -> Self {
        self.service = Some(builder);
        self
    }

    /// Mocks the method `subject` (`service.method`) of another service.
    pub fn mock(mut self, subject: &str, reply: MockReply) -> Self {
        self.mocks.insert(subject.to_owned(), reply);
        self
    }

    /// Starts the case.
    ///
    /// # Errors
    ///
    /// When a container does not start or a mock subject has no dot.
    pub async fn start(self) -> Result<ServiceTestCase, Error> {
        let network = MemoryNetwork::new();
        let recorder = Recorder::attach(&network).await?;
        let calls = Calls::default();
        let mut by_service: BTreeMap<String, BTreeMap<String, MockReply>> = BTreeMap::new();
        for (subject, reply) in self.mocks {
            let (service, _) = subject
                .rsplit_once('.')
                .ok_or_else(|| Error::Config(format!("mock subject {subject:?} is not service.method")))?;
            by_service.entry(service.to_owned()).or_default().insert(subject.clone(), reply);
        }
        let mut mocks = Vec::new();
        for (service, replies) in by_service {
            let mock =
                MockService { service: service.clone(), replies: Arc::new(Mutex::new(replies)), calls: calls.clone() };
            mocks.push(Container::builder().network(&network).interface_as(service, mock, Value::Nil).start().await?);
        }
        let service = match self.service {
            Some(builder) => Some(builder.network(&network).start().await?),
            None => None,
        };
        let client = Container::builder().network(&network).start().await?;
        Ok(ServiceTestCase { network, service, client, mocks, calls, recorder })
    }
}

impl ServiceTestCase {
    /// Sets up a case.
    pub fn builder() -> ServiceTestCaseBuilder {
        ServiceTestCaseBuilder { service: None, mocks: BTreeMap::new() }
    }

    /// Starts a case for `interface` with no mocks.
    ///
    /// # Errors
    ///
    /// When the service does not start.
    pub async fn start(interface: impl Interface) -> Result<Self, Error> {
        Self::builder().service(interface).start().await
    }

    /// The network the case runs on.
    pub fn network(&self) -> &MemoryNetwork {
        &self.network
    }

    /// The container of the service under test.
    ///
    /// # Panics
    ///
    /// When the case has no service.
    pub fn service(&self) -> &Container {
        self.service.as_ref().expect("this test case has no service")
    }

    /// The client container.
    pub fn client_container(&self) -> &Container {
        &self.client
    }

    /// The typed client of a service (e.g. `EchoClient`), from the client container.
    pub fn client<C: Client>(&self) -> C {
        self.client.client()
    }

    /// A proxy to a service, from the client container.
    pub fn proxy(&self, service: &str) -> Proxy {
        self.client.proxy(service)
    }

    /// Sends a raw request for `subject` (`interface.method`) to the service under test and
    /// returns the reply, whatever its kind (lymph's `self.request(...)`).
    ///
    /// # Errors
    ///
    /// When `body` cannot be encoded or no reply arrives within 3 s.
    pub async fn request(&self, subject: &str, body: &(impl Serialize + ?Sized)) -> Result<Message, Error> {
        let (namespace, method) = subject
            .rsplit_once('.')
            .ok_or_else(|| Error::Config(format!("subject {subject:?} is not interface.method")))?;
        let body = codec::to_msgpack(body)?;
        self.client.proxy(self.service().endpoint()).namespace(namespace).request(method, body.into()).await
    }

    /// Emits an event from the client container.
    ///
    /// # Errors
    ///
    /// When `body` cannot be encoded.
    pub async fn emit(&self, event_type: &str, body: impl Serialize) -> Result<(), Error> {
        self.client.emit(event_type, body).await
    }

    /// Every event published so far, in order (by the service, the client or anyone else).
    pub fn emitted(&self) -> Vec<Event> {
        self.recorder.events.lock().expect("events lock").clone()
    }

    /// Waits (up to 3 s) until the events `expected` (type, body) have been emitted in this order,
    /// with possibly others in between (lymph's `assert_events_emitted`).
    ///
    /// # Errors
    ///
    /// A [`TestError`] listing what was emitted.
    pub async fn assert_events_emitted(&self, expected: &[(&str, Value)]) -> Result<(), TestError> {
        let found = eventually("events emitted", Duration::from_secs(3), || {
            is_subsequence(expected, &self.emitted(), |(t, b), e| e.event_type == *t && e.body == *b)
        })
        .await;
        found.map_err(|_| {
            let emitted: Vec<_> = self.emitted().iter().map(|e| format!("{} {}", e.event_type, e.body)).collect();
            TestError::new(format!("expected events {expected:?} in this order, emitted: {emitted:#?}"))
        })
    }

    /// The requests the mocks received, in order.
    pub fn rpc_calls(&self) -> Vec<RpcCall> {
        self.calls.lock().expect("calls lock").clone()
    }

    /// Checks that the mocks received exactly `expected`, in order.
    ///
    /// # Errors
    ///
    /// A [`TestError`] showing both lists.
    pub fn assert_rpc_calls(&self, expected: &[RpcCall]) -> Result<(), TestError> {
        let calls = self.rpc_calls();
        if calls == expected {
            Ok(())
        } else {
            Err(TestError::new(format!("expected the calls {expected:#?}\nthe mocks received {calls:#?}")))
        }
    }

    /// Checks that the mocks received `expected` in this order, with possibly others in between.
    ///
    /// # Errors
    ///
    /// A [`TestError`] naming the first expected call not found.
    pub fn assert_any_rpc_calls(&self, expected: &[RpcCall]) -> Result<(), TestError> {
        let calls = self.rpc_calls();
        let mut rest = calls.iter();
        for call in expected {
            if !rest.any(|c| c == call) {
                return Err(TestError::new(format!("expected the call {call:?} (in order) among {calls:#?}")));
            }
        }
        Ok(())
    }

    /// Stops every container of the case.
    pub async fn stop(&self) {
        self.client.stop().await;
        if let Some(service) = &self.service {
            service.stop().await;
        }
        for mock in &self.mocks {
            mock.stop().await;
        }
    }
}

fn is_subsequence<A, B>(expected: &[A], actual: &[B], eq: impl Fn(&A, &B) -> bool) -> bool {
    let mut rest = actual.iter();
    expected.iter().all(|a| rest.any(|b| eq(a, b)))
}

/// A test case with several containers on one embedded network and a client, as lymph's
/// `MultiServiceRPCTestCase`.
pub struct MultiServiceTestCase {
    network: MemoryNetwork,
    containers: Vec<Container>,
    client: Container,
}

impl fmt::Debug for MultiServiceTestCase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MultiServiceTestCase").field("containers", &self.containers).finish_non_exhaustive()
    }
}

impl MultiServiceTestCase {
    /// Starts one container per builder (typically each with `interface_as("foo@1.1", ..)`), and a client.
    ///
    /// # Errors
    ///
    /// When a container does not start.
    pub async fn start(builders: impl IntoIterator<Item = ContainerBuilder>) -> Result<Self, Error> {
        let network = MemoryNetwork::new();
        let mut containers = Vec::new();
        for builder in builders {
            containers.push(builder.network(&network).start().await?);
        }
        let client = Container::builder().network(&network).start().await?;
        Ok(Self { network, containers, client })
    }

    /// The network.
    pub fn network(&self) -> &MemoryNetwork {
        &self.network
    }

    /// The service containers, in the order given.
    pub fn containers(&self) -> &[Container] {
        &self.containers
    }

    /// The client container.
    pub fn client(&self) -> &Container {
        &self.client
    }
}
