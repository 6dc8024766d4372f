//! A container's metrics, served by the built-in `lymph.get_metrics` in lymph's form: a list of
//! `[name, value, tags]`.
//!
//! The names, tags and meanings are listed on [`Container::metrics`](crate::Container::metrics).

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use crate::Value;

/// The upper bounds of the latency histograms' buckets, in milliseconds (then `+Inf`).
const BUCKETS_MS: [f64; 13] = [1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0];

/// The `subject` tag of the requests for a method their interface does not declare.
///
/// A subject that names a method has a `.` in it, so it never reads `unknown`.
pub(crate) const UNKNOWN_SUBJECT: &str = "unknown";

/// The `event_type` tag of an event of type `event_type` that `handler` (of the interface named
/// `interface`) handled: the first of the handler's patterns that matches it, the task's event
/// type for a task, else [`UNKNOWN_SUBJECT`]. Never the event's own type when that differs from
/// what the service subscribed to: a wildcard pattern matches types anyone can make up, and an
/// event's body may name any type whatever routing key it was published with, so that made-up
/// types add no series.
pub(crate) fn event_type_tag<'a>(
    handler: &'a crate::interface::EventHandlerSpec,
    interface: &str,
    event_type: &str,
) -> std::borrow::Cow<'a, str> {
    use std::borrow::Cow;
    if let Some(pattern) = handler.patterns.iter().find(|pattern| crate::event::topic_matches(pattern, event_type)) {
        return Cow::Borrowed(pattern);
    }
    if handler.task {
        let task = crate::interface::EventHandlerSpec::task_event_type(interface, handler.name);
        if task == event_type {
            return Cow::Owned(task);
        }
    }
    Cow::Borrowed(UNKNOWN_SUBJECT)
}

/// The HTTP methods the `method` tag of `http.requests` names; any other counts as `OTHER`.
const HTTP_METHODS: [&str; 9] = ["GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"];

/// One metric before the container's tags are added: name, value, own tags.
type Entry = (String, Value, Vec<(String, Value)>);

/// A latency histogram: how many durations fell at or below each bound.
#[derive(Debug, Default)]
struct Histogram {
    /// Per bucket, not cumulative; the last is `+Inf`.
    buckets: [u64; BUCKETS_MS.len() + 1],
    count: u64,
    sum_us: u64,
}

impl Histogram {
    fn record(&mut self, duration: Duration) {
        let us = u64::try_from(duration.as_micros()).unwrap_or(u64::MAX);
        #[allow(clippy::cast_precision_loss)]
        let ms = us as f64 / 1000.0;
        let bucket = BUCKETS_MS.iter().position(|bound| ms <= *bound).unwrap_or(BUCKETS_MS.len());
        self.buckets[bucket] += 1;
        self.count += 1;
        self.sum_us = self.sum_us.saturating_add(us);
    }

    /// The total of the recorded durations, in milliseconds.
    fn sum_ms(&self) -> Value {
        #[allow(clippy::cast_precision_loss)]
        Value::F64(self.sum_us as f64 / 1000.0)
    }

    /// `<name>_bucket` (cumulative, tag `le`), `<name>_sum` (ms) and `<name>_count`, each with `own` tags.
    fn push(&self, name: &str, own: &[(&str, Value)], series: &mut Vec<Entry>) {
        let tags = |extra: Option<String>| {
            let mut tags: Vec<(String, Value)> = own.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect();
            if let Some(le) = extra {
                tags.push(("le".to_owned(), Value::from(le)));
            }
            tags
        };
        let mut cumulative = 0;
        for (i, n) in self.buckets.iter().enumerate() {
            cumulative += n;
            let le = BUCKETS_MS.get(i).map_or_else(|| "+Inf".to_owned(), ToString::to_string);
            series.push((format!("{name}_bucket"), count(cumulative), tags(Some(le))));
        }
        series.push((format!("{name}_sum"), self.sum_ms(), tags(None)));
        series.push((format!("{name}_count"), count(self.count), tags(None)));
    }
}

fn count(n: u64) -> Value {
    Value::from(i64::try_from(n).unwrap_or(i64::MAX))
}

/// What one subject's requests add up to; their number and total time are the histogram's.
#[derive(Debug, Default)]
struct Requests {
    errors: u64,
    nacks: u64,
    latency: Histogram,
}

#[derive(Debug, Default)]
struct Counts {
    requests: BTreeMap<String, Requests>,
    events: BTreeMap<(String, String), u64>,
    failed_events: BTreeMap<(String, String), u64>,
    /// HTTP requests by (interface, method, status).
    http: BTreeMap<(String, String, u16), u64>,
    /// HTTP latency (and total handling time) by interface.
    http_latency: BTreeMap<String, Histogram>,
}

/// The counters of one container.
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    counts: Mutex<Counts>,
}

impl Metrics {
    fn counts(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A request for `subject` was handled in `duration`; `error` is its reply kind (`ERROR` or
    /// `NACK`) if it failed. `declared` says whether its interface declares the method: the
    /// requests of every other subject, which anyone can make up, count as [`UNKNOWN_SUBJECT`],
    /// so that they add no series.
    pub(crate) fn request(&self, subject: &str, declared: bool, duration: Duration, error: Option<&'static str>) {
        let subject = if declared { subject } else { UNKNOWN_SUBJECT };
        let mut counts = self.counts();
        // Known subjects, the usual case, cost no allocation.
        if !counts.requests.contains_key(subject) {
            counts.requests.insert(subject.to_owned(), Requests::default());
        }
        let Some(requests) = counts.requests.get_mut(subject) else { return };
        requests.latency.record(duration);
        match error {
            Some("NACK") => requests.nacks += 1,
            Some(_) => requests.errors += 1,
            None => {}
        }
    }

    /// An event of `event_type` went through `handler`.
    pub(crate) fn event(&self, event_type: &str, handler: &str, failed: bool) {
        let key = (event_type.to_owned(), handler.to_owned());
        let mut counts = self.counts();
        if failed {
            *counts.failed_events.entry(key.clone()).or_default() += 1;
        }
        *counts.events.entry(key).or_default() += 1;
    }

    /// An HTTP request to the web interface `interface` was answered with `status`. A method
    /// other than the standard ones (which anyone can make up) counts as `OTHER`.
    pub(crate) fn http(&self, interface: &str, method: &str, status: u16, duration: Duration) {
        let method = if HTTP_METHODS.contains(&method) { method } else { "OTHER" };
        let mut counts = self.counts();
        *counts.http.entry((interface.to_owned(), method.to_owned(), status)).or_default() += 1;
        // A known interface, the usual case, costs no allocation.
        match counts.http_latency.get_mut(interface) {
            Some(latency) => latency.record(duration),
            None => counts.http_latency.entry(interface.to_owned()).or_default().record(duration),
        }
    }

    /// The metrics in lymph's form, with the gauges given and `tags` on every entry.
    pub(crate) fn series(&self, connections: usize, in_flight: usize, tags: &[(&str, &str)]) -> Value {
        let entry = |name: &str, value: Value, own: Vec<(&str, Value)>| {
            let mut all: Vec<(Value, Value)> = own.into_iter().map(|(k, v)| (Value::from(k), v)).collect();
            all.extend(tags.iter().map(|(k, v)| (Value::from(*k), Value::from(*v))));
            Value::Array(vec![Value::from(name), value, Value::Map(all)])
        };
        let counts = self.counts();
        let histogram = |name: &str, histogram: &Histogram, own: &[(&str, Value)], series: &mut Vec<Value>| {
            let mut entries = Vec::new();
            histogram.push(name, own, &mut entries);
            for (name, value, own) in entries {
                series.push(entry(&name, value, own.iter().map(|(k, v)| (k.as_str(), v.clone())).collect()));
            }
        };
        let mut series = Vec::new();
        for (subject, requests) in &counts.requests {
            let tag = || vec![("subject", Value::from(subject.as_str()))];
            series.push(entry("rpc", count(requests.latency.count), tag()));
            for (kind, n) in [("ERROR", requests.errors), ("NACK", requests.nacks)] {
                if n > 0 {
                    let mut tags = tag();
                    tags.push(("kind", Value::from(kind)));
                    series.push(entry("rpc.error_count", count(n), tags));
                }
            }
            series.push(entry("rpc.duration_ms", requests.latency.sum_ms(), tag()));
            histogram("rpc.latency_ms", &requests.latency, &tag(), &mut series);
        }
        for ((event_type, handler), n) in &counts.events {
            let own =
                vec![("event_type", Value::from(event_type.as_str())), ("handler", Value::from(handler.as_str()))];
            series.push(entry("events", count(*n), own));
        }
        for ((event_type, handler), n) in &counts.failed_events {
            let own =
                vec![("event_type", Value::from(event_type.as_str())), ("handler", Value::from(handler.as_str()))];
            series.push(entry("events.failed", count(*n), own));
        }
        for ((interface, method, status), n) in &counts.http {
            let own = vec![
                ("interface", Value::from(interface.as_str())),
                ("method", Value::from(method.as_str())),
                ("status", Value::from(i64::from(*status))),
            ];
            series.push(entry("http.requests", count(*n), own));
        }
        for (interface, latency) in &counts.http_latency {
            series.push(entry(
                "http.duration_ms",
                latency.sum_ms(),
                vec![("interface", Value::from(interface.as_str()))],
            ));
        }
        for (interface, latency) in &counts.http_latency {
            histogram("http.latency_ms", latency, &[("interface", Value::from(interface.as_str()))], &mut series);
        }
        series.push(entry("rpc.connection_count", count(connections as u64), Vec::new()));
        series.push(entry("rpc.in_flight", count(in_flight as u64), Vec::new()));
        if let Some(rss) = resident_memory() {
            series.push(entry("process.memory.rss", count(rss), Vec::new()));
        }
        Value::Array(series)
    }
}

/// The process's resident memory in bytes, from `/proc/self/statm` (pages of 4 KiB).
fn resident_memory() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

/// The histograms among the metrics, by base name.
const HISTOGRAMS: &[&str] = &["rpc.latency_ms", "http.latency_ms"];

/// The counters among the metrics; the others are gauges (or histograms).
const COUNTERS: &[&str] =
    &["rpc", "rpc.error_count", "rpc.duration_ms", "events", "events.failed", "http.requests", "http.duration_ms"];

/// Metrics in lymph's `[name, value, tags]` form as Prometheus text (exposition format 0.0.4):
/// `rpc.error_count` becomes `lymph_rpc_error_count`, tags become labels, and every family has
/// its `# TYPE` line. Entries that are not `[name, number, tags]` are left out.
pub(crate) fn prometheus_text(series: &Value) -> String {
    use std::fmt::Write as _;

    let mut families: BTreeMap<String, (&str, Vec<String>)> = BTreeMap::new();
    for entry in series.as_array().unwrap_or_default() {
        let Some([name, value, tags]) = entry.as_array().and_then(|e| <&[Value; 3]>::try_from(e).ok()) else {
            continue;
        };
        let (Some(name), Some(value)) = (name.as_str(), value.as_f64().or_else(|| value.as_i64().map(|v| v as f64)))
        else {
            continue;
        };
        let metric = format!("lymph_{}", sanitize(name));
        // A histogram's `_bucket`, `_sum` and `_count` lines make one family.
        let histogram = HISTOGRAMS
            .iter()
            .find(|h| name.strip_prefix(**h).is_some_and(|rest| ["_bucket", "_sum", "_count"].contains(&rest)));
        let labels: Vec<String> = tags
            .as_map()
            .unwrap_or_default()
            .iter()
            .filter_map(|(k, v)| {
                let value = v.as_str().map(str::to_owned).or_else(|| v.as_i64().map(|n| n.to_string()))?;
                Some(format!("{}=\"{}\"", sanitize(k.as_str()?), escape(&value)))
            })
            .collect();
        let line = if labels.is_empty() {
            format!("{metric} {value}")
        } else {
            format!("{metric}{{{}}} {value}", labels.join(","))
        };
        let (family, kind) = match histogram {
            Some(base) => (format!("lymph_{}", sanitize(base)), "histogram"),
            None if COUNTERS.contains(&name) => (metric, "counter"),
            None => (metric, "gauge"),
        };
        families.entry(family).or_insert_with(|| (kind, Vec::new())).1.push(line);
    }
    let mut text = String::new();
    for (metric, (kind, lines)) in &families {
        let _ = writeln!(text, "# TYPE {metric} {kind}");
        for line in lines {
            let _ = writeln!(text, "{line}");
        }
    }
    text
}

/// A Prometheus metric or label name: letters, digits and `_`.
fn sanitize(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect()
}

/// A Prometheus label value: `\`, `"` and newlines escaped.
fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_is_tagged_with_the_pattern_that_matched_never_its_made_up_type() {
        use crate::interface::EventHandlerSpec;
        let handler = EventHandlerSpec {
            name: "on_any",
            patterns: &["order.created", "interop.#"],
            queue_name: None,
            sequential: false,
            broadcast: false,
            once: false,
            retry: 0,
            task: false,
            serial: None,
        };
        assert_eq!(event_type_tag(&handler, "shop", "order.created"), "order.created");
        assert_eq!(event_type_tag(&handler, "shop", "interop.a.b"), "interop.#");
        // A body naming another type than the routing key it came under.
        assert_eq!(event_type_tag(&handler, "shop", "made.up.0"), UNKNOWN_SUBJECT);
        let task = EventHandlerSpec { name: "resize", patterns: &[], task: true, ..handler };
        assert_eq!(event_type_tag(&task, "img.worker", "lymph.tasks.img.resize"), "lymph.tasks.img.resize");
        assert_eq!(event_type_tag(&task, "img.worker", "lymph.tasks.img.other"), UNKNOWN_SUBJECT);

        let metrics = Metrics::default();
        for n in 0..1000 {
            let made_up = format!("interop.{n}");
            metrics.event(&event_type_tag(&handler, "shop", &made_up), handler.name, n % 2 == 0);
            metrics.event(&event_type_tag(&handler, "shop", &format!("made.up.{n}")), handler.name, false);
        }
        let series = metrics.series(0, 0, &[]);
        let events: Vec<&Value> = series
            .as_array()
            .unwrap()
            .iter()
            .filter(|entry| entry.as_array().unwrap()[0].as_str().is_some_and(|name| name.starts_with("events")))
            .collect();
        // `events` for `interop.#` and `unknown`, `events.failed` for `interop.#`.
        assert_eq!(events.len(), 3, "{series}");
    }

    #[test]
    fn prometheus_text_has_one_family_per_name_with_labels_and_types() {
        let metrics = Metrics::default();
        metrics.request("echo.upper", true, Duration::from_millis(2), None);
        metrics.request("echo.upper", true, Duration::from_millis(3), Some("NACK"));
        metrics.http("web", "POST", 200, Duration::from_millis(1));
        let text = prometheus_text(&metrics.series(1, 0, &[("identity", "ab\"c")]));
        assert!(
            text.contains("# TYPE lymph_rpc counter\nlymph_rpc{subject=\"echo.upper\",identity=\"ab\\\"c\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("lymph_rpc_error_count{subject=\"echo.upper\",kind=\"NACK\",identity=\"ab\\\"c\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("lymph_rpc_duration_ms{subject=\"echo.upper\",identity=\"ab\\\"c\"} 5\n"), "{text}");
        assert!(
            text.contains(
                "lymph_http_requests{interface=\"web\",method=\"POST\",status=\"200\",identity=\"ab\\\"c\"} 1\n"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "# TYPE lymph_rpc_connection_count gauge\nlymph_rpc_connection_count{identity=\"ab\\\"c\"} 1\n"
            ),
            "{text}"
        );
        assert_eq!(text.matches("# TYPE lymph_rpc counter").count(), 1);
        // The latency histogram: cumulative buckets, then sum and count, in one family.
        assert_eq!(text.matches("# TYPE lymph_rpc_latency_ms histogram").count(), 1, "{text}");
        let bucket = |le: &str| {
            format!("lymph_rpc_latency_ms_bucket{{subject=\"echo.upper\",le=\"{le}\",identity=\"ab\\\"c\"}}")
        };
        assert!(text.contains(&format!("{} 0\n", bucket("1"))), "{text}");
        assert!(text.contains(&format!("{} 1\n", bucket("2.5"))), "{text}");
        assert!(text.contains(&format!("{} 2\n", bucket("5"))), "{text}");
        assert!(text.contains(&format!("{} 2\n", bucket("+Inf"))), "{text}");
        assert!(text.contains("lymph_rpc_latency_ms_sum{subject=\"echo.upper\",identity=\"ab\\\"c\"} 5\n"), "{text}");
        assert!(text.contains("lymph_rpc_latency_ms_count{subject=\"echo.upper\",identity=\"ab\\\"c\"} 2\n"), "{text}");
        assert!(text.contains("# TYPE lymph_http_latency_ms histogram"), "{text}");
    }

    #[test]
    fn made_up_subjects_and_http_methods_add_no_series() {
        let metrics = Metrics::default();
        metrics.request("echo.upper", true, Duration::from_millis(1), None);
        metrics.http("web", "GET", 200, Duration::from_millis(1));
        let before = metrics.series(0, 0, &[]).as_array().map_or(0, <[Value]>::len);
        for n in 0..5000 {
            metrics.request(&format!("echo.made_up_{n}"), false, Duration::from_millis(1), Some("NACK"));
            metrics.http("web", &format!("MADEUP{n}"), 405, Duration::from_millis(1));
        }
        let series = metrics.series(0, 0, &[]);
        let after = series.as_array().map_or(0, <[Value]>::len);
        // One `unknown` subject (rpc, its NACKs, duration, histogram) and one `OTHER` method.
        assert!(after <= before + 20, "{before} series grew to {after}");
        let text = prometheus_text(&series);
        assert!(text.contains("lymph_rpc{subject=\"unknown\"} 5000\n"), "{text}");
        assert!(text.contains("lymph_rpc_error_count{subject=\"unknown\",kind=\"NACK\"} 5000\n"), "{text}");
        assert!(
            text.contains("lymph_http_requests{interface=\"web\",method=\"OTHER\",status=\"405\"} 5000\n"),
            "{text}"
        );
        assert!(!text.contains("made_up") && !text.contains("MADEUP"), "{text}");
    }
}
