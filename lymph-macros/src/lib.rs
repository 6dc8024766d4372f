//! The procedural macros of lymph-rs: `#[lymph::interface]` and `#[lymph::test]`.
//!
//! Use them through the `lymph` facade (`lymph::interface`, `lymph::test`), never from this
//! crate directly: the generated code names items as `::lymph::__private::...`, so the facade
//! must be a dependency (or be named with `crate = "..."`).
//!
//! # Example
//!
//! A service interface, as lymph's `class Echo(lymph.Interface)` with `@lymph.rpc()` and
//! `@lymph.event(...)` methods:
//!
//! ```ignore
//! use lymph::{Context, Event, Result};
//!
//! #[derive(Default)]
//! struct Echo;
//!
//! /// Echoes text back.
//! #[lymph::interface(name = "echo", version = "1.2.0")]
//! impl Echo {
//!     /// Returns `text` unchanged.
//!     #[rpc]
//!     async fn echo(&self, text: String) -> Result<String> {
//!         Ok(text)
//!     }
//!
//!     /// Returns `text` in upper case and tells everyone about it.
//!     #[rpc(raises = [ValueError])]
//!     async fn upper(&self, ctx: &Context, text: String) -> Result<String> {
//!         if text.is_empty() {
//!             return Err(lymph::Error::raise("ValueError", "empty text"));
//!         }
//!         ctx.emit("uppercase_transform_finished", &text).await?;
//!         Ok(text.to_uppercase())
//!     }
//!
//!     #[event("uppercase_transform_finished", retry = 3)]
//!     async fn on_upper(&self, event: Event) -> Result<()> {
//!         tracing::info!(?event.body, "transformed");
//!         Ok(())
//!     }
//! }
//!
//! // The macro also generates `EchoClient`:
//! # async fn client(container: &lymph::Container) -> lymph::Result<()> {
//! let echo = container.client::<EchoClient>();
//! assert_eq!(echo.upper("hi".into()).await?, "HI");
//! # Ok(()) }
//! ```
//!
//! A simulation test (feature `testing` of `lymph`):
//!
//! ```ignore
//! use lymph::testing::World;
//!
//! #[lymph::test(seeds = 16)]
//! async fn echo_round_trip(mut world: World) -> lymph::testing::Result {
//!     // set up hosts and run clients in `world` ...
//!     Ok(())
//! }
//! ```
//!
//! # Layout
//!
//! - `lib.rs`: the two entry points and their documentation.
//! - `interface.rs`: `#[lymph::interface]`: checking the `impl` block, generating the
//!   `Interface` impl and the typed client.
//! - `test.rs`: `#[lymph::test]`.
//! - `attr.rs`: parsing of attribute options, doc comments and error accumulation.
//!
//! Errors are reported with the span of the offending tokens, all at once, and the original
//! item is emitted along with them (as tokio-macros does), so that one mistake does not bury the
//! rest of the crate under unrelated errors.
//!
//! # Feature flags
//!
//! None.

mod attr;
mod interface;
mod test;

use proc_macro::TokenStream;

/// Turns an inherent `impl` block into a lymph service interface.
///
/// ```ignore
/// #[lymph::interface]
/// #[lymph::interface(name = "echo", version = "1.2.0", crate = "::lymph")]
/// impl Echo { ... }
/// ```
///
/// The block's `#[rpc]` methods become the interface's RPC methods and its `#[event]` methods
/// its event handlers; other items stay ordinary inherent items. The macro emits the block
/// (without the `#[rpc]` / `#[event]` attributes), an `impl lymph::Interface for Echo`, and a
/// typed client `EchoClient`.
///
/// # Options
///
/// - `name = "echo"`: the name the interface is installed and called under (the namespace of
///   its subjects, `echo.upper`). Default: the type name **lowercased** (`Echo` is `echo`,
///   `OrderService` is `orderservice`). lymph 0.15 takes the name from the config key and falls
///   back to the class name verbatim; lymph-rs lowercases it because service names are
///   lowercase by convention and a Rust type name is always capitalized.
/// - `version = "X.Y.Z"`: the interface version, three numbers (a compile error otherwise).
///   Proxies may then ask for a compatible version (`>= X.Y, < X+1`). Default: unversioned.
/// - `crate = "path"`: where the `lymph` crate is, if it is not `::lymph` (e.g. when it is
///   renamed in `Cargo.toml`, or re-exported by another crate).
///
/// The doc comment of the `impl` block becomes [`InterfaceSpec::doc`].
///
/// # `#[rpc]` methods
///
/// ```ignore
/// /// Shown by `lymph.inspect` (`MethodSpec::help`).
/// #[rpc]
/// #[rpc(raises = [ValueError, "KeyError"])]
/// async fn name(&self, [ctx: &Context,] p1: T1, p2: Option<T2>, ...) -> lymph::Result<R>
/// ```
///
/// - The method must be an `async fn` taking `&self` (the container shares one instance between
///   concurrent calls; keep state behind a lock), not generic.
/// - `ctx: &Context` is optional; it is recognised by its type, a reference to a path ending in
///   `Context`, and may be anywhere among the parameters.
/// - The other parameters are the keyword arguments of the call: the request body is a msgpack
///   map from parameter name to value. Each must be a plain name (`text: String`, `mut n: u32`)
///   of an owned type that is `Serialize + DeserializeOwned` (the server decodes it, the client
///   encodes it). An `Option<T>` parameter may be left out by the caller. Missing, extra and
///   mistyped arguments are refused with `CallError::BadArguments`, which the caller sees as a
///   NACK; the message names the method and the argument.
/// - The return type is `lymph::Result<R>` (or `Result<R>`, `Result<R, E>` with
///   `E: Into<lymph::Error>`), with `R: Serialize`: `Ok` is the reply body. An `Err` becomes
///   `CallError::Failed`; the container replies with an ERROR when it is an
///   `Error::Raised { type_name, .. }` whose `type_name` is listed in `raises`, and with a NACK
///   otherwise, as lymph does with undeclared exceptions.
/// - `raises = [...]`: the error type names the method declares, as identifiers (`ValueError`,
///   or a path, of which the last segment counts) or string literals.
/// - The doc comment becomes `MethodSpec::help` (each line trimmed, joined with `\n`) and the
///   docs of the client method; the parameter names become `MethodSpec::params`.
/// - A method cannot be named `new` or `proxy` (the client's own methods).
///
/// # `#[event]` handlers
///
/// ```ignore
/// #[event("order.created", "order.#", sequential, broadcast, once, retry = 3, queue_name = "q")]
/// async fn name(&self, [ctx: &Context,] event: Event) -> lymph::Result<()>
/// ```
///
/// - At least one event type pattern: dotted words where `*` matches one word and `#` zero or
///   more (the handler runs for events whose type matches any of them).
/// - `sequential`: events are handled one at a time, in order.
/// - `broadcast`: every instance of the service gets every event (a queue per instance).
/// - `once`: only the first matching event is handled. `once` and `broadcast` cannot be
///   combined, as in lymph.
/// - `retry = N`: a failed event is retried up to `N` times (default 0).
/// - `queue_name = "q"`: the queue is `<interface>-q` instead of `<interface>-<handler name>`.
/// - Flags may also be written `sequential = true`.
/// - The event may be taken by value (`event: Event`, a clone) or by reference (`&Event`).
///
/// # `#[serial_event]` handlers
///
/// ```ignore
/// #[serial_event("account.entry", key = "account", partition_count = 12, retry = 2, queue_name = "q")]
/// async fn name(&self, [ctx: &Context,] event: Event) -> lymph::Result<()>
/// ```
///
/// lymph's `serial_event`: events whose body field `key` is equal are handled one at a time, in
/// the order they were emitted, by one instance of the service at a time. Events go through the
/// queue `<interface>-<handler>.push` into `partition_count` partitions (default 12, event types
/// `<handler>.<i>`, queues `<interface>-<handler>.<i>`), which the live instances share out by
/// their rank in the registry. See `lymph::interface::SerialSpec`.
///
/// # `#[task]` methods
///
/// ```ignore
/// #[task]                 // or #[task(sequential)]
/// async fn send_mail(&self, [ctx: &Context,] to: String, copies: u32) -> lymph::Result<()>
/// ```
///
/// lymph's `@task`: a background job with keyword arguments, like an RPC method's, that returns
/// nothing. The generated client's `apply_send_mail(to, copies)` (or
/// `proxy.apply("send_mail", &args)`) emits the event `lymph.tasks.<interface>.send_mail` with the
/// arguments as its body; only worker containers (`ContainerBuilder::worker(true)`, the `worker`
/// command) consume it, from the queue `<interface>.worker-send_mail`. A task is not callable by
/// RPC, and a task event whose body does not fit the arguments is rejected.
///
/// # Generated code
///
/// ```ignore
/// impl ::lymph::__private::Interface for Echo {
///     fn spec(&self) -> &'static InterfaceSpec { static SPEC: InterfaceSpec = ...; &SPEC }
///     fn call<'a>(&'a self, ctx: &'a Context, method: &'a str, body: &'a [u8])
///         -> BoxFuture<'a, Result<Vec<u8>, CallError>>;          // match on the method name
///     fn handle_event<'a>(&'a self, ctx: &'a Context, handler: &'a str, event: &'a Event)
///         -> BoxFuture<'a, Result<(), Error>>;                    // match on the handler name
/// }
///
/// /// A typed client of the `echo` service ...
/// #[derive(Clone, Debug)]
/// pub struct EchoClient { proxy: ::lymph::Proxy }
/// impl EchoClient {
///     pub fn new(proxy: Proxy) -> Self;
///     pub fn proxy(&self) -> &Proxy;
///     /// Returns `text` unchanged.
///     pub async fn echo(&self, text: String) -> ::lymph::Result<String>;  // proxy.call("echo", {text})
/// }
/// impl ::lymph::__private::Client for EchoClient { const SERVICE: &'static str = "echo"; ... }
/// ```
///
/// An unknown method gives `CallError::UnknownMethod`.
///
/// # Errors
///
/// A compile error, pointing at the offending tokens, when the attribute is not on an inherent,
/// non-generic `impl` block of a named type; an `#[rpc]`/`#[event]` method is not `async`, does
/// not take `&self`, has a parameter that is not a plain name, or lacks a return type; an
/// `#[event]` has no pattern or combines `once` and `broadcast`; an option is unknown or has
/// the wrong kind of value; or the version is not `X.Y.Z`.
///
/// [`InterfaceSpec::doc`]: https://docs.rs/lymph-core/latest/lymph_core/interface/struct.InterfaceSpec.html
#[proc_macro_attribute]
pub fn interface(args: TokenStream, item: TokenStream) -> TokenStream {
    interface::expand(args.into(), item.into()).into()
}

/// Runs an async test in lymph's deterministic simulator.
///
/// ```ignore
/// use lymph::testing::World;
///
/// #[lymph::test]
/// async fn orders_are_confirmed(world: World) {
///     // ...
/// }
///
/// #[lymph::test(seeds = 16, check_determinism)]
/// async fn survives_partitions(mut world: World) -> Result<(), Box<dyn std::error::Error>> {
///     // ...
///     Ok(())
/// }
/// ```
///
/// The function must be `async`, take exactly one parameter, the simulated world (any pattern:
/// `world`, `mut world`, `_world`), and return `()` or a `Result<(), E: Debug>`. Other
/// attributes (`#[ignore]`, `#[should_panic]`, doc comments) are kept. It expands to:
///
/// ```ignore
/// #[::core::prelude::v1::test]
/// fn survives_partitions() {
///     ::lymph::__private::Runner::new(
///         concat!(module_path!(), "::", "survives_partitions"),
///         env!("CARGO_PKG_NAME"),
///         env!("CARGO_CRATE_NAME"),
///     )
///     .seeds(16)
///     .check_determinism(true)
///     .run(|mut world: World| async move { /* the body */ })
/// }
/// ```
///
/// The runner reads `LYMPH_TEST_SEED`, `LYMPH_TEST_NUM` and `LYMPH_TEST_CHECK_DETERMINISM`
/// (which the options below set defaults for) and prints how to reproduce a failing seed.
///
/// # Options
///
/// - `seed = N`: run this one seed (a `u64`).
/// - `seeds = N`: run `N` seeds (at least 1). Cannot be combined with `seed`.
/// - `check_determinism`: run each seed twice and fail if the two runs differ.
/// - `crate = "path"`: where the `lymph` crate is, if it is not `::lymph`.
///
/// `lymph::__private::Runner` exists only with the `testing` feature of `lymph`, which test
/// crates enable under `[dev-dependencies]`.
///
/// # Errors
///
/// A compile error when the function is not `async`, is generic, takes no parameter or more
/// than one, already has a `#[test]` attribute, an option is unknown or has the wrong kind of
/// value, or `seed` and `seeds` are both given.
#[proc_macro_attribute]
pub fn test(args: TokenStream, item: TokenStream) -> TokenStream {
    test::expand(args.into(), item.into()).into()
}
