//! Prometheus metrics, served at `/_tfmirror/metrics`.
//!
//! Process-wide, as the `prometheus` crate intends: the upstream client,
//! the download paths and the server each record where the event happens,
//! without a handle threaded through every constructor.

use std::sync::LazyLock;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

pub static REGISTRY: LazyLock<Registry> = LazyLock::new(Registry::new);

fn register<T: prometheus::core::Collector + Clone + 'static>(metric: T) -> T {
    REGISTRY
        .register(Box::new(metric.clone()))
        .expect("metric names are unique");
    metric
}

/// Requests by route and result: `hit` (from the cache), `miss` (fetched
/// from upstream), `stale` (a cached answer standing in for a failing
/// upstream), `error`, or `served` (answers that are neither, e.g. a
/// rewritten download answer).
pub static REQUESTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register(
        IntCounterVec::new(
            Opts::new("tfmirror_requests_total", "Requests by route and result"),
            &["route", "result"],
        )
        .expect("valid metric"),
    )
});

/// Artifact bytes sent to clients, by where they came from.
pub static BYTES_SERVED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register(
        IntCounterVec::new(
            Opts::new(
                "tfmirror_bytes_served_total",
                "Artifact bytes sent to clients, by source (cache or upstream)",
            ),
            &["source"],
        )
        .expect("valid metric"),
    )
});

/// Time to the upstream's response headers.
pub static UPSTREAM_LATENCY: LazyLock<HistogramVec> = LazyLock::new(|| {
    register(
        HistogramVec::new(
            HistogramOpts::new(
                "tfmirror_upstream_request_duration_seconds",
                "Time until the upstream answered, by kind of request (api or artifact)",
            )
            .buckets(vec![0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
            &["kind"],
        )
        .expect("valid metric"),
    )
});

pub static DOWNLOADS_IN_FLIGHT: LazyLock<IntGauge> = LazyLock::new(|| {
    register(
        IntGauge::new(
            "tfmirror_downloads_in_flight",
            "Artifact downloads from upstream under way",
        )
        .expect("valid metric"),
    )
});

pub static CACHE_BYTES: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register(
        IntGaugeVec::new(
            Opts::new("tfmirror_cache_bytes", "Bytes stored, by kind of artifact"),
            &["kind"],
        )
        .expect("valid metric"),
    )
});

/// Audit lines that could not be written (each also logged in a WARN).
pub static AUDIT_WRITE_FAILURES: LazyLock<IntCounter> = LazyLock::new(|| {
    register(
        IntCounter::new(
            "tfmirror_audit_write_failures_total",
            "Audit log lines that could not be written",
        )
        .expect("valid metric"),
    )
});

pub static GC_RUNS: LazyLock<IntCounter> = LazyLock::new(|| {
    register(
        IntCounter::new("tfmirror_gc_runs_total", "Garbage collections run").expect("valid metric"),
    )
});

pub static GC_BYTES_FREED: LazyLock<IntCounter> = LazyLock::new(|| {
    register(
        IntCounter::new(
            "tfmirror_gc_bytes_freed_total",
            "Bytes removed by garbage collection",
        )
        .expect("valid metric"),
    )
});

/// Git mirrors and the shared tier's bundles: `seeded` (a new mirror made
/// from a shared bundle, then fetched from the upstream), `seed_failed` (a
/// shared bundle that could not be used; the mirror was cloned instead),
/// `shared` (a bundle handed to the shared tier).
pub static GIT_BUNDLES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register(
        IntCounterVec::new(
            Opts::new(
                "tfmirror_git_bundles_total",
                "Git mirror bundles seeded from, failed or shared with the shared tier",
            ),
            &["event"],
        )
        .expect("valid metric"),
    )
});

/// Reads from the shared tier by result: `hit`, `miss`, or `error` (the
/// bucket failed, or was skipped while failing).
pub static SHARED_LOOKUPS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register(
        IntCounterVec::new(
            Opts::new(
                "tfmirror_shared_lookups_total",
                "Reads from the shared tier, by result (hit, miss or error)",
            ),
            &["result"],
        )
        .expect("valid metric"),
    )
});

/// Bytes moved to and from the shared tier: `read` or `written`.
pub static SHARED_BYTES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register(
        IntCounterVec::new(
            Opts::new(
                "tfmirror_shared_bytes_total",
                "Bytes read from and written to the shared tier, by direction",
            ),
            &["direction"],
        )
        .expect("valid metric"),
    )
});

/// Failed requests to the shared tier, by operation (get, head, put, list).
pub static SHARED_ERRORS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register(
        IntCounterVec::new(
            Opts::new(
                "tfmirror_shared_errors_total",
                "Failed requests to the shared tier, by operation",
            ),
            &["operation"],
        )
        .expect("valid metric"),
    )
});

/// Time to the bucket's answer (the headers of a read, a whole upload).
pub static SHARED_LATENCY: LazyLock<HistogramVec> = LazyLock::new(|| {
    register(
        HistogramVec::new(
            HistogramOpts::new(
                "tfmirror_shared_request_duration_seconds",
                "Time until the shared tier answered, by operation",
            )
            .buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ]),
            &["operation"],
        )
        .expect("valid metric"),
    )
});

/// Counts one download from upstream while it is alive.
pub struct InFlight;

impl InFlight {
    pub fn start() -> InFlight {
        DOWNLOADS_IN_FLIGHT.inc();
        InFlight
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        DOWNLOADS_IN_FLIGHT.dec();
    }
}

/// The text exposition of every metric.
pub fn render() -> String {
    // Touch every metric so each appears from the first scrape on.
    let _ = (
        &*REQUESTS,
        &*BYTES_SERVED,
        &*UPSTREAM_LATENCY,
        &*DOWNLOADS_IN_FLIGHT,
        &*CACHE_BYTES,
        &*GC_RUNS,
        &*GC_BYTES_FREED,
        &*GIT_BUNDLES,
        &*SHARED_LOOKUPS,
        &*SHARED_BYTES,
        &*SHARED_ERRORS,
        &*SHARED_LATENCY,
    );
    let mut out = Vec::new();
    TextEncoder::new()
        .encode(&REGISTRY.gather(), &mut out)
        .expect("text encoding does not fail");
    String::from_utf8(out).expect("the text format is UTF-8")
}
