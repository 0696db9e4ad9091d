//! Counting what each response sends, by where its bytes came from, for
//! the Prometheus metrics and for the savings report of one `exec` run.
//!
//! Bytes are counted as the body is sent, not when the handler returns: a
//! zip relayed from upstream is still arriving then, and a client that
//! hangs up half way received only half.

use std::collections::{HashMap, HashSet, VecDeque};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body as HttpBody, Frame, SizeHint};

use super::run_journal::{GitFetch, RunJournal};
use crate::metrics;
use crate::protocol::closure::ClosureItem;
use crate::protocol::{RunCounters, Throughput};
use crate::providers::PreparedZip;
use crate::response::{Body, Origin, Outcome, Response, Touched};

/// A download this large is timed for the server's recent throughput;
/// the time of a smaller one is mostly the round trips.
const LARGE_DOWNLOAD: u64 = 1_000_000;
/// The large downloads the recent throughput is measured on.
const RECENT_DOWNLOADS: usize = 16;
/// Download times kept, by what was downloaded; past this the oldest half
/// goes (a run lasts minutes, not the server's lifetime).
const MAX_DOWNLOAD_TIMES: usize = 8192;

/// What each run touched, by request path, kept until the run asks.
///
/// Counting by path makes one artifact one hit or one miss however it was
/// asked for: Terraform may send HEAD before GET, and a HEAD for a module
/// archive is what downloads it.
#[derive(Default)]
pub struct Runs {
    touched: Mutex<HashMap<String, HashMap<String, Touch>>>,
    /// When each run's first request began, whatever it asked for: from
    /// then on, a download it is served is one it did not save.
    began: Mutex<HashMap<String, Instant>>,
    /// When each artifact was last downloaded, by any request: a run that
    /// was served it from the cache after that, while the run was under
    /// way, waited for (or shared) that download and saved nothing.
    downloaded: Mutex<HashMap<ClosureItem, Instant>>,
    /// The server's recent large downloads, newest last.
    recent: Mutex<VecDeque<Throughput>>,
    /// What each run was served, by cache key.
    pub closures: super::closures::Closures,
}

#[derive(Debug, Clone)]
struct Touch {
    origin: Origin,
    bytes: u64,
    secs: f64,
    /// When its first request began.
    started: Instant,
    /// What it served, by cache key.
    items: Vec<ClosureItem>,
}

impl Runs {
    /// The counters of `run` so far; reading changes nothing.
    pub fn peek(&self, run: &str, journal: &RunJournal) -> RunCounters {
        let touches: Vec<Touch> = {
            let runs = self.touched.lock().expect("runs lock");
            runs.get(run)
                .map(|t| t.values().cloned().collect())
                .unwrap_or_default()
        };
        let began = self.began.lock().expect("runs lock").get(run).copied();
        self.counters(began, &touches, &journal.fetches(run), journal)
    }

    /// The counters of `run`, which ends: they are forgotten, and its
    /// closure is kept a while. Its git fetches and problems come from
    /// `journal`.
    pub fn take(&self, run: &str, journal: &RunJournal) -> RunCounters {
        self.closures.end(run);
        let touched = self.touched.lock().expect("runs lock").remove(run);
        let touches: Vec<Touch> = touched.into_iter().flat_map(HashMap::into_values).collect();
        let began = self.began.lock().expect("runs lock").remove(run);
        let (problems, fetches) = journal.take(run);
        for fetch in &fetches {
            self.measured(fetch.bytes, fetch.secs);
        }
        RunCounters {
            problems,
            ..self.counters(began, &touches, &fetches, journal)
        }
    }

    fn counters(
        &self,
        began: Option<Instant>,
        touches: &[Touch],
        fetches: &[GitFetch],
        journal: &RunJournal,
    ) -> RunCounters {
        let downloaded = self.downloaded.lock().expect("runs lock");
        let downloaded_at = |item: &ClosureItem| {
            let fetched = journal.fetched_at(item);
            downloaded.get(item).copied().max(fetched)
        };
        let mut counters = count(began, touches, fetches, downloaded_at);
        counters.recent = self.recent();
        counters
    }

    /// The sum of the recent large downloads, if there were any.
    fn recent(&self) -> Option<Throughput> {
        let recent = self.recent.lock().expect("runs lock");
        (!recent.is_empty()).then(|| Throughput {
            bytes: recent.iter().map(|t| t.bytes).sum(),
            secs: recent.iter().map(|t| t.secs).sum(),
        })
    }

    /// A download of `bytes` in `secs` ended: a large one joins the recent
    /// throughput.
    fn measured(&self, bytes: u64, secs: f64) {
        if bytes < LARGE_DOWNLOAD || secs <= 0.0 {
            return;
        }
        let mut recent = self.recent.lock().expect("runs lock");
        recent.push_back(Throughput { bytes, secs });
        while recent.len() > RECENT_DOWNLOADS {
            recent.pop_front();
        }
    }

    /// A request of `run` began at `started`.
    fn request(&self, run: &str, started: Instant) {
        let mut began = self.began.lock().expect("runs lock");
        let first = began.entry(run.to_owned()).or_insert(started);
        *first = (*first).min(started);
    }

    /// A provider zip `POST /_tfmirror/providers/prepare` used for `run`,
    /// whose request began at `started`: Terraform installs it from the
    /// unpacked tree without asking for it, so it counts here as if it
    /// had been served to the run, and by the same rule. Its touch is kept
    /// under the zip's cache key, never a request path, so that a request
    /// of the run for the same zip later (see [`Runs::add`]) is the same
    /// touch, not a second hit or miss.
    pub fn prepared(&self, run: &str, zip: &PreparedZip, started: Instant) {
        self.closures.add(run, &zip.items);
        let touch = Touch {
            origin: zip.origin,
            bytes: zip.bytes,
            secs: zip.secs,
            started,
            items: zip.items.clone(),
        };
        self.record(Some((run, &zip.key)), touch);
    }

    /// `touch` was served, to the run and under the key given if any: a
    /// download joins the recent throughput and the download times.
    fn record(&self, counted: Option<(&str, &str)>, touch: Touch) {
        if touch.origin == Origin::Upstream {
            self.downloaded(&touch.items);
            self.measured(touch.bytes, touch.secs);
        }
        if let Some((run, key)) = counted {
            self.add(run, key, touch);
        }
    }

    /// `items` were downloaded from the upstream just now.
    fn downloaded(&self, items: &[ClosureItem]) {
        let mut downloaded = self.downloaded.lock().expect("runs lock");
        if downloaded.len() + items.len() > MAX_DOWNLOAD_TIMES {
            let mut times: Vec<Instant> = downloaded.values().copied().collect();
            times.sort();
            let cut = times[times.len() / 2];
            downloaded.retain(|_, at| *at > cut);
        }
        let now = Instant::now();
        for item in items {
            downloaded.insert(item.clone(), now);
        }
    }

    /// A later touch of the same artifact keeps the first one's origin
    /// unless it had to download, and the larger byte count. A response
    /// whose first item is an artifact already counted under its cache key
    /// (a prepared provider zip) is that artifact.
    fn add(&self, run: &str, path: &str, touch: Touch) {
        let mut runs = self.touched.lock().expect("runs lock");
        let touched = runs.entry(run.to_owned()).or_default();
        let key = match touch.items.first() {
            Some(ClosureItem::Artifact(key)) if touched.contains_key(key) => key,
            _ => path,
        };
        touched
            .entry(key.to_owned())
            .and_modify(|earlier| {
                if touch.origin == Origin::Upstream {
                    earlier.origin = Origin::Upstream;
                }
                earlier.bytes = earlier.bytes.max(touch.bytes);
                earlier.secs += touch.secs;
                earlier.started = earlier.started.min(touch.started);
                for item in &touch.items {
                    if !earlier.items.contains(item) {
                        earlier.items.push(item.clone());
                    }
                }
            })
            .or_insert(touch);
    }
}

/// One run's counters from its touches and git fetches, given when its
/// first request began and when each artifact was last downloaded by
/// anyone.
///
/// The rule of "from cache": a response served from the cache counts as a
/// hit only if nothing it served was downloaded since the run's first
/// request began. Otherwise the run waited for that download (or another
/// run's, in parallel) and saved no time: it is a miss, its bytes count as
/// downloaded, and they take no part in the run's throughput, which only
/// its own downloads measure. Bytes served from a git mirror this run
/// fetched are already counted by the fetch, so they are not counted again.
fn count(
    began: Option<Instant>,
    touches: &[Touch],
    fetches: &[GitFetch],
    downloaded_at: impl Fn(&ClosureItem) -> Option<Instant>,
) -> RunCounters {
    let mut counters = RunCounters::default();
    let began = touches.iter().map(|t| t.started).chain(began).min();
    let fetched: HashSet<&ClosureItem> = fetches.iter().map(|f| &f.mirror).collect();
    for fetch in fetches {
        counters.misses += 1;
        counters.bytes_from_upstream += fetch.bytes;
        counters.measured_bytes += fetch.bytes;
        counters.upstream_secs += fetch.secs;
    }
    for touch in touches {
        match touch.origin {
            Origin::Upstream => {
                counters.misses += 1;
                counters.bytes_from_upstream += touch.bytes;
                counters.measured_bytes += touch.bytes;
                counters.upstream_secs += touch.secs;
            }
            Origin::Cache if touch.items.iter().any(|item| fetched.contains(item)) => {}
            Origin::Cache => {
                let during_run = |item: &ClosureItem| {
                    downloaded_at(item)
                        .zip(began)
                        .is_some_and(|(at, began)| at >= began)
                };
                if touch.items.iter().any(during_run) {
                    counters.misses += 1;
                    counters.bytes_from_upstream += touch.bytes;
                } else {
                    counters.hits += 1;
                    counters.bytes_from_cache += touch.bytes;
                }
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
    let items = match response.extensions().get::<Touched>() {
        Some(Touched(items)) if response.status().is_success() => items.clone(),
        _ => Vec::new(),
    };
    if let Some((run, _)) = &request.run {
        runs.request(run, request.started);
        if !items.is_empty() {
            runs.closures.add(run, &items);
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
        let sent = Sent {
            origin,
            bytes,
            started: request.started,
            items,
        };
        sent.record(&runs, &request.run);
        return response;
    }
    let (parts, body) = response.into_parts();
    let counted = Counted {
        inner: body,
        sent: Sent {
            origin,
            bytes: 0,
            started: request.started,
            items,
        },
        run: request.run,
        runs,
        done: false,
    };
    Response::from_parts(parts, counted.boxed())
}

struct Counted {
    inner: Body,
    sent: Sent,
    run: Option<(String, String)>,
    runs: Arc<Runs>,
    done: bool,
}

impl Counted {
    fn finish(&mut self) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        let source = match self.sent.origin {
            Origin::Cache => "cache",
            Origin::Upstream => "upstream",
        };
        metrics::BYTES_SERVED
            .with_label_values(&[source])
            .inc_by(self.sent.bytes);
        self.sent.record(&self.runs, &self.run);
    }
}

/// What one response sent.
struct Sent {
    origin: Origin,
    bytes: u64,
    /// When its request began.
    started: Instant,
    /// What it served, by cache key.
    items: Vec<ClosureItem>,
}

impl Sent {
    /// Counts a download for the server's recent throughput and download
    /// times, and the response for the `exec` run and path the request
    /// belongs to, if any.
    fn record(&self, runs: &Runs, run: &Option<(String, String)>) {
        let touch = Touch {
            origin: self.origin,
            bytes: self.bytes,
            secs: self.started.elapsed().as_secs_f64(),
            started: self.started,
            items: self.items.clone(),
        };
        let counted = run
            .as_ref()
            .map(|(run, path)| (run.as_str(), path.as_str()));
        runs.record(counted, touch);
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
                    self.sent.bytes += data.len() as u64;
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn zip(name: &str) -> ClosureItem {
        ClosureItem::Artifact(format!("providers/{name}.zip"))
    }

    fn touch(origin: Origin, bytes: u64, started: Instant, item: ClosureItem) -> Touch {
        Touch {
            origin,
            bytes,
            secs: 1.0,
            started,
            items: vec![item],
        }
    }

    /// Two cold runs in parallel: one downloads, the other waits for that
    /// download and is served from disk. The waiter's bytes are downloaded
    /// for it too, with no throughput; a later run's are a hit.
    #[test]
    fn a_waiter_is_counted_honestly() {
        let began = Instant::now();
        let downloaded = began + Duration::from_millis(500);
        let at = |item: &ClosureItem| (*item == zip("a")).then_some(downloaded);

        let downloader = count(
            None,
            &[touch(Origin::Upstream, 100, began, zip("a"))],
            &[],
            at,
        );
        let waiter = count(None, &[touch(Origin::Cache, 100, began, zip("a"))], &[], at);
        let later = count(
            None,
            &[touch(
                Origin::Cache,
                100,
                downloaded + Duration::from_secs(1),
                zip("a"),
            )],
            &[],
            at,
        );
        assert_eq!(
            (
                downloader.misses,
                downloader.bytes_from_upstream,
                downloader.measured_bytes
            ),
            (1, 100, 100)
        );
        assert_eq!(
            (
                waiter.hits,
                waiter.misses,
                waiter.bytes_from_upstream,
                waiter.measured_bytes
            ),
            (0, 1, 100, 0)
        );
        assert_eq!(waiter.upstream_secs, 0.0);
        assert_eq!(
            (later.hits, later.bytes_from_cache, later.misses),
            (1, 100, 0)
        );
    }

    /// A run whose first artifact request came after another run's
    /// download ended, but which was under way (asking for version lists)
    /// before it did, waited for that download too.
    #[test]
    fn a_run_begins_with_its_first_request() {
        let began = Instant::now();
        let downloaded = began + Duration::from_millis(500);
        let served = touch(
            Origin::Cache,
            100,
            downloaded + Duration::from_millis(10),
            zip("a"),
        );
        let at = |_: &ClosureItem| Some(downloaded);
        assert_eq!(
            count(Some(began), std::slice::from_ref(&served), &[], at).misses,
            1
        );
        assert_eq!(count(None, &[served], &[], at).hits, 1);
    }

    /// A git fetch made for the run is downloaded; what the run is then
    /// served from that mirror is the same bytes, not a hit.
    #[test]
    fn a_git_fetch_counts_once_as_downloaded() {
        let began = Instant::now();
        let mirror = ClosureItem::GitMirror("git/h/o/r.git".to_owned());
        let fetch = GitFetch {
            mirror: mirror.clone(),
            bytes: 38_000_000,
            secs: 2.0,
        };
        let served = touch(Origin::Cache, 38_000_000, began, mirror);
        let counters = count(Some(began), &[served], &[fetch], |_| Some(began));
        assert_eq!(
            (
                counters.hits,
                counters.misses,
                counters.bytes_from_cache,
                counters.bytes_from_upstream,
                counters.measured_bytes,
            ),
            (0, 1, 0, 38_000_000, 38_000_000)
        );
    }

    /// A provider zip prepared for a run counts like one served to it: a
    /// hit when it was cached before the run began, a miss measured for
    /// the throughput when the prepare request downloaded it; a later GET
    /// of the same zip by the run is the same artifact, counted once.
    #[test]
    fn a_prepared_zip_counts_once_like_a_served_one() {
        let journal = RunJournal::default();
        let runs = Runs::default();
        let prepared = |name: &str, origin: Origin| PreparedZip {
            key: format!("providers/{name}.zip"),
            items: vec![zip(name), ClosureItem::Document(format!("download/{name}"))],
            bytes: 2_000_000,
            origin,
            secs: 0.5,
        };
        let started = Instant::now();
        runs.prepared("warm", &prepared("a", Origin::Cache), started);
        runs.prepared("cold", &prepared("b", Origin::Upstream), started);
        let get = |run: &str, name: &str| {
            let sent = Sent {
                origin: Origin::Cache,
                bytes: 2_000_000,
                started: Instant::now(),
                items: vec![zip(name)],
            };
            let path = format!("/v1/providers/{name}.zip");
            sent.record(&runs, &Some((run.to_owned(), path)));
        };
        get("warm", "a");
        get("cold", "b");

        let warm = runs.take("warm", &journal);
        assert_eq!(
            (warm.hits, warm.misses, warm.bytes_from_cache),
            (1, 0, 2_000_000)
        );
        let cold = runs.take("cold", &journal);
        assert_eq!(
            (
                cold.hits,
                cold.misses,
                cold.bytes_from_upstream,
                cold.measured_bytes,
            ),
            (0, 1, 2_000_000, 2_000_000)
        );
        // The GET's own moment adds to the download's time, as a HEAD's does.
        assert!((0.5..0.6).contains(&cold.upstream_secs), "{cold:?}");
        assert_eq!(
            runs.recent(),
            Some(Throughput {
                bytes: 2_000_000,
                secs: 0.5
            })
        );
        // The download is one the next run, begun before it, waited for.
        runs.prepared("waiter", &prepared("b", Origin::Cache), started);
        let waiter = runs.take("waiter", &journal);
        assert_eq!((waiter.hits, waiter.misses), (0, 1));
    }

    /// Only large downloads make the recent throughput, and only the last
    /// few.
    #[test]
    fn the_recent_throughput_keeps_the_last_large_downloads() {
        let runs = Runs::default();
        assert_eq!(runs.recent(), None);
        runs.measured(999_999, 1.0);
        assert_eq!(runs.recent(), None);
        for _ in 0..RECENT_DOWNLOADS + 4 {
            runs.measured(2_000_000, 0.5);
        }
        assert_eq!(
            runs.recent(),
            Some(Throughput {
                bytes: 2_000_000 * RECENT_DOWNLOADS as u64,
                secs: 0.5 * RECENT_DOWNLOADS as f64,
            })
        );
    }
}
