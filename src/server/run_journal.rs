//! What happened while serving each `exec` run, beyond the bytes its
//! responses carried: the warnings and errors the server logged, and the
//! git fetches made for it.
//!
//! The router serves a run's requests inside a [`run_span`]; a tracing
//! [`JournalLayer`] files every WARN/ERROR event, and every git fetch
//! event (see `git::freshness::report_fetched`), under the run of the
//! span it happens in. `exec` gets them back when it ends the run, so it
//! can say what went wrong for *this* run only, once, instead of
//! repeating the server's log. The log keeps its full lines.
//!
//! Events outside a run's span (background refreshes, another run's
//! requests, a task spawned off the request) are not filed: a run is told
//! only what happened while serving it.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Instant;

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

use crate::protocol::closure::ClosureItem;
use crate::protocol::Problem;

use super::problems;

/// The name of the span a run's requests are served in.
const RUN_SPAN: &str = "run";
/// Distinct problems kept per run: past this, a run is broken enough.
const MAX_PROBLEMS: usize = 200;
/// Runs kept at once; an `exec` that died never ends its run, so the
/// oldest runs are dropped past this.
const MAX_RUNS: usize = 1024;
/// Git fetch times kept server-wide, for runs that waited for a fetch.
const MAX_FETCH_TIMES: usize = 4096;

/// The span a request of run `run` is served in.
pub fn run_span(run: &str) -> tracing::Span {
    tracing::info_span!(RUN_SPAN, id = run)
}

/// One git fetch made while serving a run.
#[derive(Debug, Clone, PartialEq)]
pub struct GitFetch {
    /// The mirror, as the closure names it.
    pub mirror: ClosureItem,
    pub bytes: u64,
    pub secs: f64,
}

/// Per run: its problems (each message once, in order) and git fetches.
#[derive(Default)]
pub struct RunJournal {
    runs: Mutex<HashMap<String, Record>>,
    /// When each mirror was last fetched, by any run.
    fetched: Mutex<HashMap<ClosureItem, Instant>>,
}

struct Record {
    created: Instant,
    problems: Vec<(Level, String)>,
    seen: HashSet<String>,
    fetches: Vec<GitFetch>,
}

impl Record {
    fn new() -> Record {
        Record {
            created: Instant::now(),
            problems: Vec::new(),
            seen: HashSet::new(),
            fetches: Vec::new(),
        }
    }
}

static GLOBAL: LazyLock<Arc<RunJournal>> = LazyLock::new(Arc::default);

impl RunJournal {
    /// The process's journal: the one the logging layer of `serve` fills.
    pub fn global() -> Arc<RunJournal> {
        GLOBAL.clone()
    }

    fn with_record(&self, run: &str, change: impl FnOnce(&mut Record)) {
        let mut runs = self.runs.lock().expect("journal lock");
        if !runs.contains_key(run) && runs.len() >= MAX_RUNS {
            let oldest = runs
                .iter()
                .min_by_key(|(_, record)| record.created)
                .map(|(id, _)| id.clone());
            if let Some(oldest) = oldest {
                runs.remove(&oldest);
            }
        }
        change(runs.entry(run.to_owned()).or_insert_with(Record::new));
    }

    fn problem(&self, run: &str, level: Level, message: String) {
        self.with_record(run, |record| {
            if record.problems.len() < MAX_PROBLEMS && record.seen.insert(message.clone()) {
                record.problems.push((level, message));
            }
        });
    }

    fn fetch(&self, run: &str, fetch: GitFetch) {
        {
            let mut fetched = self.fetched.lock().expect("journal lock");
            if fetched.len() >= MAX_FETCH_TIMES {
                fetched.clear();
            }
            fetched.insert(fetch.mirror.clone(), Instant::now());
        }
        self.with_record(run, |record| record.fetches.push(fetch));
    }

    /// When `mirror` was last fetched, by any run.
    pub fn fetched_at(&self, mirror: &ClosureItem) -> Option<Instant> {
        self.fetched
            .lock()
            .expect("journal lock")
            .get(mirror)
            .copied()
    }

    /// The git fetches made for `run` so far.
    pub fn fetches(&self, run: &str) -> Vec<GitFetch> {
        let runs = self.runs.lock().expect("journal lock");
        runs.get(run)
            .map(|record| record.fetches.clone())
            .unwrap_or_default()
    }

    /// `run` is over: its problems, grouped (see `problems`), and its git
    /// fetches; both are forgotten.
    pub fn take(&self, run: &str) -> (Vec<Problem>, Vec<GitFetch>) {
        let record = self.runs.lock().expect("journal lock").remove(run);
        match record {
            Some(record) => (problems::group(&record.problems), record.fetches),
            None => (Vec::new(), Vec::new()),
        }
    }
}

/// The layer `serve` logs through besides its log: it files events in the
/// process's journal, and looks at nothing it does not file, so it costs
/// the other events nothing.
pub fn layer<S>() -> impl Layer<S>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    let journaled = |meta: &tracing::Metadata<'_>| {
        if meta.is_span() {
            meta.name() == RUN_SPAN
        } else {
            *meta.level() <= Level::WARN || meta.fields().field(FETCHED_BYTES).is_some()
        }
    };
    JournalLayer::new(RunJournal::global())
        .with_filter(tracing_subscriber::filter::filter_fn(journaled))
}

/// The field of the event `git::report_fetched` sends.
const FETCHED_BYTES: &str = "git_fetched_bytes";

/// Files events under the run of the span they happen in.
pub struct JournalLayer {
    journal: Arc<RunJournal>,
}

impl JournalLayer {
    pub fn new(journal: Arc<RunJournal>) -> JournalLayer {
        JournalLayer { journal }
    }
}

/// The run id a run span carries, kept in the span's extensions.
struct RunTag(String);

impl<S> Layer<S> for JournalLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if attrs.metadata().name() != RUN_SPAN {
            return;
        }
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        if let (Some(run), Some(span)) = (fields.id, ctx.span(id)) {
            span.extensions_mut().insert(RunTag(run));
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let level = *event.metadata().level();
        let is_fetch = event.metadata().fields().field(FETCHED_BYTES).is_some();
        if level > Level::WARN && !is_fetch {
            return;
        }
        let Some(scope) = ctx.event_scope(event) else {
            return;
        };
        let run = scope
            .from_root()
            .find_map(|span| span.extensions().get::<RunTag>().map(|tag| tag.0.clone()));
        let Some(run) = run else {
            return;
        };
        let mut fields = Fields::default();
        event.record(&mut fields);
        match (fields.fetched_bytes, fields.mirror) {
            (Some(bytes), Some(mirror)) => {
                let fetch = GitFetch {
                    mirror: ClosureItem::GitMirror(mirror),
                    bytes,
                    secs: fields.fetch_secs.unwrap_or(0.0),
                };
                self.journal.fetch(&run, fetch);
            }
            _ => self
                .journal
                .problem(&run, level, fields.message.unwrap_or_default()),
        }
    }
}

/// The fields this layer reads.
#[derive(Default)]
struct Fields {
    id: Option<String>,
    message: Option<String>,
    fetched_bytes: Option<u64>,
    fetch_secs: Option<f64>,
    mirror: Option<String>,
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let text = || format!("{value:?}");
        match field.name() {
            "message" => self.message = Some(text()),
            "id" => self.id = Some(text().trim_matches('"').to_owned()),
            "git_mirror" => self.mirror = Some(text().trim_matches('"').to_owned()),
            _ => {}
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "message" => self.message = Some(value.to_owned()),
            "id" => self.id = Some(value.to_owned()),
            "git_mirror" => self.mirror = Some(value.to_owned()),
            _ => {}
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        if field.name() == FETCHED_BYTES {
            self.fetched_bytes = Some(value);
        }
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        if field.name() == "git_fetch_secs" {
            self.fetch_secs = Some(value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing::Instrument;
    use tracing_subscriber::layer::SubscriberExt;

    fn journaled(journal: &Arc<RunJournal>) -> impl Subscriber + Send + Sync {
        tracing_subscriber::registry().with(JournalLayer::new(journal.clone()))
    }

    /// Each run gets what happened in its own span, each message once;
    /// what happens outside any run is nobody's.
    #[tokio::test]
    async fn each_run_gets_only_its_own_problems() {
        let journal = Arc::new(RunJournal::default());
        let _default = tracing::subscriber::set_default(journaled(&journal));
        async {
            tracing::warn!("cannot reach x");
            tracing::warn!("cannot reach x");
            tracing::info!("fine");
        }
        .instrument(run_span("aaaaaaaa"))
        .await;
        async { tracing::error!("refusing y: bad checksum") }
            .instrument(run_span("bbbbbbbb"))
            .await;
        tracing::error!("outside every run");
        let other = |message: &str| Problem::Other {
            level: "WARN".to_owned(),
            message: message.to_owned(),
        };
        assert_eq!(journal.take("aaaaaaaa").0, [other("cannot reach x")]);
        assert_eq!(
            journal.take("bbbbbbbb").0,
            [Problem::Other {
                level: "ERROR".to_owned(),
                message: "refusing y: bad checksum".to_owned(),
            }]
        );
        assert_eq!(journal.take("aaaaaaaa").0, []);
    }

    /// The event the git mirrors send after a fetch is filed as the run's
    /// fetch, not as a problem.
    #[tokio::test]
    async fn a_git_fetch_is_filed_under_its_run() {
        let journal = Arc::new(RunJournal::default());
        let _default = tracing::subscriber::set_default(journaled(&journal));
        async { crate::git::report_fetched("git/h/o/r.git", 42_000, 1.5) }
            .instrument(run_span("cccccccc"))
            .await;
        let mirror = ClosureItem::GitMirror("git/h/o/r.git".to_owned());
        assert!(journal.fetched_at(&mirror).is_some());
        let (problems, fetches) = journal.take("cccccccc");
        assert_eq!(problems, []);
        assert_eq!(
            fetches,
            [GitFetch {
                mirror,
                bytes: 42_000,
                secs: 1.5
            }]
        );
    }
}
