//! The container's log records on its log stream (lymph's `_zmqpub` handler): a `tracing`
//! layer that formats each event as lymph's `_trace` formatter does and hands it to the
//! [`LogPublisher`] of the running instance.

use std::fmt::Write as _;
use std::sync::{Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use lymph_transports::LogPublisher;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

/// The publisher of this process's instance, once it has bound one.
static PUBLISHER: Mutex<Option<LogPublisher>> = Mutex::new(None);

/// Sends this process's log records to `publisher` from now on.
pub(crate) fn publish_to(publisher: LogPublisher) {
    *PUBLISHER.lock().unwrap_or_else(PoisonError::into_inner) = Some(publisher);
}

/// lymph's level name for a `tracing` level (Python has no TRACE).
pub(crate) fn level_name(level: Level) -> &'static str {
    match level {
        Level::ERROR => "ERROR",
        Level::WARN => "WARNING",
        Level::INFO => "INFO",
        Level::DEBUG | Level::TRACE => "DEBUG",
    }
}

/// The layer: formats events, `%(asctime)s [%(levelname)s] %(name)s: %(message)s -
/// trace_id="%(trace_id)s"`, with the event's fields after the message.
#[derive(Debug, Default)]
pub(crate) struct LogStreamLayer;

/// The trace id of a span, kept in its extensions.
struct TraceId(String);

#[derive(Default)]
struct Fields {
    message: String,
    rest: String,
    trace_id: Option<String>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "message" => self.message.push_str(value),
            "trace_id" => self.trace_id = Some(value.to_owned()),
            name => {
                let _ = write!(self.rest, " {name}={value}");
            }
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        match field.name() {
            "message" => {
                let _ = write!(self.message, "{value:?}");
            }
            "trace_id" => self.trace_id = Some(format!("{value:?}")),
            name => {
                let _ = write!(self.rest, " {name}={value:?}");
            }
        }
    }
}

impl<S> tracing_subscriber::Layer<S> for LogStreamLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &tracing::span::Attributes<'_>, id: &tracing::span::Id, ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        if let (Some(trace_id), Some(span)) = (fields.trace_id, ctx.span(id)) {
            span.extensions_mut().insert(TraceId(trace_id));
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let Some(publisher) = PUBLISHER.lock().unwrap_or_else(PoisonError::into_inner).clone() else { return };
        let mut fields = Fields::default();
        event.record(&mut fields);
        let trace_id = fields.trace_id.take().or_else(|| {
            ctx.event_scope(event)?.find_map(|span| span.extensions().get::<TraceId>().map(|t| t.0.clone()))
        });
        let metadata = event.metadata();
        let level = level_name(*metadata.level());
        let message = format!(
            "{} [{level}] {}: {}{} - trace_id=\"{}\"",
            asctime(SystemTime::now()),
            metadata.target(),
            fields.message,
            fields.rest,
            trace_id.as_deref().unwrap_or("None"),
        );
        publisher.publish(level, message);
    }
}

/// Python logging's `asctime` in UTC: `2026-11-27 22:50:01,123`.
fn asctime(now: SystemTime) -> String {
    let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(i64::try_from(days).unwrap_or(0));
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02},{:03}",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60,
        since.subsec_millis()
    )
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = u32::try_from(doy - (153 * mp + 2) / 5 + 1).unwrap_or(1);
    let month = u32::try_from(if mp < 10 { mp + 3 } else { mp - 9 }).unwrap_or(1);
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::asctime;

    #[test]
    fn asctime_is_pythons_format_in_utc() {
        assert_eq!(asctime(UNIX_EPOCH), "1970-01-01 00:00:00,000");
        // 2026-11-27T22:50:01.123Z
        assert_eq!(asctime(UNIX_EPOCH + Duration::from_millis(1_795_819_801_123)), "2026-11-27 22:50:01,123");
        assert_eq!(asctime(UNIX_EPOCH + Duration::from_secs(951_782_400)), "2000-02-29 00:00:00,000");
    }
}

/// The process's log filter, changeable at run time (`lymph.change_loglevel`).
struct Filter {
    handle: tracing_subscriber::reload::Handle<tracing_subscriber::EnvFilter, tracing_subscriber::Registry>,
    /// The filter `--loglevel` set, which every change returns to.
    base: String,
    /// Counts changes, so that a change's reset does not undo a later one.
    generation: u64,
}

static FILTER: Mutex<Option<Filter>> = Mutex::new(None);

/// Keeps the reload handle of the process's log filter, whose directives are `base`.
pub(crate) fn set_filter(
    handle: tracing_subscriber::reload::Handle<tracing_subscriber::EnvFilter, tracing_subscriber::Registry>,
    base: String,
) {
    *FILTER.lock().unwrap_or_else(PoisonError::into_inner) = Some(Filter { handle, base, generation: 0 });
}

/// `lymph.change_loglevel` for this process: adds `target=level` to the filter for a while.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Levels;

fn directive_level(level: &str) -> &'static str {
    match level {
        "DEBUG" => "debug",
        "INFO" => "info",
        "WARNING" => "warn",
        _ => "error",
    }
}

impl lymph_core::LogLevels for Levels {
    fn change(&self, target: &str, level: &str, period: std::time::Duration) -> Result<(), String> {
        let mut guard = FILTER.lock().unwrap_or_else(PoisonError::into_inner);
        let filter = guard.as_mut().ok_or("this process's logging cannot be changed")?;
        let directives = format!("{},{target}={}", filter.base, directive_level(level));
        let changed = tracing_subscriber::EnvFilter::try_new(&directives).map_err(|e| format!("{target}: {e}"))?;
        filter.handle.reload(changed).map_err(|e| e.to_string())?;
        filter.generation += 1;
        let generation = filter.generation;
        tracing::info!(target, level, ?period, "log level changed");
        tokio::spawn(async move {
            tokio::time::sleep(period).await;
            let mut guard = FILTER.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(filter) = guard.as_mut().filter(|f| f.generation == generation)
                && let Ok(base) = tracing_subscriber::EnvFilter::try_new(&filter.base)
            {
                let _ = filter.handle.reload(base);
            }
        });
        Ok(())
    }
}
