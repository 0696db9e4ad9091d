//! Counting what each response sends, by where its bytes came from, for
//! the Prometheus metrics and for the savings report of one `exec` run.
//!
//! Bytes are counted as the body is sent, not when the handler returns: a
//! zip relayed from upstream is still arriving then, and a client that
//! hangs up half way received only half.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body as HttpBody, Frame, SizeHint};

use crate::metrics;
use crate::protocol::RunCounters;
use crate::response::{Body, Origin, Outcome, Response, Touched};

/// What each run touched, by request path, kept until the run asks.
///
/// Counting by path makes one artifact one hit or one miss however it was
/// asked for: Terraform may send HEAD before GET, and a HEAD for a module
/// archive is what downloads it.
#[derive(Default)]
pub struct Runs {
    touched: Mutex<HashMap<String, HashMap<String, Touch>>>,
    /// What each run was served, by cache key.
    pub closures: super::closures::Closures,
}

#[derive(Debug, Clone, Copy)]
struct Touch {
    origin: Origin,
    bytes: u64,
    secs: f64,
}

impl Runs {
    /// The counters of `run` so far; reading changes nothing.
    pub fn peek(&self, run: &str) -> RunCounters {
        let runs = self.touched.lock().expect("runs lock");
        count(runs.get(run).into_iter().flat_map(HashMap::values))
    }

    /// The counters of `run`, which ends: they are forgotten, and its
    /// closure is kept a while.
    pub fn take(&self, run: &str) -> RunCounters {
        self.closures.end(run);
        let touched = self.touched.lock().expect("runs lock").remove(run);
        count(touched.iter().flat_map(HashMap::values))
    }

    /// A later touch of the same artifact keeps the first one's origin
    /// unless it had to download, and the larger byte count.
    fn add(&self, run: &str, path: &str, touch: Touch) {
        let mut runs = self.touched.lock().expect("runs lock");
        let touched = runs.entry(run.to_owned()).or_default();
        touched
            .entry(path.to_owned())
            .and_modify(|earlier| {
                if touch.origin == Origin::Upstream {
                    earlier.origin = Origin::Upstream;
                }
                earlier.bytes = earlier.bytes.max(touch.bytes);
                earlier.secs += touch.secs;
            })
            .or_insert(touch);
    }
}

fn count<'a>(touches: impl Iterator<Item = &'a Touch>) -> RunCounters {
    let mut counters = RunCounters::default();
    for touch in touches {
        match touch.origin {
            Origin::Cache => {
                counters.hits += 1;
                counters.bytes_from_cache += touch.bytes;
            }
            Origin::Upstream => {
                counters.misses += 1;
                counters.bytes_from_upstream += touch.bytes;
                counters.upstream_secs += touch.secs;
            }
        }
    }
    counters
}

/// The request a response answers, as the metering needs it.
pub struct Metered {
    pub route: &'static str,
    /// The `exec` run it belongs to, and the path it asked for.
    pub run: Option<(String, String)>,
    pub head: bool,
    pub started: Instant,
}

/// Records the request in the metrics and, for an artifact, wraps its
/// body so the bytes are counted (for the run, too) once sent.
pub fn meter(response: Response, request: Metered, runs: Arc<Runs>) -> Response {
    if let (Some((run, _)), Some(Touched(items))) =
        (&request.run, response.extensions().get::<Touched>())
    {
        if response.status().is_success() {
            runs.closures.add(run, items);
        }
    }
    let origin = response.extensions().get::<Origin>().copied();
    let result = if response.status().as_u16() >= 400 {
        "error"
    } else {
        match (origin, response.extensions().get::<Outcome>()) {
            (Some(Origin::Cache), _) | (None, Some(Outcome::Hit)) => "hit",
            (Some(Origin::Upstream), _) | (None, Some(Outcome::Miss)) => "miss",
            (None, Some(Outcome::Stale)) => "stale",
            (None, None) => "served",
        }
    };
    metrics::REQUESTS
        .with_label_values(&[request.route, result])
        .inc();
    let Some(origin) = origin.filter(|_| result != "error") else {
        return response;
    };
    if request.head {
        // No body follows; the artifact's size is what the HEAD stands for.
        let bytes = response
            .headers()
            .get(hyper::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse().ok())
            .unwrap_or(0);
        touch_run(&runs, &request.run, origin, bytes, request.started);
        return response;
    }
    let (parts, body) = response.into_parts();
    let counted = Counted {
        inner: body,
        bytes: 0,
        started: request.started,
        origin,
        run: request.run,
        runs,
        done: false,
    };
    Response::from_parts(parts, counted.boxed())
}

struct Counted {
    inner: Body,
    bytes: u64,
    started: Instant,
    origin: Origin,
    run: Option<(String, String)>,
    runs: Arc<Runs>,
    done: bool,
}

impl Counted {
    fn finish(&mut self) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        let source = match self.origin {
            Origin::Cache => "cache",
            Origin::Upstream => "upstream",
        };
        metrics::BYTES_SERVED
            .with_label_values(&[source])
            .inc_by(self.bytes);
        touch_run(&self.runs, &self.run, self.origin, self.bytes, self.started);
    }
}

/// Counts `bytes` from `origin`, sent since `started`, for the `exec` run
/// and path the request belongs to, if any.
fn touch_run(
    runs: &Runs,
    run: &Option<(String, String)>,
    origin: Origin,
    bytes: u64,
    started: Instant,
) {
    if let Some((run, path)) = run {
        let secs = started.elapsed().as_secs_f64();
        runs.add(
            run,
            path,
            Touch {
                origin,
                bytes,
                secs,
            },
        );
    }
}

impl HttpBody for Counted {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.bytes += data.len() as u64;
                }
            }
            Poll::Ready(None) => self.finish(),
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A client that hangs up still counts for what it received.
impl Drop for Counted {
    fn drop(&mut self) {
        self.finish();
    }
}
