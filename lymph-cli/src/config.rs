//! Loading the `.lymph.yml` files written for Python lymph 0.15.
//!
//! [`Config`] is the loaded YAML tree, with lymph's interpolation applied when the file is read:
//!
//! - `$(env.NAME)` is the environment variable `NAME`; a missing one is an error naming the key
//!   and the variable.
//! - `$(var.a.b)` is the key `a.b` of the vars file (`--vars` or `LYMPH_VARS`); a missing one is
//!   null, as in lymph.
//! - A string that is exactly one placeholder becomes the value itself (a number stays a number,
//!   a mapping a mapping); a placeholder inside a longer string is replaced by its text, as
//!   Python's `str()` writes it (`None`, `True`, `1.5`).
//!
//! A string `dep:<name>` stands for `dependencies.<name>`: [`Config::get`] and the typed views
//! follow it. The deprecated top-level `registry:` and `event_system:` sections are moved into
//! `container.registry` and `container.events`, with a warning, as lymph does.
//!
//! The typed views are what an application needs to build a container:
//! [`Config::container`] ([`ContainerConfig`], with its [`RegistryConfig`] and
//! [`EventsConfig`]), [`Config::interfaces`] ([`InterfaceConfig`]) and [`Config::plugins`]
//! ([`PluginConfig`]).
//!
//! ```
//! use lymph_cli::config::{Config, EventsConfig};
//!
//! let config = Config::from_yaml_str(
//!     "container:\n  registry: {class: 'lymph.discovery.static:StaticServiceRegistryHub'}\n  events: {class: 'lymph.events.local:LocalEventSystem'}\ninterfaces:\n  echo: {class: 'echo:Echo'}\n",
//!     None,
//! )?;
//! assert!(matches!(config.container()?.events, EventsConfig::Local));
//! assert_eq!(config.interfaces()?[0].class, "echo:Echo");
//! # Ok::<(), lymph_cli::config::ConfigError>(())
//! ```
//!
//! # Differences from Python lymph
//!
//! - The YAML parser speaks YAML 1.2: `yes`, `no`, `on` and `off` are strings, not booleans.
//! - A placeholder inside a longer string whose variable is missing is an error (lymph's code
//!   there returns the error instead of raising it, which then fails inside `re.sub`).
//! - Placeholders in the vars file itself are left as written.
//!
//! [`Config`]: crate::config::Config
//! [`Config::get`]: crate::config::Config::get
//! [`Config::container`]: crate::config::Config::container
//! [`Config::interfaces`]: crate::config::Config::interfaces
//! [`ContainerConfig`]: crate::config::ContainerConfig
//! [`RegistryConfig`]: crate::config::RegistryConfig
//! [`EventsConfig`]: crate::config::EventsConfig
//! [`InterfaceConfig`]: crate::config::InterfaceConfig
//! [`Config::plugins`]: crate::config::Config::plugins
//! [`PluginConfig`]: crate::config::PluginConfig

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use lymph_core::Value;
use lymph_core::version::parse_interface_key;

/// The file read when neither `--config` nor `LYMPH_CONFIG` names one.
pub const DEFAULT_CONFIG_FILE: &str = ".lymph.yml";

/// The ZooKeeper registry class.
pub const ZOOKEEPER_REGISTRY: &str = "lymph.discovery.zookeeper:ZookeeperServiceRegistry";
/// The kazoo client class a ZooKeeper registry's `zkclient` names.
pub const KAZOO_CLIENT: &str = "kazoo.client:KazooClient";
/// The RabbitMQ (kombu) event system class.
pub const KOMBU_EVENTS: &str = "lymph.events.kombu:KombuEventSystem";
/// The in-process event system class.
pub const LOCAL_EVENTS: &str = "lymph.events.local:LocalEventSystem";
/// The event system class that drops every event.
pub const NULL_EVENTS: &str = "lymph.events.null:NullEventSystem";

/// The OpenTelemetry plugin's class (feature `otel`): `plugins.<name>.class`.
pub const OTEL_PLUGIN: &str = "lymph.plugins.otel:OpenTelemetryPlugin";

/// Every registry class [`Config::container`] knows.
pub const REGISTRY_CLASSES: &[&str] = &[
    ZOOKEEPER_REGISTRY,
    "lymph.discovery.static:StaticServiceRegistryHub",
    "lymph.discovery.static:StaticServiceRegistry",
];
/// Every event system class [`Config::container`] knows.
pub const EVENTS_CLASSES: &[&str] = &[KOMBU_EVENTS, LOCAL_EVENTS, NULL_EVENTS];

/// The ZooKeeper hosts kazoo connects to when none are configured.
const DEFAULT_ZOOKEEPER_HOSTS: &str = "127.0.0.1:2181";
/// The exchange lymph publishes to when none is configured.
const DEFAULT_EXCHANGE: &str = "lymph";
/// The sections of `LYMPH_NODE_CONFIG` that lymph merges into the service's configuration.
const NODE_SECTIONS: [&str; 5] = ["container", "registry", "event_system", "plugins", "dependencies"];
/// How many `dep:` references are followed in a row before giving up (a cycle).
const MAX_DEPENDENCY_HOPS: usize = 16;

/// The longest duration a configuration key takes (timeouts, intervals): one year.
const MAX_SECONDS: Duration = Duration::from_secs(365 * 24 * 60 * 60);
/// The name errors use for a configuration that was not read from a file.
const STRING_SOURCE: &str = "<string>";

// ---------------------------------------------------------------------------------------------
// Errors

/// Why a configuration could not be loaded or read. Every error names the file and the key path.
#[derive(Debug)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    Read {
        /// The file.
        file: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid YAML, or its top level is not a mapping.
    Syntax {
        /// The file.
        file: String,
        /// The line (1-based), when the parser knows it.
        line: Option<usize>,
        /// What the parser said.
        message: String,
    },
    /// `$(env.NAME)` names a variable that is not set.
    MissingEnv {
        /// The file.
        file: String,
        /// The key path whose value holds the placeholder, e.g. `container.events.hostname`.
        key: String,
        /// The environment variable.
        variable: String,
    },
    /// A key lymph requires is missing, e.g. `container.registry` or an interface's `class`.
    Missing {
        /// The file.
        file: String,
        /// The missing key path.
        key: String,
    },
    /// A `class` that lymph-rs does not implement.
    UnknownClass {
        /// The file.
        file: String,
        /// The key path of the `class` entry.
        key: String,
        /// The class as written.
        class: String,
        /// The classes accepted there.
        known: &'static [&'static str],
    },
    /// A value of the wrong type or form: a bad port, a bad interface version, a broken `dep:`.
    Invalid {
        /// The file.
        file: String,
        /// The key path of the value.
        key: String,
        /// What is wrong with it.
        message: String,
    },
}

impl ConfigError {
    /// The file the error is about (`<string>` for [`Config::from_yaml_str`] input).
    pub fn file(&self) -> &str {
        match self {
            ConfigError::Read { file, .. }
            | ConfigError::Syntax { file, .. }
            | ConfigError::MissingEnv { file, .. }
            | ConfigError::Missing { file, .. }
            | ConfigError::UnknownClass { file, .. }
            | ConfigError::Invalid { file, .. } => file,
        }
    }

    /// The key path the error is about, if it is about one.
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::Read { .. } | ConfigError::Syntax { .. } => None,
            ConfigError::MissingEnv { key, .. }
            | ConfigError::Missing { key, .. }
            | ConfigError::UnknownClass { key, .. }
            | ConfigError::Invalid { key, .. } => Some(key),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Read { file, source } => write!(f, "{file}: cannot read the file: {source}"),
            ConfigError::Syntax { file, line: Some(line), message } => {
                write!(f, "{file}: line {line}: invalid YAML: {message}")
            }
            ConfigError::Syntax { file, line: None, message } => write!(f, "{file}: invalid YAML: {message}"),
            ConfigError::MissingEnv { file, key, variable } => {
                write!(f, "{file}: {key}: environment variable {variable} is not set")
            }
            ConfigError::Missing { file, key } => write!(f, "{file}: {key} is missing"),
            ConfigError::UnknownClass { file, key, class, known } => {
                write!(f, "{file}: {key}: unknown class {class:?}, expected one of: {}", known.join(", "))
            }
            ConfigError::Invalid { file, key, message } => write!(f, "{file}: {key}: {message}"),
        }
    }
}

impl std::error::Error for ConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ConfigError::Read { source, .. } => Some(source),
            _ => None,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Loading

/// Where `$(env.NAME)` and the `LYMPH_*` variables come from.
#[derive(Debug, Clone, Default)]
enum Env {
    /// The process environment.
    #[default]
    Process,
    /// A fixed set of variables, for tests and embedding.
    Fixed(HashMap<String, String>),
}

impl Env {
    fn var(&self, name: &str) -> Option<String> {
        match self {
            Env::Process => std::env::var_os(name).map(|value| value.to_string_lossy().into_owned()),
            Env::Fixed(vars) => vars.get(name).cloned(),
        }
    }

    /// A variable naming a file; unset and empty are both `None`.
    fn path(&self, name: &str) -> Option<PathBuf> {
        self.var(name).filter(|value| !value.is_empty()).map(PathBuf::from)
    }
}

/// Loads configurations with explicit settings: a vars file, a node configuration, and the
/// environment to read. [`Config::load`] and friends are shortcuts over it.
#[derive(Debug, Clone, Default)]
pub struct ConfigLoader {
    vars: Option<PathBuf>,
    node_config: Option<PathBuf>,
    env: Env,
}

impl ConfigLoader {
    /// A loader with no vars file and no node configuration, reading the process environment.
    pub fn new() -> Self {
        Self::default()
    }

    /// The vars file that provides `$(var.*)`.
    pub fn vars(mut self, path: impl Into<PathBuf>) -> Self {
        self.vars = Some(path.into());
        self
    }

    /// A node configuration (lymph's `LYMPH_NODE_CONFIG`): its sections `container`, `registry`,
    /// `event_system`, `plugins` and `dependencies` are read first, and each section of the
    /// service's file is then merged over them key by key.
    pub fn node_config(mut self, path: impl Into<PathBuf>) -> Self {
        self.node_config = Some(path.into());
        self
    }

    /// Reads `$(env.*)` and the `LYMPH_*` variables from `vars` instead of the process
    /// environment.
    pub fn env<K, V>(mut self, vars: impl IntoIterator<Item = (K, V)>) -> Self
    where
        K: Into<String>,
        V: Into<String>,
    {
        self.env = Env::Fixed(vars.into_iter().map(|(k, v)| (k.into(), v.into())).collect());
        self
    }

    /// The configuration file lymph reads: `cli` (`--config`), else `LYMPH_CONFIG`, else
    /// `.lymph.yml`.
    pub fn resolve_path(&self, cli: Option<&Path>) -> PathBuf {
        cli.map(Path::to_path_buf)
            .or_else(|| self.env.path("LYMPH_CONFIG"))
            .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG_FILE))
    }

    /// The vars file lymph reads: `cli` (`--vars`), else `LYMPH_VARS`, else none.
    pub fn resolve_vars(&self, cli: Option<&Path>) -> Option<PathBuf> {
        cli.map(Path::to_path_buf).or_else(|| self.env.path("LYMPH_VARS"))
    }

    /// Loads the configuration the way the `lymph` command line does: the file from
    /// [`resolve_path`](Self::resolve_path), vars from [`resolve_vars`](Self::resolve_vars), the
    /// node configuration from `LYMPH_NODE_CONFIG`, `container.ip` defaulting to `LYMPH_NODE_IP`
    /// (else `127.0.0.1`), and `container.service_name` defaulting to `LYMPH_SERVICE_NAME`.
    /// The loader's own vars file and node configuration, if set, take precedence.
    ///
    /// # Errors
    ///
    /// As [`load`](Self::load).
    pub fn load_cli(&self, config: Option<&Path>, vars: Option<&Path>) -> Result<Config, ConfigError> {
        let loader = ConfigLoader {
            vars: self.vars.clone().or_else(|| self.resolve_vars(vars)),
            node_config: self.node_config.clone().or_else(|| self.env.path("LYMPH_NODE_CONFIG")),
            env: self.env.clone(),
        };
        let mut config = loader.load(self.resolve_path(config))?;
        if config.get_raw("container.ip").is_none_or(Value::is_nil) {
            let ip = self.env.var("LYMPH_NODE_IP").unwrap_or_else(|| "127.0.0.1".to_owned());
            set_path(&mut config.root, &["container", "ip"], Value::Str(ip));
        }
        if let Some(name) = self.env.var("LYMPH_SERVICE_NAME")
            && config.get_raw("container.service_name").is_none_or(Value::is_nil)
        {
            set_path(&mut config.root, &["container", "service_name"], Value::Str(name));
        }
        Ok(config)
    }

    /// Loads the configuration file at `path`.
    ///
    /// # Errors
    ///
    /// When a file cannot be read or is not YAML with a mapping at the top, or when a
    /// `$(env.NAME)` placeholder names a variable that is not set.
    pub fn load(&self, path: impl AsRef<Path>) -> Result<Config, ConfigError> {
        let path = path.as_ref();
        let file = path.display().to_string();
        let text = read(path)?;
        self.build(&file, &text)
    }

    /// Loads a configuration from YAML text; errors name the file `<string>`.
    ///
    /// # Errors
    ///
    /// As [`load`](Self::load).
    pub fn from_yaml_str(&self, text: &str) -> Result<Config, ConfigError> {
        self.build(STRING_SOURCE, text)
    }

    fn build(&self, file: &str, text: &str) -> Result<Config, ConfigError> {
        let vars = match &self.vars {
            Some(path) => parse_yaml(&path.display().to_string(), &read(path)?)?,
            None => Value::Map(Vec::new()),
        };
        let interpolation = Interpolation { env: &self.env, vars: &vars };
        let mut root = Value::Map(vec![(Value::from("container"), Value::Map(Vec::new()))]);
        if let Some(node_path) = &self.node_config {
            let node_file = node_path.display().to_string();
            let node = interpolation.apply(&node_file, parse_yaml(&node_file, &read(node_path)?)?)?;
            merge_sections(&mut root, node, Some(&NODE_SECTIONS));
        }
        let values = interpolation.apply(file, parse_yaml(file, text)?)?;
        merge_sections(&mut root, values, None);
        move_deprecated(file, &mut root);
        Ok(Config { file: file.to_owned(), root })
    }
}

fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::Read { file: path.display().to_string(), source })
}

/// Parses YAML into a [`Value`] mapping; an empty document is an empty mapping.
fn parse_yaml(file: &str, text: &str) -> Result<Value, ConfigError> {
    let syntax = |error: serde_norway::Error| ConfigError::Syntax {
        file: file.to_owned(),
        line: error.location().map(|location| location.line()),
        message: error.to_string(),
    };
    let mut yaml: serde_norway::Value = serde_norway::from_str(text).map_err(syntax)?;
    yaml.apply_merge().map_err(syntax)?;
    match from_yaml(yaml) {
        Value::Nil => Ok(Value::Map(Vec::new())),
        map @ Value::Map(_) => Ok(map),
        _ => Err(ConfigError::Syntax {
            file: file.to_owned(),
            line: None,
            message: "the top level must be a mapping".to_owned(),
        }),
    }
}

/// Converts a YAML value; tags (`!foo`) are dropped, keeping the tagged value.
fn from_yaml(yaml: serde_norway::Value) -> Value {
    use serde_norway::Value as Yaml;
    match yaml {
        Yaml::Null => Value::Nil,
        Yaml::Bool(b) => Value::Bool(b),
        Yaml::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => Value::Int(i),
            (None, Some(u), _) => Value::UInt(u),
            (None, None, Some(x)) => Value::F64(x),
            (None, None, None) => Value::Nil,
        },
        Yaml::String(s) => Value::Str(s),
        Yaml::Sequence(items) => Value::Array(items.into_iter().map(from_yaml).collect()),
        Yaml::Mapping(map) => Value::Map(map.into_iter().map(|(k, v)| (from_yaml(k), from_yaml(v))).collect()),
        Yaml::Tagged(tagged) => from_yaml(tagged.value),
    }
}

/// Merges the top-level sections of `values` into `root` as lymph's `Configuration.load` does:
/// a mapping section is updated key by key, anything else replaces the section.
fn merge_sections(root: &mut Value, values: Value, only: Option<&[&str]>) {
    let Value::Map(sections) = values else { return };
    for (section, value) in sections {
        let Some(name) = section.as_str() else { continue };
        if only.is_some_and(|only| !only.contains(&name)) {
            continue;
        }
        match (map_entry_mut(root, name), value) {
            (Some(Value::Map(existing)), Value::Map(entries)) => {
                for (key, value) in entries {
                    match existing.iter_mut().find(|(k, _)| *k == key) {
                        Some((_, slot)) => *slot = value,
                        None => existing.push((key, value)),
                    }
                }
            }
            (_, value) => set_path(root, &[name], value),
        }
    }
}

/// Moves the deprecated top-level `registry` and `event_system` into the container section.
fn move_deprecated(file: &str, root: &mut Value) {
    for (old, new) in [("registry", "registry"), ("event_system", "events")] {
        if let Some(value) = remove_entry(root, old) {
            tracing::warn!(
                target: lymph_core::TRACING_TARGET,
                "{file}: top-level `{old}` is deprecated, use `container.{new}` instead"
            );
            set_path(root, &["container", new], value);
        }
    }
}

fn map_entry_mut<'a>(map: &'a mut Value, key: &str) -> Option<&'a mut Value> {
    match map {
        Value::Map(entries) => entries.iter_mut().rev().find(|(k, _)| k.as_str() == Some(key)).map(|(_, v)| v),
        _ => None,
    }
}

fn remove_entry(map: &mut Value, key: &str) -> Option<Value> {
    let Value::Map(entries) = map else { return None };
    let index = entries.iter().rposition(|(k, _)| k.as_str() == Some(key))?;
    Some(entries.remove(index).1)
}

/// Sets `path` in `root`, turning whatever is in the way into mappings (lymph's `set`).
fn set_path(root: &mut Value, path: &[&str], value: Value) {
    let Some((last, parents)) = path.split_last() else { return };
    let mut current = root;
    for key in parents {
        if !matches!(map_entry_mut(current, key), Some(Value::Map(_))) {
            set_path(current, &[key], Value::Map(Vec::new()));
        }
        let Some(next) = map_entry_mut(current, key) else { return };
        current = next;
    }
    if !matches!(current, Value::Map(_)) {
        *current = Value::Map(Vec::new());
    }
    match map_entry_mut(current, last) {
        Some(slot) => *slot = value,
        None => {
            if let Value::Map(entries) = current {
                entries.push((Value::from(*last), value));
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Interpolation

/// lymph's `$(namespace.name)` substitution, over `env` and `var`.
struct Interpolation<'a> {
    env: &'a Env,
    vars: &'a Value,
}

/// One `$(namespace.name)` in a string, at `start..end`.
#[derive(Debug)]
struct Placeholder<'t> {
    start: usize,
    end: usize,
    namespace: &'t str,
    name: &'t str,
}

impl Interpolation<'_> {
    fn apply(&self, file: &str, value: Value) -> Result<Value, ConfigError> {
        self.walk(file, value, &mut Vec::new())
    }

    fn walk(&self, file: &str, value: Value, path: &mut Vec<String>) -> Result<Value, ConfigError> {
        match value {
            Value::Map(entries) => {
                let mut out = Vec::with_capacity(entries.len());
                for (key, value) in entries {
                    path.push(key_text(&key));
                    let value = self.walk(file, value, path);
                    path.pop();
                    out.push((key, value?));
                }
                Ok(Value::Map(out))
            }
            Value::Array(items) => {
                let mut out = Vec::with_capacity(items.len());
                for (index, item) in items.into_iter().enumerate() {
                    path.push(index.to_string());
                    let item = self.walk(file, item, path);
                    path.pop();
                    out.push(item?);
                }
                Ok(Value::Array(out))
            }
            Value::Str(text) => self.substitute(file, text, path),
            other => Ok(other),
        }
    }

    fn substitute(&self, file: &str, text: String, path: &[String]) -> Result<Value, ConfigError> {
        let Some(first) = find_placeholder(&text, 0) else { return Ok(Value::Str(text)) };
        if first.start == 0 && first.end == text.len() {
            return self.lookup(file, &first, path);
        }
        let mut out = String::with_capacity(text.len());
        let mut copied = 0;
        let mut next = Some(first);
        while let Some(placeholder) = next {
            out.push_str(&text[copied..placeholder.start]);
            python_str(&mut out, &self.lookup(file, &placeholder, path)?);
            copied = placeholder.end;
            next = find_placeholder(&text, copied);
        }
        out.push_str(&text[copied..]);
        Ok(Value::Str(out))
    }

    fn lookup(&self, file: &str, placeholder: &Placeholder<'_>, path: &[String]) -> Result<Value, ConfigError> {
        match placeholder.namespace {
            "env" => self.env.var(placeholder.name).map(Value::Str).ok_or_else(|| ConfigError::MissingEnv {
                file: file.to_owned(),
                key: path.join("."),
                variable: placeholder.name.to_owned(),
            }),
            "var" => Ok(lookup_path(self.vars, placeholder.name).cloned().unwrap_or(Value::Nil)),
            namespace => Err(ConfigError::Invalid {
                file: file.to_owned(),
                key: path.join("."),
                message: format!("unknown namespace {namespace:?} in a $(...) placeholder, expected env or var"),
            }),
        }
    }
}

/// The first `$(namespace.name)` at or after byte `from`: lymph's `\$\((\w+)\.([\w.-]+)\)`.
fn find_placeholder(text: &str, from: usize) -> Option<Placeholder<'_>> {
    let is_word = |c: char| c.is_alphanumeric() || c == '_';
    let mut search = from;
    while let Some(offset) = text.get(search..)?.find("$(") {
        let start = search + offset;
        let body = &text[start + 2..];
        let namespace_len = body.find(|c: char| !is_word(c)).unwrap_or(body.len());
        let rest = &body[namespace_len..];
        if namespace_len > 0
            && let Some(rest) = rest.strip_prefix('.')
        {
            let name_len = rest.find(|c: char| !(is_word(c) || c == '.' || c == '-')).unwrap_or(rest.len());
            if name_len > 0 && rest[name_len..].starts_with(')') {
                let end = start + 2 + namespace_len + 1 + name_len + 1;
                return Some(Placeholder { start, end, namespace: &body[..namespace_len], name: &rest[..name_len] });
            }
        }
        search = start + 1;
    }
    None
}

/// Appends `value` as Python's `str()` writes it.
fn python_str(out: &mut String, value: &Value) {
    match value {
        Value::Str(s) => out.push_str(s),
        other => python_repr(out, other),
    }
}

/// Appends `value` as Python's `repr()` writes it (close enough for config values).
fn python_repr(out: &mut String, value: &Value) {
    use std::fmt::Write as _;
    let float = |out: &mut String, x: f64| {
        if x.is_nan() {
            out.push_str("nan");
        } else if x.is_infinite() {
            out.push_str(if x > 0.0 { "inf" } else { "-inf" });
        } else {
            let _ = write!(out, "{x:?}");
        }
    };
    match value {
        Value::Nil => out.push_str("None"),
        Value::Bool(true) => out.push_str("True"),
        Value::Bool(false) => out.push_str("False"),
        Value::Int(n) => {
            let _ = write!(out, "{n}");
        }
        Value::UInt(n) => {
            let _ = write!(out, "{n}");
        }
        Value::F32(x) => float(out, f64::from(*x)),
        Value::F64(x) => float(out, *x),
        Value::Str(s) => {
            let _ = write!(out, "'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"));
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                python_repr(out, item);
            }
            out.push(']');
        }
        Value::Map(entries) => {
            out.push('{');
            for (i, (key, value)) in entries.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                python_repr(out, key);
                out.push_str(": ");
                python_repr(out, value);
            }
            out.push('}');
        }
        other => {
            let _ = write!(out, "{other}");
        }
    }
}

/// A map key as it appears in a key path.
fn key_text(key: &Value) -> String {
    match key.as_str() {
        Some(s) => s.to_owned(),
        None => key.to_string(),
    }
}

/// The value at the dotted `path` under `root`, with no `dep:` resolution.
fn lookup_path<'a>(root: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(root, |value, key| value.get(key))
}

// ---------------------------------------------------------------------------------------------
// The configuration

/// A loaded lymph configuration: the YAML tree, interpolated, with deprecated sections moved.
#[derive(Debug, Clone)]
pub struct Config {
    file: String,
    root: Value,
}

impl Config {
    /// Loads the file at `path`, with `$(var.*)` from the `vars` file if given. This reads no
    /// `LYMPH_*` variable; [`Config::from_cli`] does.
    ///
    /// # Errors
    ///
    /// When a file cannot be read or is not YAML with a mapping at the top, or when a
    /// `$(env.NAME)` placeholder names a variable that is not set.
    pub fn load(path: impl AsRef<Path>, vars: Option<&Path>) -> Result<Config, ConfigError> {
        loader(vars).load(path)
    }

    /// Loads a configuration from YAML text, with `$(var.*)` from the `vars` file if given.
    /// Errors name the file `<string>`.
    ///
    /// # Errors
    ///
    /// As [`Config::load`].
    pub fn from_yaml_str(text: &str, vars: Option<&Path>) -> Result<Config, ConfigError> {
        loader(vars).from_yaml_str(text)
    }

    /// Loads the configuration as the `lymph` command line does, given its `--config` and
    /// `--vars` options; see [`ConfigLoader::load_cli`].
    ///
    /// # Errors
    ///
    /// As [`Config::load`].
    pub fn from_cli(config: Option<&Path>, vars: Option<&Path>) -> Result<Config, ConfigError> {
        ConfigLoader::new().load_cli(config, vars)
    }

    /// The configuration file lymph reads: `cli` (`--config`), else `LYMPH_CONFIG`, else
    /// `.lymph.yml`.
    pub fn resolve_path(cli: Option<&Path>) -> PathBuf {
        ConfigLoader::new().resolve_path(cli)
    }

    /// The file this configuration was read from (`<string>` for YAML text).
    pub fn file(&self) -> &str {
        &self.file
    }

    /// The whole tree.
    pub fn root(&self) -> &Value {
        &self.root
    }

    /// The value at a dotted path such as `container.registry.class`, following `dep:<name>`
    /// strings to `dependencies.<name>` along the way and at the end. `None` when the path, or
    /// a dependency it goes through, does not exist.
    pub fn get(&self, path: &str) -> Option<&Value> {
        self.resolve(path).ok().flatten().map(|(value, _)| value)
    }

    /// The value at a dotted path, as written: `dep:` strings are not followed.
    pub fn get_raw(&self, path: &str) -> Option<&Value> {
        lookup_path(&self.root, path)
    }

    /// What the application needs to build its container, from `container:` (and the top-level
    /// `name`, the service name's fallback).
    ///
    /// # Errors
    ///
    /// When `container.registry` or `container.events` or their `class` is missing, a class is
    /// not one lymph-rs implements, or a value has the wrong type (a bad port, a negative
    /// timeout, a broken `dep:`).
    pub fn container(&self) -> Result<ContainerConfig, ConfigError> {
        let container = self.required_section("container")?;
        let connection = match container.section("rpc")? {
            Some(rpc) => match rpc.section("connection")? {
                Some(connection) => ConnectionTiming {
                    heartbeat_interval: connection.seconds("heartbeat_interval")?,
                    timeout: connection.seconds("timeout")?,
                    idle_timeout: connection.seconds("idle_timeout")?,
                },
                None => ConnectionTiming::default(),
            },
            None => ConnectionTiming::default(),
        };
        let monitoring_interval = match container.section("monitoring")? {
            Some(monitoring) => match monitoring.seconds("interval")? {
                Some(interval) if interval.is_zero() => {
                    return Err(monitoring
                        .invalid(&monitoring.key("interval"), "bad duration 0: expected a number of seconds > 0"));
                }
                interval => interval,
            },
            None => None,
        };
        let service_name = match container.string("service_name")? {
            Some(name) => Some(name),
            None => self.top().string("name")?,
        };
        Ok(ContainerConfig {
            ip: container.string("ip")?,
            port: container.port("port")?,
            service_name,
            registry: RegistryConfig::from_section(&container.required_section("registry")?)?,
            events: EventsConfig::from_section(&container.required_section("events")?)?,
            connection,
            monitoring_interval,
            max_message_size: container.size("max_message_size")?,
            max_queued_bytes: container.size("max_queued_bytes")?,
        })
    }

    /// The interfaces under `interfaces:`, in file order; none when the section is absent.
    ///
    /// # Errors
    ///
    /// When an interface key has a bad version (`name@X.Y.Z`), or an interface has no `class`.
    pub fn interfaces(&self) -> Result<Vec<InterfaceConfig>, ConfigError> {
        let Some(interfaces) = self.top().section("interfaces")? else {
            return Ok(Vec::new());
        };
        let Some(entries) = interfaces.value.as_map() else { return Ok(Vec::new()) };
        let mut out = Vec::with_capacity(entries.len());
        for (key, _) in entries {
            let key = key_text(key);
            let path = format!("{}.{key}", interfaces.path);
            let (name, version) = parse_interface_key(&key).map_err(|error| self.invalid(&path, error.to_string()))?;
            let Some(section) = interfaces.section(&key)? else {
                return Err(ConfigError::Missing { file: self.file.clone(), key: format!("{path}.class") });
            };
            let class = section.class()?.to_owned();
            let version = version.and(key.split_once('@')).map(|(_, version)| version.to_owned());
            out.push(InterfaceConfig { key, name, version, class, config: section.value.clone() });
        }
        Ok(out)
    }

    /// The plugins under `plugins:` (lymph's `{<name>: {class: ..., **kw}}`), in file order; none
    /// when the section is absent.
    ///
    /// # Errors
    ///
    /// When `plugins` or one of its entries is not a mapping, or an entry has no `class`.
    pub fn plugins(&self) -> Result<Vec<PluginConfig>, ConfigError> {
        let Some(plugins) = self.top().section("plugins")? else {
            return Ok(Vec::new());
        };
        let Some(entries) = plugins.value.as_map() else { return Ok(Vec::new()) };
        let mut out = Vec::with_capacity(entries.len());
        for (key, _) in entries {
            let key = key_text(key);
            let Some(section) = plugins.section(&key)? else {
                return Err(ConfigError::Missing {
                    file: self.file.clone(),
                    key: plugins.key(&format!("{key}.class")),
                });
            };
            let class = section.class()?.to_owned();
            out.push(PluginConfig { key, class, config: section.value.clone() });
        }
        Ok(out)
    }

    /// The value at `path`, following `dep:` strings, with the path it was found at.
    fn resolve(&self, path: &str) -> Result<Option<(&Value, String)>, ConfigError> {
        self.walk(path, 0)
    }

    fn walk(&self, path: &str, hops: usize) -> Result<Option<(&Value, String)>, ConfigError> {
        let mut current = (&self.root, String::new());
        for key in path.split('.') {
            let (value, at) = current;
            let Some(next) = value.get(key) else { return Ok(None) };
            let next_path = if at.is_empty() { key.to_owned() } else { format!("{at}.{key}") };
            current = self.follow(next, next_path, hops)?;
        }
        Ok(Some(current))
    }

    /// `value`, or the dependency it names if it is a `dep:<name>` string.
    fn follow<'a>(&'a self, value: &'a Value, path: String, hops: usize) -> Result<(&'a Value, String), ConfigError> {
        let Some(name) = value.as_str().and_then(|s| s.strip_prefix("dep:")) else { return Ok((value, path)) };
        if hops >= MAX_DEPENDENCY_HOPS {
            return Err(self.invalid(&path, format!("dep:{name}: dependencies refer to each other in a cycle")));
        }
        let target = format!("dependencies.{name}");
        match self.walk(&target, hops + 1)? {
            Some(found) => Ok(found),
            None => Err(self.invalid(&path, format!("dep:{name} refers to {target}, which is missing"))),
        }
    }

    fn invalid(&self, key: &str, message: String) -> ConfigError {
        ConfigError::Invalid { file: self.file.clone(), key: key.to_owned(), message }
    }

    /// The whole tree as a section.
    fn top(&self) -> Section<'_> {
        Section { config: self, path: String::new(), value: &self.root }
    }

    fn required_section(&self, path: &str) -> Result<Section<'_>, ConfigError> {
        self.top().required_section(path)
    }
}

fn loader(vars: Option<&Path>) -> ConfigLoader {
    match vars {
        Some(vars) => ConfigLoader::new().vars(vars),
        None => ConfigLoader::new(),
    }
}

/// A mapping in the configuration and the key path it was found at, for typed reading.
#[derive(Debug, Clone)]
struct Section<'a> {
    config: &'a Config,
    path: String,
    value: &'a Value,
}

impl<'a> Section<'a> {
    fn key(&self, key: &str) -> String {
        if self.path.is_empty() { key.to_owned() } else { format!("{}.{key}", self.path) }
    }

    /// The value under `key`, following `dep:`; null counts as absent.
    fn get(&self, key: &str) -> Result<Option<(&'a Value, String)>, ConfigError> {
        let Some(value) = self.value.get(key) else { return Ok(None) };
        let (value, path) = self.config.follow(value, self.key(key), 0)?;
        Ok((!value.is_nil()).then_some((value, path)))
    }

    fn invalid(&self, key: &str, message: impl Into<String>) -> ConfigError {
        self.config.invalid(key, message.into())
    }

    /// The mapping under `key`, if there is one.
    fn section(&self, key: &str) -> Result<Option<Section<'a>>, ConfigError> {
        match self.get(key)? {
            None => Ok(None),
            Some((value @ Value::Map(_), path)) => Ok(Some(Section { config: self.config, path, value })),
            Some((_, path)) => Err(self.invalid(&path, "expected a mapping")),
        }
    }

    fn required_section(&self, key: &str) -> Result<Section<'a>, ConfigError> {
        self.section(key)?.ok_or_else(|| ConfigError::Missing { file: self.config.file.clone(), key: self.key(key) })
    }

    /// The `class` entry.
    fn class(&self) -> Result<&'a str, ConfigError> {
        match self.get("class")? {
            Some((value, path)) => value.as_str().ok_or_else(|| self.invalid(&path, "expected a string")),
            None => Err(ConfigError::Missing { file: self.config.file.clone(), key: self.key("class") }),
        }
    }

    /// A string entry; numbers are taken as their text.
    fn string(&self, key: &str) -> Result<Option<String>, ConfigError> {
        match self.get(key)? {
            None => Ok(None),
            Some((Value::Str(s), _)) => Ok(Some(s.clone())),
            Some((value @ (Value::Int(_) | Value::UInt(_) | Value::F64(_) | Value::F32(_)), _)) => {
                Ok(Some(value.to_string()))
            }
            Some((_, path)) => Err(self.invalid(&path, "expected a string")),
        }
    }

    /// A string entry, or the first string of a list of them.
    fn first_string(&self, key: &str) -> Result<Option<String>, ConfigError> {
        match self.get(key)? {
            Some((Value::Array(items), path)) => match items.first() {
                Some(Value::Str(s)) => Ok(Some(s.clone())),
                _ => Err(self.invalid(&path, "expected a string or a list of strings")),
            },
            _ => self.string(key),
        }
    }

    fn bool(&self, key: &str) -> Result<Option<bool>, ConfigError> {
        match self.get(key)? {
            None => Ok(None),
            Some((Value::Bool(b), _)) => Ok(Some(*b)),
            Some((_, path)) => Err(self.invalid(&path, "expected true or false")),
        }
    }

    /// A port, as a number or a numeric string (lymph's `--port` sets a string).
    fn port(&self, key: &str) -> Result<Option<u16>, ConfigError> {
        let Some((value, path)) = self.get(key)? else { return Ok(None) };
        let port = match value {
            Value::Str(s) => s.trim().parse::<u16>().ok(),
            other => other.as_u64().and_then(|n| u16::try_from(n).ok()),
        };
        port.map(Some).ok_or_else(|| self.invalid(&path, format!("bad port {value}: expected 0 to 65535")))
    }

    /// A size in bytes, more than 0, as a number or a numeric string.
    fn size(&self, key: &str) -> Result<Option<usize>, ConfigError> {
        let Some((value, path)) = self.get(key)? else { return Ok(None) };
        let size = match value {
            Value::Str(s) => s.trim().parse::<u64>().ok(),
            other => other.as_u64(),
        };
        size.and_then(|n| usize::try_from(n).ok())
            .filter(|&n| n > 0)
            .map(Some)
            .ok_or_else(|| self.invalid(&path, format!("bad size {value}: expected a number of bytes > 0")))
    }

    /// A duration in seconds, as a number or a numeric string, from 0 to [`MAX_SECONDS`].
    fn seconds(&self, key: &str) -> Result<Option<Duration>, ConfigError> {
        let Some((value, path)) = self.get(key)? else { return Ok(None) };
        let seconds = match value {
            Value::Str(s) => s.trim().parse::<f64>().ok(),
            other => other.as_f64(),
        };
        seconds.and_then(|s| Duration::try_from_secs_f64(s).ok()).filter(|d| *d <= MAX_SECONDS).map(Some).ok_or_else(
            || {
                self.invalid(
                    &path,
                    format!("bad duration {value}: expected a number of seconds from 0 to {}", MAX_SECONDS.as_secs()),
                )
            },
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Typed views

/// The container settings: `container:` of a lymph configuration.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ContainerConfig {
    /// `container.ip`: the address to bind and advertise.
    pub ip: Option<String>,
    /// `container.port`: the RPC port; a random one when absent.
    pub port: Option<u16>,
    /// `container.service_name`, else the top-level `name`.
    pub service_name: Option<String>,
    /// `container.registry`.
    pub registry: RegistryConfig,
    /// `container.events`.
    pub events: EventsConfig,
    /// `container.rpc.connection`: heartbeat and liveness timing.
    pub connection: ConnectionTiming,
    /// `container.monitoring.interval`: how often the metrics stream pushes the container's
    /// metrics, in seconds (lymph-rs only; lymph pushes every 5 s).
    pub monitoring_interval: Option<Duration>,
    /// `container.max_message_size`: the largest RPC message, in bytes, a peer may send before
    /// its connection is closed (lymph-rs only; 64 MiB unless set).
    pub max_message_size: Option<usize>,
    /// `container.max_queued_bytes`: the most bytes that may wait to be written to one RPC peer
    /// before messages to it are dropped, as ZeroMQ's high-water mark (lymph-rs only; 16 MiB
    /// unless set).
    pub max_queued_bytes: Option<usize>,
}

/// The heartbeat and liveness timing of `container.rpc.connection`; what is absent keeps lymph's
/// default (see [`ConnectionConfig`](lymph_core::ConnectionConfig)).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConnectionTiming {
    /// `heartbeat_interval` (lymph: 1 s).
    pub heartbeat_interval: Option<Duration>,
    /// `timeout`: silence after which a peer is unresponsive (lymph: 3 s).
    pub timeout: Option<Duration>,
    /// `idle_timeout`: heartbeats only, for this long, make a peer idle (lymph: 10 s).
    pub idle_timeout: Option<Duration>,
}

impl ConnectionTiming {
    /// The connection settings: these values over lymph's defaults.
    pub fn to_connection_config(&self) -> lymph_core::ConnectionConfig {
        let defaults = lymph_core::ConnectionConfig::default();
        lymph_core::ConnectionConfig {
            heartbeat_interval: self.heartbeat_interval.unwrap_or(defaults.heartbeat_interval),
            timeout: self.timeout.unwrap_or(defaults.timeout),
            idle_timeout: self.idle_timeout.unwrap_or(defaults.idle_timeout),
        }
    }
}

/// The service registry: `container.registry`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RegistryConfig {
    /// `lymph.discovery.zookeeper:ZookeeperServiceRegistry`, with its kazoo client's settings.
    Zookeeper {
        /// Comma-separated `host:port` list, without the chroot.
        hosts: String,
        /// The chroot written after the hosts (`host:2181/chroot`) or as the registry's
        /// `chroot`; `None` means lymph's default, `/lymph`.
        chroot: Option<String>,
        /// The kazoo client's `timeout`: the ZooKeeper session timeout (kazoo: 10 s).
        session_timeout: Option<Duration>,
    },
    /// `lymph.discovery.static:StaticServiceRegistryHub`: an in-process registry.
    Static,
}

impl RegistryConfig {
    fn from_section(section: &Section<'_>) -> Result<Self, ConfigError> {
        match section.class()? {
            ZOOKEEPER_REGISTRY => Self::zookeeper(section),
            class if REGISTRY_CLASSES.contains(&class) => Ok(RegistryConfig::Static),
            class => Err(ConfigError::UnknownClass {
                file: section.config.file.clone(),
                key: section.key("class"),
                class: class.to_owned(),
                known: REGISTRY_CLASSES,
            }),
        }
    }

    /// `zkclient` is a kazoo client (a mapping, usually reached through `dep:`) or a hosts
    /// string; without it, `hosts` and `chroot` may sit on the registry itself (older lymph).
    fn zookeeper(section: &Section<'_>) -> Result<Self, ConfigError> {
        let (hosts, session_timeout) = match section.get("zkclient")? {
            Some((Value::Map(_), _)) => {
                let client = section.required_section("zkclient")?;
                match client.class()? {
                    KAZOO_CLIENT => {}
                    class => {
                        return Err(ConfigError::UnknownClass {
                            file: section.config.file.clone(),
                            key: client.key("class"),
                            class: class.to_owned(),
                            known: &[KAZOO_CLIENT],
                        });
                    }
                }
                (zookeeper_hosts(&client)?, client.seconds("timeout")?)
            }
            Some((Value::Str(hosts), _)) => (Some(hosts.clone()), None),
            Some((_, path)) => return Err(section.invalid(&path, "expected a kazoo client mapping or a hosts string")),
            None if section.get("hosts")?.is_some() => (zookeeper_hosts(section)?, None),
            None => {
                return Err(ConfigError::Missing { file: section.config.file.clone(), key: section.key("zkclient") });
            }
        };
        let hosts = hosts.unwrap_or_else(|| DEFAULT_ZOOKEEPER_HOSTS.to_owned());
        let (hosts, chroot) = match hosts.split_once('/') {
            Some((hosts, chroot)) => (hosts.to_owned(), (!chroot.is_empty()).then(|| format!("/{chroot}"))),
            None => (hosts, None),
        };
        let chroot = match chroot {
            Some(chroot) => Some(chroot),
            None => section.string("chroot")?,
        };
        Ok(RegistryConfig::Zookeeper { hosts, chroot, session_timeout })
    }
}

/// kazoo's `hosts`: a comma-separated string or a list of `host:port` strings.
fn zookeeper_hosts(section: &Section<'_>) -> Result<Option<String>, ConfigError> {
    match section.get("hosts")? {
        Some((Value::Array(items), path)) => items
            .iter()
            .map(|item| item.as_str().ok_or_else(|| section.invalid(&path, "expected a list of host:port strings")))
            .collect::<Result<Vec<_>, _>>()
            .map(|hosts| Some(hosts.join(","))),
        _ => section.string("hosts"),
    }
}

/// The event system: `container.events`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EventsConfig {
    /// `lymph.events.kombu:KombuEventSystem`: RabbitMQ.
    Kombu {
        /// The broker, as an AMQP URL: `hostname` when it is a URL, else built from kombu's
        /// `hostname`, `userid`, `password`, `port` and `virtual_host` (defaults `localhost`,
        /// `guest`, `guest`, 5672, `/`), e.g. `amqp://guest:guest@localhost:5672/%2f`.
        url: String,
        /// The topic exchange (lymph: `lymph`).
        exchange: String,
    },
    /// `lymph.events.local:LocalEventSystem`: in-process delivery.
    Local,
    /// `lymph.events.null:NullEventSystem`: events are dropped.
    Null,
}

impl EventsConfig {
    fn from_section(section: &Section<'_>) -> Result<Self, ConfigError> {
        match section.class()? {
            KOMBU_EVENTS => Self::kombu(section),
            LOCAL_EVENTS => Ok(EventsConfig::Local),
            NULL_EVENTS => Ok(EventsConfig::Null),
            class => Err(ConfigError::UnknownClass {
                file: section.config.file.clone(),
                key: section.key("class"),
                class: class.to_owned(),
                known: EVENTS_CLASSES,
            }),
        }
    }

    /// The broker URL from the keys kombu's `Connection` takes. As in kombu, a URL `hostname`
    /// wins over the separate keys, and of `a;b` failover alternates the first is used.
    fn kombu(section: &Section<'_>) -> Result<Self, ConfigError> {
        let exchange = section.string("exchange")?.unwrap_or_else(|| DEFAULT_EXCHANGE.to_owned());
        let transport = section.string("transport")?;
        let ssl = section.bool("ssl")?.unwrap_or(false);
        let hostname = section.first_string("hostname")?.unwrap_or_else(|| "localhost".to_owned());
        let hostname = hostname.split(';').next().unwrap_or_default().trim().to_owned();

        if let Some((scheme, rest)) = hostname.split_once("://") {
            let transport = transport.as_deref().unwrap_or(scheme);
            let key = section.key(if section.get("transport")?.is_some() { "transport" } else { "hostname" });
            let scheme = amqp_scheme(transport, ssl || scheme == "amqps")
                .ok_or_else(|| unsupported(section, &key, transport))?;
            return Ok(EventsConfig::Kombu { url: format!("{scheme}://{rest}"), exchange });
        }

        let scheme = match &transport {
            Some(transport) => {
                amqp_scheme(transport, ssl).ok_or_else(|| unsupported(section, &section.key("transport"), transport))?
            }
            None if ssl => "amqps",
            None => "amqp",
        };
        let port = match section.port("port")? {
            Some(port) => port,
            None if scheme == "amqps" => 5671,
            None => 5672,
        };
        let userid = section.string("userid")?.unwrap_or_else(|| "guest".to_owned());
        let password = section.string("password")?.unwrap_or_else(|| "guest".to_owned());
        let vhost = section.string("virtual_host")?.unwrap_or_else(|| "/".to_owned());
        let host =
            if hostname.contains(':') && !hostname.starts_with('[') { format!("[{hostname}]") } else { hostname };
        let url = format!(
            "{scheme}://{}:{}@{host}:{port}/{}",
            percent_encode(&userid),
            percent_encode(&password),
            percent_encode(&vhost)
        );
        Ok(EventsConfig::Kombu { url, exchange })
    }
}

/// The URL scheme for a kombu transport that speaks AMQP 0-9-1.
fn amqp_scheme(transport: &str, ssl: bool) -> Option<&'static str> {
    match transport {
        "amqp" | "pyamqp" | "librabbitmq" if ssl => Some("amqps"),
        "amqp" | "pyamqp" | "librabbitmq" => Some("amqp"),
        "amqps" => Some("amqps"),
        _ => None,
    }
}

fn unsupported(section: &Section<'_>, key: &str, transport: &str) -> ConfigError {
    section.invalid(
        key,
        format!("unsupported kombu transport {transport:?}: lymph-rs speaks AMQP (amqp, pyamqp, librabbitmq, amqps)"),
    )
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn percent_encode(text: &str) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            let _ = write!(out, "%{byte:02x}");
        }
    }
    out
}

/// One entry of `interfaces:`.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct InterfaceConfig {
    /// The key as written, e.g. `echo` or `echo@2.0.0`; what
    /// [`ContainerBuilder::interface_as`](lymph_core::ContainerBuilder::interface_as) takes.
    pub key: String,
    /// The interface name, e.g. `echo`.
    pub name: String,
    /// The version after `@`, as written, e.g. `2.0.0`.
    pub version: Option<String>,
    /// The `class`, e.g. `echo:Echo`.
    pub class: String,
    /// The whole mapping, `class` included: the interface's configuration.
    pub config: Value,
}

/// One entry of `plugins:`.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct PluginConfig {
    /// The plugin's name: its key under `plugins`.
    pub key: String,
    /// The `class`, e.g. [`OTEL_PLUGIN`].
    pub class: String,
    /// The whole mapping, `class` included: what the plugin's factory reads.
    pub config: Value,
}
