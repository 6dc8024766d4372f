//! The built-in `lymph` interface every container serves: `ping`, `status`, `inspect`,
//! `get_metrics`, `change_loglevel`.

use futures::future::BoxFuture;
use serde::Deserialize;

use crate::interface::{CallError, EventHandlerSpec, Interface, InterfaceSpec, MethodSpec};
use crate::{Context, Error, Event, Value, codec};

/// The version the built-in interface registers with, as Python lymph 0.15 does, so that
/// Python peers see the same cluster.
pub const LYMPH_VERSION: &str = "0.15.0";

static SPEC: InterfaceSpec = InterfaceSpec {
    name: "lymph",
    version: None,
    doc: "The built-in interface of every lymph container.",
    methods: &[
        MethodSpec { name: "ping", params: &["payload"], help: "Returns `payload`.", raises: &[] },
        MethodSpec { name: "status", params: &[], help: "Returns the container's endpoint and identity.", raises: &[] },
        MethodSpec { name: "inspect", params: &[], help: "Lists the methods of every interface.", raises: &[] },
        MethodSpec {
            name: "get_metrics",
            params: &[],
            help: "Lists the container's metrics as `[name, value, tags]`.",
            raises: &[],
        },
        MethodSpec {
            name: "change_loglevel",
            params: &["qualname", "loglevel", "period"],
            help: "Logs `qualname` (one logger name or `tracing` target: up to 128 letters, digits, `_`, `.`, `:`, `-`) at `loglevel` for `period` seconds (60; more than 0, at most 86400).",
            raises: &["ValueError"],
        },
    ],
    event_handlers: &[] as &[EventHandlerSpec],
};

/// The built-in interface.
#[derive(Debug)]
pub(crate) struct Builtin;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PingArgs {
    #[serde(default)]
    payload: Value,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NoArgs {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LogLevelArgs {
    qualname: String,
    loglevel: String,
    #[serde(default)]
    period: Option<f64>,
}

/// The longest name `lymph.change_loglevel` takes as its `qualname`, in bytes.
pub(crate) const MAX_QUALNAME_LEN: usize = 128;

/// The longest `period` `lymph.change_loglevel` takes: one day.
pub(crate) const MAX_LOGLEVEL_PERIOD: std::time::Duration = std::time::Duration::from_secs(24 * 60 * 60);

/// Checks that `qualname` names one logger (a `tracing` target such as `lymph::zmq`, or a Python
/// logger name such as `lymph.core`): 1 to [`MAX_QUALNAME_LEN`] bytes, each an ASCII letter or
/// digit, `_`, `.`, `:` or `-`. Nothing else, so that it cannot add filter directives (`,`, `=`,
/// `[`, spaces) or name every logger at once.
fn check_qualname(qualname: &str) -> Result<(), String> {
    if qualname.is_empty() {
        return Err("bad qualname: empty, expected a logger name".to_owned());
    }
    if qualname.len() > MAX_QUALNAME_LEN {
        return Err(format!("bad qualname: longer than {MAX_QUALNAME_LEN} bytes"));
    }
    if let Some(bad) = qualname.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-'))) {
        return Err(format!(
            "bad qualname {qualname:?}: {bad:?} is not allowed, a logger name has only letters, digits, `_`, `.`, `:` and `-`"
        ));
    }
    Ok(())
}

/// `period` seconds as a duration, when it is more than 0 and at most [`MAX_LOGLEVEL_PERIOD`].
fn log_period(period: f64) -> Result<std::time::Duration, String> {
    std::time::Duration::try_from_secs_f64(period)
        .ok()
        .filter(|d| !d.is_zero() && *d <= MAX_LOGLEVEL_PERIOD)
        .ok_or_else(|| {
            format!("bad period: {period}, expected more than 0 and at most {} seconds", MAX_LOGLEVEL_PERIOD.as_secs())
        })
}

fn args<T: serde::de::DeserializeOwned>(method: &str, body: &[u8]) -> Result<T, CallError> {
    codec::from_msgpack(body).map_err(|e| CallError::BadArguments(format!("lymph.{method}: {e}")))
}

fn encode(value: &Value) -> Vec<u8> {
    value.to_msgpack()
}

impl Interface for Builtin {
    fn spec(&self) -> &'static InterfaceSpec {
        &SPEC
    }

    fn call<'a>(
        &'a self,
        ctx: &'a Context,
        method: &'a str,
        body: &'a [u8],
    ) -> BoxFuture<'a, Result<Vec<u8>, CallError>> {
        Box::pin(async move {
            match method {
                "ping" => Ok(encode(&args::<PingArgs>(method, body)?.payload)),
                "status" => {
                    args::<NoArgs>(method, body)?;
                    Ok(encode(&Value::map([("endpoint", ctx.endpoint()), ("identity", ctx.identity())])))
                }
                "inspect" => {
                    args::<NoArgs>(method, body)?;
                    let mut methods = Vec::new();
                    for installed in ctx.shared().interfaces.values().flatten() {
                        let version = installed.version_string.as_deref().unwrap_or("None");
                        for method in installed.interface.spec().methods {
                            methods.push(Value::map([
                                ("name", Value::from(format!("{}.{}", installed.name, method.name))),
                                ("version", Value::from(version)),
                                ("params", Value::Array(method.params.iter().map(|p| Value::from(*p)).collect())),
                                ("help", Value::from(method.help)),
                            ]));
                        }
                    }
                    Ok(encode(&Value::map([("methods", Value::Array(methods))])))
                }
                "get_metrics" => {
                    args::<NoArgs>(method, body)?;
                    Ok(encode(&ctx.shared().metrics_series()))
                }
                "change_loglevel" => {
                    let LogLevelArgs { qualname, loglevel, period } = args(method, body)?;
                    check_qualname(&qualname)
                        .map_err(|reason| CallError::Failed(Error::raise("ValueError", reason)))?;
                    let period = log_period(period.unwrap_or(60.0))
                        .map_err(|reason| CallError::Failed(Error::raise("ValueError", reason)))?;
                    let level = loglevel.to_ascii_uppercase();
                    if !["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"].contains(&level.as_str()) {
                        return Err(CallError::Failed(Error::raise(
                            "ValueError",
                            format!("unknown loglevel: {loglevel}"),
                        )));
                    }
                    let Some(levels) = ctx.shared().log_levels.as_ref() else {
                        return Err(CallError::Failed(Error::raise(
                            "ValueError",
                            "this container's log levels cannot be changed",
                        )));
                    };
                    levels
                        .change(&qualname, &level, period)
                        .map_err(|reason| CallError::Failed(Error::raise("ValueError", reason)))?;
                    Ok(encode(&Value::Nil))
                }
                _ => Err(CallError::UnknownMethod),
            }
        })
    }

    fn handle_event<'a>(
        &'a self,
        _ctx: &'a Context,
        handler: &'a str,
        _event: &'a Event,
    ) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move { Err(Error::Config(format!("the lymph interface has no event handler {handler:?}"))) })
    }
}
