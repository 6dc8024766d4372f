//! The plugin class `lymph.plugins.otel:OpenTelemetryPlugin`: an
//! [`OtelPlugin`](lymph_transports::otel::OtelPlugin) from a configuration's `plugins:` entry.
//!
//! ```yaml
//! plugins:
//!   tracing:
//!     class: lymph.plugins.otel:OpenTelemetryPlugin
//!     endpoint: http://127.0.0.1:4318/v1/traces   # the default
//!     service_name: echo                          # default: the first interface
//! ```

use std::sync::Arc;

use lymph_core::{Error, Plugin, Value};
use lymph_transports::otel::{OtelConfig, OtelPlugin};

/// The keys the plugin's section may have.
const KEYS: [&str; 3] = ["class", "endpoint", "service_name"];

/// The plugin for the section `section`; an error names the key it is about.
pub(crate) fn plugin(section: &Value) -> Result<Arc<dyn Plugin>, String> {
    let mut config = OtelConfig::new();
    for (key, value) in section.as_map().into_iter().flatten() {
        let key = key.as_str().map_or_else(|| key.to_string(), str::to_owned);
        let key = key.as_str();
        match key {
            _ if value.is_nil() => {}
            "endpoint" => config = config.with_endpoint(string(key, value)?),
            "service_name" => config = config.with_service_name(string(key, value)?),
            "class" => {}
            _ => return Err(format!("{key}: unknown key, expected one of: {}", KEYS.join(", "))),
        }
    }
    match OtelPlugin::new(config) {
        Ok(plugin) => Ok(Arc::new(plugin)),
        Err(Error::Config(message)) => Err(message),
        Err(error) => Err(error.to_string()),
    }
}

fn string(key: &str, value: &Value) -> Result<String, String> {
    match value.as_str() {
        Some(text) if !text.trim().is_empty() => Ok(text.trim().to_owned()),
        Some(_) => Err(format!("{key}: must not be empty")),
        None => Err(format!("{key}: expected a string, got {value}")),
    }
}
