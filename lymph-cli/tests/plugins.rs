//! `plugins:` in a configuration: lymph's `{<name>: {class: ..., **kw}}`, each class made by a
//! factory of the [`Application`], and every mistake a configuration error naming its key.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use lymph_cli::config::{Config, ConfigError};
use lymph_cli::{AppError, Application, InstanceOptions};
use lymph_core::memory::MemoryNetwork;
use lymph_core::plugin::{ContainerInfo, Plugin};
use lymph_core::{ContainerBuilder, Value};

type Result<T = (), E = Box<dyn std::error::Error>> = std::result::Result<T, E>;

/// A configuration with embedded backends, no interfaces and `plugins` as given.
fn config(plugins: &str) -> Result<Config, ConfigError> {
    Config::from_yaml_str(
        &format!(
            "container:
  registry: {{class: 'lymph.discovery.static:StaticServiceRegistryHub'}}
  events: {{class: 'lymph.events.local:LocalEventSystem'}}
plugins:
{plugins}"
        ),
        None,
    )
}

/// A plugin that records the interfaces of the container it starts in.
#[derive(Debug, Default)]
struct Audit {
    level: String,
    started: Mutex<Vec<String>>,
}

impl Plugin for Audit {
    fn name(&self) -> &str {
        "audit"
    }

    fn on_start(&self, container: &ContainerInfo<'_>) {
        self.started.lock().unwrap().push(container.interfaces.join(","));
    }
}

/// An application with the class `audit:Audit`, whose factory keeps the plugins it makes.
fn app(made: &Arc<Mutex<Vec<Arc<Audit>>>>) -> Application {
    let made = made.clone();
    Application::new("plugins").with_network(&MemoryNetwork::new()).plugin("audit:Audit", move |section: &Value| {
        let level = match section.get("level").and_then(Value::as_str) {
            None => "quiet".to_owned(),
            Some(level @ ("quiet" | "loud")) => level.to_owned(),
            Some(other) => return Err(format!("level: expected quiet or loud, got {other:?}")),
        };
        if section.get("fail").is_some() {
            return Err("the audit log is not writable".to_owned());
        }
        let plugin = Arc::new(Audit { level, ..Audit::default() });
        made.lock().unwrap().push(plugin.clone());
        Ok(plugin as Arc<dyn Plugin>)
    })
}

async fn build(app: &Application, plugins: &str) -> Result<ContainerBuilder, AppError> {
    app.container(&config(plugins)?, &InstanceOptions::default()).await
}

/// The error a configuration that must fail gives.
async fn error(app: &Application, plugins: &str) -> String {
    match build(app, plugins).await {
        Ok(_) => panic!("expected an error for {plugins:?}"),
        Err(error) => error.to_string(),
    }
}

#[tokio::test]
async fn a_configured_plugin_gets_its_section_and_sees_the_container_start() -> Result {
    let made = Arc::default();
    let app = app(&made);
    assert_eq!(app.plugin_classes().filter(|c| *c == "audit:Audit").count(), 1);
    let container = build(&app, "  audit: {class: 'audit:Audit', level: loud}\n").await?.start().await?;
    let plugins = made.lock().unwrap().clone();
    assert_eq!(plugins.len(), 1, "one plugin per container");
    assert_eq!(plugins[0].level, "loud");
    assert_eq!(*plugins[0].started.lock().unwrap(), ["lymph"]);
    container.stop().await;
    Ok(())
}

#[tokio::test]
async fn plugin_mistakes_are_configuration_errors_naming_the_key() {
    let app = app(&Arc::default());
    let unknown = error(&app, "  audit: {class: 'nope:Nope'}\n").await;
    assert!(unknown.starts_with("plugins.audit.class: unknown plugin class \"nope:Nope\""), "{unknown}");
    assert!(unknown.contains("audit:Audit"), "the known classes are listed: {unknown}");

    let missing = error(&app, "  audit: {level: loud}\n").await;
    assert!(missing.ends_with("plugins.audit.class is missing"), "{missing}");
    let not_a_mapping = error(&app, "  audit: 3\n").await;
    assert!(not_a_mapping.contains("plugins.audit: expected a mapping"), "{not_a_mapping}");

    let refused = error(&app, "  audit: {class: 'audit:Audit', level: shouty}\n").await;
    assert_eq!(refused, "plugins.audit.level: expected quiet or loud, got \"shouty\"");
    let refused = error(&app, "  audit: {class: 'audit:Audit', fail: true}\n").await;
    assert_eq!(refused, "plugins.audit: the audit log is not writable");
}

#[tokio::test]
async fn lymph_instance_exits_with_3_on_a_bad_plugin() -> Result {
    let path = std::env::temp_dir().join(format!("lymph-plugins-{}.yml", std::process::id()));
    std::fs::write(
        &path,
        "container:
  registry: {class: 'lymph.discovery.static:StaticServiceRegistryHub'}
  events: {class: 'lymph.events.local:LocalEventSystem'}
plugins:
  audit: {class: 'nope:Nope'}
",
    )?;
    let _remove = Remove(path.clone());
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let args = ["plugins", "instance", "-c", path.to_str().unwrap(), "--isolated"];
    let code = app(&Arc::default()).execute(args, &mut out, &mut err).await;
    let err = String::from_utf8(err)?;
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("plugins.audit.class: unknown plugin class"), "{err}");
    Ok(())
}

struct Remove(PathBuf);

impl Drop for Remove {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[cfg(feature = "otel")]
#[tokio::test]
async fn the_otel_class_builds_and_checks_its_keys() -> Result {
    let app = Application::new("otel").with_network(&MemoryNetwork::new());
    assert!(app.plugin_classes().any(|c| c == lymph_cli::config::OTEL_PLUGIN));
    let otel = |rest: &str| format!("  tracing:\n    class: lymph.plugins.otel:OpenTelemetryPlugin\n{rest}");
    build(&app, &otel("")).await?;
    build(&app, &otel("    endpoint: http://127.0.0.1:4318/v1/traces\n    service_name: echo\n")).await?;
    build(&app, &otel("    endpoint: http://collector:4318\n")).await?;

    let bad = error(&app, &otel("    endpoint: ftp://collector/v1/traces\n")).await;
    assert!(bad.starts_with("plugins.tracing.endpoint: not an http:// URL"), "{bad}");
    let https = error(&app, &otel("    endpoint: https://collector:4318/v1/traces\n")).await;
    assert!(https.starts_with("plugins.tracing.endpoint: https is not supported"), "{https}");
    let number = error(&app, &otel("    endpoint: 4318\n")).await;
    assert_eq!(number, "plugins.tracing.endpoint: expected a string, got 4318");
    let empty = error(&app, &otel("    service_name: ''\n")).await;
    assert_eq!(empty, "plugins.tracing.service_name: must not be empty");
    let unknown = error(&app, &otel("    colour: red\n")).await;
    assert_eq!(unknown, "plugins.tracing.colour: unknown key, expected one of: class, endpoint, service_name");
    Ok(())
}

#[cfg(not(feature = "otel"))]
#[tokio::test]
async fn without_the_otel_feature_the_otel_class_is_unknown() {
    let app = Application::new("plain").with_network(&MemoryNetwork::new());
    let unknown = error(&app, "  tracing: {class: 'lymph.plugins.otel:OpenTelemetryPlugin'}\n").await;
    assert!(unknown.starts_with("plugins.tracing.class: unknown plugin class"), "{unknown}");
    assert!(unknown.ends_with("this application has: none"), "{unknown}");
}
