//! `request`: one RPC call and its reply, or many as a load test.

use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use bytes::Bytes;
use hdrhistogram::Histogram;
use lymph_core::{Container, Error, Message, Proxy, Value};

use crate::commands::{Failure, Run, seconds};
use crate::output::{lymph_json, python_repr};

/// Sends an RPC request and prints the reply.
///
/// The reply prints as Python's repr (or JSON with `--json`). With `-N`, sends many requests,
/// `-C` at a time, and prints calls per second, latency percentiles and a histogram.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct Args {
    /// `service.method`, or `service.method@version` (caret match, e.g. `@1.2`).
    subject: String,
    /// The keyword arguments as a JSON object, or `-` to read them from stdin.
    params: String,
    /// Seconds to wait for the reply.
    #[arg(long, default_value_t = 2.0)]
    timeout: f64,
    /// Send to this instance (`tcp://host:port`) instead of one from the registry.
    #[arg(long)]
    address: Option<String>,
    /// The trace id to send (a fresh one when left out).
    #[arg(long)]
    trace_id: Option<String>,
    /// Print the reply as JSON instead of Python's repr.
    #[arg(long)]
    json: bool,
    /// Print the reply's headers first.
    #[arg(short = 'D', long)]
    dump_headers: bool,
    /// Send this many requests and report their speed (a load test).
    #[arg(short = 'N', default_value_t = 1, value_name = "N")]
    number: usize,
    /// With -N: how many requests are in flight at once.
    #[arg(short = 'C', default_value_t = 1, value_name = "C")]
    concurrency: usize,
}

/// The most requests `-C` keeps in flight at once (each has a task of its own).
const MAX_CONCURRENCY: usize = 10_000;

/// Parses the JSON text `text` (what `what` names) into a value.
pub(crate) fn parse_json(what: &str, text: &str) -> Result<Value, Failure> {
    let json: serde_json::Value =
        serde_json::from_str(text).map_err(|e| Failure::BadInput(format!("{what} is not valid JSON: {e}")))?;
    lymph_core::value::to_value(&json).map_err(|e| Failure::BadInput(format!("{what}: {e}")))
}

/// `service.method[@version]` split into its parts.
fn parse_subject(subject: &str) -> Result<(String, String, Option<String>), Failure> {
    let (name, version) = match subject.split_once('@') {
        Some((name, version)) => (name, Some(version.to_owned())),
        None => (subject, None),
    };
    match name.rsplit_once('.') {
        Some((service, method)) if !service.is_empty() && !method.is_empty() => {
            Ok((service.to_owned(), method.to_owned(), version))
        }
        _ => Err(Failure::BadInput(format!("subject {subject:?} is not `service.method`"))),
    }
}

pub(crate) async fn run(run: &mut Run<'_>, args: &Args) -> Result<(), Failure> {
    let (service, method, version) = parse_subject(&args.subject)?;
    let params = if args.params == "-" {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text).map_err(|e| Failure::BadInput(format!("cannot read stdin: {e}")))?;
        text
    } else {
        args.params.clone()
    };
    let params = parse_json("<params>", &params)?;
    if !matches!(params, Value::Map(_)) {
        return Err(Failure::BadInput("<params> must be a JSON object of keyword arguments".to_owned()));
    }
    let timeout = seconds("--timeout", args.timeout)?;
    if args.number == 0 || args.concurrency == 0 {
        return Err(Failure::BadInput("-N and -C must be at least 1".to_owned()));
    }
    if args.concurrency > MAX_CONCURRENCY {
        return Err(Failure::BadInput(format!("-C {} is more than {MAX_CONCURRENCY}", args.concurrency)));
    }
    let client = run.client().await?;
    let mut proxy = client.proxy(args.address.as_deref().unwrap_or(&service)).namespace(&service).timeout(timeout);
    if let Some(version) = &version {
        proxy = proxy.version(version);
    }
    if let Some(trace_id) = &args.trace_id {
        proxy = proxy.with_trace_id(trace_id);
    }
    let body = Bytes::from(params.to_msgpack());
    let subject = format!("{service}.{method}");
    let outcome = if args.number == 1 {
        one(run, args, &proxy, &method, &subject, body).await
    } else {
        many(run, args, &client, &proxy, &method, body).await
    };
    client.stop().await;
    outcome
}

async fn one(
    run: &mut Run<'_>,
    args: &Args,
    proxy: &Proxy,
    method: &str,
    subject: &str,
    body: Bytes,
) -> Result<(), Failure> {
    let reply: Message = proxy.request(method, body).await?;
    if args.dump_headers {
        for (key, value) in reply.headers.iter() {
            writeln!(run.out, "{key}: {}", python_repr(value))?;
        }
        writeln!(run.out)?;
    }
    let value: Value = reply.into_reply(subject)?;
    if args.json {
        writeln!(run.out, "{}", lymph_json(&value))?;
    } else {
        writeln!(run.out, "{}", python_repr(&value))?;
    }
    Ok(())
}

/// The load test: `-N` requests, `-C` at a time, after one to warm up.
async fn many(
    run: &mut Run<'_>,
    args: &Args,
    _client: &Container,
    proxy: &Proxy,
    method: &str,
    body: Bytes,
) -> Result<(), Failure> {
    let subject = format!("{}.{method}", proxy.address());
    proxy.request(method, body.clone()).await?.into_reply::<Value>(&subject)?;
    writeln!(run.out, "sending {} requests, concurrency {}", args.number, args.concurrency)?;
    run.out.flush()?;

    let progress = indicatif::ProgressBar::with_draw_target(
        Some(u64::try_from(args.number).unwrap_or(u64::MAX)),
        indicatif::ProgressDrawTarget::stderr(),
    );
    progress.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} requests, {per_sec}, {elapsed}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = Vec::new();
    // More workers than requests would have nothing to send.
    for _ in 0..args.concurrency.min(args.number) {
        let (proxy, method, body, next, progress) =
            (proxy.clone(), method.to_owned(), body.clone(), next.clone(), progress.clone());
        let total = args.number;
        workers.push(tokio::spawn(async move {
            let mut latencies = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds");
            let (mut timeouts, mut failures) = (0usize, 0usize);
            while next.fetch_add(1, Ordering::Relaxed) < total {
                let call = Instant::now();
                let reply = proxy.request(&method, body.clone()).await;
                match reply.map(|reply| reply.into_reply::<Value>(&method)) {
                    Ok(Ok(_)) => {
                        let micros = u64::try_from(call.elapsed().as_micros()).unwrap_or(u64::MAX).max(1);
                        latencies.saturating_record(micros);
                    }
                    Err(Error::Timeout { .. }) => timeouts += 1,
                    _ => failures += 1,
                }
                progress.inc(1);
            }
            (latencies, timeouts, failures)
        }));
    }
    let mut latencies = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds");
    let (mut timeouts, mut failures) = (0, 0);
    for worker in workers {
        let (h, t, f) = worker.await.map_err(|e| Failure::Other(format!("a request task failed: {e}")))?;
        latencies.add(&h).map_err(|e| Failure::Other(e.to_string()))?;
        timeouts += t;
        failures += f;
    }
    let total_time = started.elapsed().as_secs_f64();
    progress.finish_and_clear();

    let ok = latencies.len();
    let ms = |micros: u64| micros as f64 / 1000.0;
    writeln!(run.out)?;
    writeln!(run.out, "Requests per second:   {:8.2} Hz  (#req={ok})", ok as f64 / total_time)?;
    writeln!(
        run.out,
        "Mean time per request: {:8.2} ms  (stddev={:.2})",
        latencies.mean() / 1000.0,
        latencies.stdev() / 1000.0
    )?;
    writeln!(
        run.out,
        "Timeout rate:          {:8.2} %   (#req={timeouts})",
        100.0 * timeouts as f64 / args.number as f64
    )?;
    if failures > 0 {
        writeln!(
            run.out,
            "Failure rate:          {:8.2} %   (#req={failures})",
            100.0 * failures as f64 / args.number as f64
        )?;
    }
    writeln!(run.out, "Total time:            {total_time:8.2} s")?;
    writeln!(run.out)?;
    if ok > 0 {
        writeln!(run.out, "Percentiles:")?;
        writeln!(run.out, "  0.0 %   {:8.2} ms (min)", ms(latencies.min()))?;
        for p in [50.0, 90.0, 95.0, 99.0, 99.9] {
            writeln!(run.out, "{p:5.1} %   {:8.2} ms", ms(latencies.value_at_percentile(p)))?;
        }
        writeln!(run.out, "100.0 %   {:8.2} ms (max)", ms(latencies.max()))?;
        writeln!(run.out)?;
        writeln!(run.out, "Latency histogram:")?;
        histogram(run, &latencies)?;
    }
    if timeouts + failures == args.number {
        return Err(Failure::Other(format!("all {} requests failed", args.number)));
    }
    Ok(())
}

/// Ten latency buckets from min to max, each with a bar of its share of the requests.
fn histogram(run: &mut Run<'_>, latencies: &Histogram<u64>) -> Result<(), Failure> {
    let (min, max) = (latencies.min(), latencies.max().max(latencies.min() + 1));
    let step = (max - min).div_ceil(10).max(1);
    let total = latencies.len().max(1);
    for bucket in 0..10 {
        let low = min + bucket * step;
        let high = low + step;
        let count: u64 = latencies
            .iter_recorded()
            .filter(|v| v.value_iterated_to() >= low && (v.value_iterated_to() < high || bucket == 9))
            .map(|v| v.count_at_value())
            .sum();
        let bar = "#".repeat(usize::try_from(count * 50 / total).unwrap_or(0));
        writeln!(run.out, "  {:8.2} – {:8.2} ms  {count:>8}  {bar}", low as f64 / 1000.0, high as f64 / 1000.0)?;
    }
    Ok(())
}
