//! Cached upstream documents with a freshness time and stale-while-revalidate.
//!
//! The rules, in order: a fresh copy is served as it is; a copy within the
//! stale window is served at once while one background refresh runs; an
//! older or missing copy is fetched, but if the upstream fails or is slower
//! than the caller's deadline, any copy, whatever its age, beats an error.
//! Concurrent requests for one key share one upstream fetch, and a fetch
//! outlives the request that started it so its answer is stored.
//!
//! A copy fetched with a credential is private: the rules above apply to it
//! only for a [`Reader`] that may read it. For any other reader the copy
//! does not exist, not even as a fallback: it is fetched again with that
//! reader's credential (or none), and if the upstream cannot be asked, the
//! answer is [`FetchError::Withheld`].

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::{BoxFuture, FutureExt, Shared};
use tracing::Instrument;

use super::artifacts::SecondTier;
use super::doc_files;
use super::freshness::Age;
use super::index::{now_ms, Document, Index};
use super::locks::OncePerKey;
use crate::sealed::Sealed;

/// How many bytes of document bodies are kept in memory, shared by every
/// request that serves them: a version list asked for by many clients at
/// once is read from the index once, not once per request.
const MEMORY_BYTES: usize = 64 << 20;

/// How long a document stays fresh, and how long after that it may still be
/// served while it is refreshed. `None` means the document never goes stale
/// (answers about published, immutable versions).
#[derive(Debug, Clone, Copy)]
pub struct Freshness {
    pub ttl: Option<Duration>,
    pub stale_while_revalidate: Duration,
    /// A copy fetched before this time (ms since the epoch) is expired,
    /// whatever its age. An instant rather than an age, because an age is
    /// measured when it is checked, later than when it was computed.
    pub fetched_since_ms: u64,
    /// The document is worth sharing as a last-known-good copy (a version
    /// list): a public copy fetched is offered to the second tier, and the
    /// tier's copy stands in when the upstream fails and none is cached.
    pub shared: bool,
}

impl Freshness {
    pub const IMMUTABLE: Freshness = Freshness::within(None, Duration::ZERO);

    /// Fresh for `ttl`, then served for `stale_while_revalidate` while refreshed.
    pub const fn within(ttl: Option<Duration>, stale_while_revalidate: Duration) -> Freshness {
        Freshness {
            ttl,
            stale_while_revalidate,
            fetched_since_ms: 0,
            shared: false,
        }
    }

    /// The same rules, for a document shared as a last-known-good copy.
    pub const fn shared(self) -> Freshness {
        Freshness {
            shared: true,
            ..self
        }
    }

    /// Fresh if fetched at or after `started_ms`, expired otherwise.
    pub const fn fetched_since(started_ms: u64) -> Freshness {
        Freshness {
            ttl: None,
            stale_while_revalidate: Duration::ZERO,
            fetched_since_ms: started_ms,
            shared: false,
        }
    }

    fn age_class(&self, doc: &Document, now_ms: u64) -> Age {
        if doc.fetched_at_ms < self.fetched_since_ms {
            return Age::Expired;
        }
        let Some(ttl) = self.ttl else {
            return Age::Fresh;
        };
        let age = Duration::from_millis(now_ms.saturating_sub(doc.fetched_at_ms));
        Age::classify(age, ttl, self.stale_while_revalidate)
    }
}

/// Who a document is served to, which decides which cached copies count.
#[derive(Debug, Clone, Default)]
pub struct Reader {
    /// The registry host the credential is for, named in a refusal.
    pub host: String,
    /// The hash of the credential an upstream fetch for this reader carries;
    /// a document it fetches is stored with it. `None`: fetched without
    /// one, and stored as public.
    pub credential_sha256: Option<String>,
    /// May read a copy that another credential fetched: the upstream
    /// accepted this reader's credential recently, or it holds a grant
    /// tfmirror issued with the private answer.
    pub reads_private: bool,
}

impl Reader {
    /// Anyone, for documents that are never private.
    pub fn public() -> Reader {
        Reader::default()
    }

    /// Whether this reader may be given `doc`.
    pub fn may_read(&self, doc: &Document) -> bool {
        match &doc.credential_sha256 {
            None => true,
            Some(owner) => {
                self.reads_private || self.credential_sha256.as_deref() == Some(owner.as_str())
            }
        }
    }

    /// One upstream fetch is shared only by readers whose requests carry the
    /// same credential: another's answer may be one this reader must not see.
    fn flight_key(&self, key: &str) -> String {
        match &self.credential_sha256 {
            None => key.to_owned(),
            Some(hash) => format!("{key}\0{hash}"),
        }
    }
}

/// Why an upstream fetch produced no document.
#[derive(Debug, Clone, thiserror::Error)]
pub enum FetchError {
    /// The upstream answered, and the answer is for the client to see (a 404
    /// for a name that does not exist): passed through, never cached, and
    /// never replaced by a stale copy.
    #[error("upstream answered {status}")]
    Answer { status: u16, body: String },
    /// The upstream could not be reached, timed out, failed, or sent
    /// something unusable: a stale copy is served instead, if there is one.
    #[error("{0}")]
    Unavailable(String),
    /// A copy is cached, but it was fetched with a credential this request
    /// does not hold, and the upstream could not be asked whether this
    /// request may have it: refused, whatever the copy's age.
    #[error(
        "the cached copy was fetched with a credential, and {host} could not be asked \
         whether this request may read it ({why})"
    )]
    Withheld { host: String, why: String },
    /// Nothing this request may read is cached, and the server is sealed:
    /// the upstream was not asked. The caller names the document.
    #[error("nothing cached, and tfmirror is offline (sealed: {0})")]
    Offline(Sealed),
}

impl FetchError {
    /// The upstream or the cache refused this requester, as opposed to
    /// failing: no other copy (such as a file on disk) may stand in.
    pub fn denies_access(&self) -> bool {
        matches!(
            self,
            FetchError::Withheld { .. }
                | FetchError::Answer {
                    status: 401 | 403,
                    ..
                }
        )
    }
}

/// How a document was obtained.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Provenance {
    Fresh,
    /// Stale, with a background refresh under way.
    Revalidating,
    Fetched,
    /// Stale, served because the upstream failed or was too slow; the
    /// string says why.
    StaleFallback(String),
}

#[derive(Debug, Clone)]
pub struct Served {
    pub doc: Document,
    pub provenance: Provenance,
}

type Flight = Shared<BoxFuture<'static, Result<Document, FetchError>>>;

/// Recently used documents, whose bodies are shared bytes: a copy handed
/// out costs a reference count, not the body.
#[derive(Default)]
struct Memory {
    docs: HashMap<String, Document>,
    /// Keys, least recently stored first.
    order: VecDeque<String>,
    bytes: usize,
}

impl Memory {
    fn insert(&mut self, key: &str, doc: &Document) {
        self.remove(key);
        let size = doc.body.len();
        if size > MEMORY_BYTES / 2 {
            return;
        }
        while self.bytes + size > MEMORY_BYTES {
            let Some(oldest) = self.order.pop_front() else {
                break;
            };
            if let Some(old) = self.docs.remove(&oldest) {
                self.bytes -= old.body.len();
            }
        }
        self.docs.insert(key.to_owned(), doc.clone());
        self.order.push_back(key.to_owned());
        self.bytes += size;
    }

    fn remove(&mut self, key: &str) {
        if let Some(old) = self.docs.remove(key) {
            self.bytes -= old.body.len();
            self.order.retain(|k| k != key);
        }
    }
}

#[derive(Clone)]
pub struct Documents {
    index: Index,
    /// The cache directory, where each document is also kept as a file
    /// (see `doc_files`).
    root: PathBuf,
    /// The upstream fetch running for each flight key.
    in_flight: OncePerKey<Flight>,
    memory: Arc<Mutex<Memory>>,
    files: Arc<doc_files::FileWriter>,
    /// Held while a document missing from memory is read, so that
    /// concurrent requests for it read it once.
    loading: Arc<Mutex<()>>,
    /// Where shared documents go, and are looked for when the upstream
    /// fails (see [`Freshness::shared`]).
    tier: Option<Arc<dyn SecondTier>>,
    /// Set on a sealed server: every cached copy counts as fresh whatever
    /// its age, and a missing one is [`FetchError::Offline`] without a
    /// fetch.
    sealed: Option<Sealed>,
}

impl Documents {
    pub fn new(index: Index, root: &Path) -> Documents {
        Documents {
            index,
            root: root.to_owned(),
            in_flight: OncePerKey::default(),
            memory: Arc::default(),
            files: Arc::new(doc_files::FileWriter::start(root)),
            loading: Arc::default(),
            tier: None,
            sealed: None,
        }
    }

    /// Seals the cache (see `sealed`): no fetch is started from here on.
    pub(super) fn set_sealed(&mut self, sealed: Option<Sealed>) {
        self.sealed = sealed;
    }

    /// Shares documents with `tier` and falls back on its copies.
    pub(super) fn set_tier(&mut self, tier: Arc<dyn SecondTier>) {
        self.tier = Some(tier);
    }

    /// Blocks until every document stored so far is also on disk as its
    /// file.
    pub fn wait_for_files(&self) {
        self.files.wait();
    }

    /// Serves a document that is never private (one tfmirror derives, or
    /// one that is only used internally) by the rules above.
    pub async fn get<F, Fut>(
        &self,
        key: &str,
        freshness: Freshness,
        deadline: Duration,
        fetch: F,
    ) -> Result<Served, FetchError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<String, FetchError>> + Send + 'static,
    {
        self.get_for(&Reader::public(), key, freshness, deadline, fetch)
            .await
    }

    /// Serves `key` to `reader` by the rules above. `fetch` makes the
    /// upstream request with the reader's credential; it is called at most
    /// once, and only if an upstream request is needed and none with the
    /// same credential is already running.
    pub async fn get_for<F, Fut>(
        &self,
        reader: &Reader,
        key: &str,
        freshness: Freshness,
        deadline: Duration,
        fetch: F,
    ) -> Result<Served, FetchError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<String, FetchError>> + Send + 'static,
    {
        let stored = self.cached(key);
        let withheld = stored.as_ref().is_some_and(|doc| !reader.may_read(doc));
        let cached = stored.filter(|doc| reader.may_read(doc));
        if let Some(sealed) = &self.sealed {
            return match cached {
                Some(doc) => Ok(served(doc, Provenance::Fresh)),
                None => Err(FetchError::Offline(sealed.clone())),
            };
        }
        if let Some(doc) = &cached {
            match freshness.age_class(doc, now_ms()) {
                Age::Fresh => return Ok(served(doc.clone(), Provenance::Fresh)),
                Age::Revalidate => {
                    drop(self.flight(key, reader, freshness.shared, fetch));
                    return Ok(served(doc.clone(), Provenance::Revalidating));
                }
                Age::Expired => {}
            }
        }
        let flight = self.flight(key, reader, freshness.shared, fetch);
        let result = match cached {
            // With nothing to fall back on, waiting is the only useful answer.
            None => flight.await,
            Some(_) => match tokio::time::timeout(deadline, flight).await {
                Ok(result) => result,
                Err(_) => Err(FetchError::Unavailable(format!(
                    "upstream slower than {}s",
                    deadline.as_secs_f32()
                ))),
            },
        };
        let cached = match (&result, cached) {
            (Err(FetchError::Unavailable(_)), None) if freshness.shared => {
                self.tier_copy(key).await
            }
            (_, cached) => cached,
        };
        match (result, cached) {
            (Ok(doc), _) => Ok(served(doc, Provenance::Fetched)),
            (Err(FetchError::Unavailable(why)), Some(doc)) => {
                Ok(served(doc, Provenance::StaleFallback(why)))
            }
            (Err(FetchError::Unavailable(why)), None) if withheld => Err(FetchError::Withheld {
                host: reader.host.clone(),
                why,
            }),
            (Err(e), _) => Err(e),
        }
    }

    /// The stored copy, if any: from memory, else the index, else its file
    /// (which is put back into the index); an unreadable record counts as
    /// none.
    pub fn cached(&self, key: &str) -> Option<Document> {
        if let Some(doc) = self.remembered(key) {
            return Some(doc);
        }
        let _loading = self.loading.lock().expect("loading lock poisoned");
        // Another request may have read it while this one waited.
        if let Some(doc) = self.remembered(key) {
            return Some(doc);
        }
        let doc = match self.index.document(key) {
            Ok(Some(doc)) => Some(doc),
            Ok(None) => self.restore_from_file(key),
            Err(e) => {
                tracing::warn!("{e}; reading its file");
                self.restore_from_file(key)
            }
        }?;
        self.remember(key, &doc);
        Some(doc)
    }

    fn remembered(&self, key: &str) -> Option<Document> {
        let memory = self.memory.lock().expect("document memory poisoned");
        memory.docs.get(key).cloned()
    }

    fn remember(&self, key: &str, doc: &Document) {
        let mut memory = self.memory.lock().expect("document memory poisoned");
        memory.insert(key, doc);
    }

    /// The file of a document the index does not hold (it was lost), put
    /// back into the index.
    fn restore_from_file(&self, key: &str) -> Option<Document> {
        let doc = doc_files::read(&self.root, key).unwrap_or_else(|e| {
            tracing::warn!("cannot read the file of document {key}: {e}");
            None
        })?;
        if let Err(e) = self.index.put_document(key, &doc) {
            tracing::warn!("cannot store {key} in the index: {e}");
        }
        Some(doc)
    }

    /// Stores a document that tfmirror derived itself rather than fetched.
    pub fn put(&self, key: &str, doc: &Document) -> Result<(), super::index::IndexError> {
        self.store(key, doc)
    }

    /// Stores `doc` in the index and in memory, and has its file (the copy
    /// the index is rebuilt from) written in the background. A file that
    /// cannot be written is logged, not fatal: the index still serves it.
    fn store(&self, key: &str, doc: &Document) -> Result<(), super::index::IndexError> {
        self.files.write(key, doc);
        let stored = self.index.put_document(key, doc);
        let mut memory = self.memory.lock().expect("document memory poisoned");
        memory.insert(key, doc);
        stored
    }

    /// Forgets documents the index has dropped: their files and copies in
    /// memory. Blocks until the files are gone.
    pub fn forget(&self, keys: &[String]) {
        let mut memory = self.memory.lock().expect("document memory poisoned");
        for key in keys {
            memory.remove(key);
            self.files.remove(key);
        }
        drop(memory);
        // Until its file is gone, a pruned document would be read back
        // from it (see `cached`). Removals are cheap; what this may wait
        // for is writes queued before them.
        self.files.wait();
    }

    /// The second tier's copy of a shared document, stored here too so
    /// that it keeps standing in while the upstream is down. Only public
    /// copies are ever shared.
    async fn tier_copy(&self, key: &str) -> Option<Document> {
        let tier = self.tier.as_ref()?;
        let doc = doc_files::decode(key, &tier.fetch_document(key).await?)?;
        if doc.credential_sha256.is_some() {
            return None;
        }
        tracing::info!(
            "serving the copy of {key} from {}, the upstream being down",
            tier.describe()
        );
        if let Err(e) = self.store(key, &doc) {
            tracing::warn!("cannot store {key} in the index: {e}");
        }
        Some(doc)
    }

    /// Offers a public copy of a shared document just fetched to the
    /// second tier, when it differs from the copy it replaces: a version
    /// list is fetched at every run, and mostly unchanged.
    fn share(&self, key: &str, doc: &Document) {
        let Some(tier) = &self.tier else {
            return;
        };
        // The copy this one replaces: called before `doc` is stored.
        let unchanged = self.cached(key).is_some_and(|old| old.body == doc.body);
        if doc.credential_sha256.is_none() && !unchanged {
            tier.offer_document(key, doc_files::encode(key, doc));
        }
    }

    /// Joins the running fetch for `key` with the reader's credential, or
    /// starts one on its own task so that it completes, and is stored, even
    /// if every caller goes away.
    fn flight<F, Fut>(&self, key: &str, reader: &Reader, shared: bool, fetch: F) -> Flight
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<String, FetchError>> + Send + 'static,
    {
        let flight_key = reader.flight_key(key);
        self.in_flight.join_or_start(&flight_key, |running| {
            let upstream = fetch();
            let this = self.clone();
            let owned_key = key.to_owned();
            let credential_sha256 = reader.credential_sha256.clone();
            let task = tokio::spawn(
                async move {
                    let result = upstream.await.map(|body| Document {
                        fetched_at_ms: now_ms(),
                        body: body.into(),
                        credential_sha256,
                    });
                    if let Ok(doc) = &result {
                        if shared {
                            this.share(&owned_key, doc);
                        }
                        if let Err(e) = this.store(&owned_key, doc) {
                            tracing::warn!("cannot store {owned_key} in the index: {e}");
                        }
                    }
                    // Stored first: the next fetch of the key starts from it.
                    drop(running);
                    result
                }
                // What it logs is the run's that started it (see `server::run_journal`).
                .in_current_span(),
            );
            async move {
                task.await.unwrap_or_else(|e| {
                    Err(FetchError::Unavailable(format!("fetch task failed: {e}")))
                })
            }
            .boxed()
            .shared()
        })
    }
}

fn served(doc: Document, provenance: Provenance) -> Served {
    Served { doc, provenance }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn documents() -> (tempfile::TempDir, Documents) {
        let dir = tempfile::tempdir().unwrap();
        let index = Index::open(&dir.path().join("index")).unwrap().index;
        let docs = Documents::new(index, dir.path());
        (dir, docs)
    }

    const TTL: Freshness =
        Freshness::within(Some(Duration::from_secs(60)), Duration::from_secs(60));

    fn age(docs: &Documents, key: &str, by: Duration) {
        let mut doc = docs.cached(key).unwrap();
        doc.fetched_at_ms -= by.as_millis() as u64;
        docs.put(key, &doc).unwrap();
    }

    async fn get(
        docs: &Documents,
        answer: Result<&'static str, FetchError>,
    ) -> Result<Served, FetchError> {
        docs.get("k", TTL, Duration::from_millis(200), || async move {
            answer.map(str::to_owned)
        })
        .await
    }

    /// Sealed, a copy of any age is served as it is and a missing one is
    /// refused; the fetch is never called in either case.
    #[tokio::test]
    async fn a_sealed_cache_never_fetches() {
        let (_dir, mut docs) = documents();
        get(&docs, Ok("v1")).await.unwrap();
        age(&docs, "k", Duration::from_secs(10_000));
        docs.set_sealed(Some(Sealed::Environment));
        let calls = Arc::new(AtomicUsize::new(0));
        let fetch = |key: &'static str| {
            let calls = calls.clone();
            docs.get(key, TTL, Duration::from_millis(200), move || async move {
                calls.fetch_add(1, Ordering::SeqCst);
                Ok("fetched".to_owned())
            })
        };
        let old = fetch("k").await.unwrap();
        assert_eq!(
            (old.doc.body.as_str(), old.provenance),
            ("v1", Provenance::Fresh)
        );
        let missing = fetch("absent").await.unwrap_err();
        assert!(
            matches!(&missing, FetchError::Offline(Sealed::Environment)),
            "{missing}"
        );
        assert_eq!(calls.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn fresh_then_revalidating_then_fallback() {
        let (_dir, docs) = documents();
        let first = get(&docs, Ok("v1")).await.unwrap();
        assert_eq!(
            (first.doc.body.as_str(), first.provenance),
            ("v1", Provenance::Fetched)
        );
        let again = get(&docs, Ok("unused")).await.unwrap();
        assert_eq!(
            (again.doc.body.as_str(), again.provenance),
            ("v1", Provenance::Fresh)
        );

        age(&docs, "k", Duration::from_secs(90));
        let stale = get(&docs, Ok("v2")).await.unwrap();
        assert_eq!(
            (stale.doc.body.as_str(), stale.provenance),
            ("v1", Provenance::Revalidating)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(
            docs.cached("k").unwrap().body,
            "v2",
            "background refresh stored"
        );

        age(&docs, "k", Duration::from_secs(1000));
        let fallback = get(&docs, Err(FetchError::Unavailable("down".into())))
            .await
            .unwrap();
        assert_eq!(fallback.doc.body, "v2");
        assert_eq!(
            fallback.provenance,
            Provenance::StaleFallback("down".into())
        );
    }

    /// A copy fetched since a run began stays fresh however long the run
    /// takes to ask for it; the CI failure this guards against was a relative
    /// age computed a few milliseconds before it was checked.
    #[tokio::test]
    async fn fetched_since_is_an_instant_not_an_age() {
        let (_dir, docs) = documents();
        get(&docs, Ok("before")).await.unwrap();
        let started_ms = docs.cached("k").unwrap().fetched_at_ms + 1;
        let since = Freshness::fetched_since(started_ms);
        let fetch = |body: &'static str| move || async move { Ok(body.to_owned()) };
        let deadline = Duration::from_secs(5);

        let refetched = docs.get("k", since, deadline, fetch("during")).await;
        assert_eq!(
            refetched.unwrap().provenance,
            Provenance::Fetched,
            "older than the run"
        );
        let mut doc = docs.cached("k").unwrap();
        doc.fetched_at_ms = started_ms;
        docs.put("k", &doc).unwrap();
        let kept = docs
            .get("k", since, deadline, fetch("unused"))
            .await
            .unwrap();
        assert_eq!(
            (kept.doc.body.as_str(), kept.provenance),
            ("during", Provenance::Fresh)
        );
    }

    /// The index is a cache of the files: a document it lost is read back
    /// from its file, and put back into it.
    #[tokio::test]
    async fn a_document_the_index_lost_comes_from_its_file() {
        let dir = tempfile::tempdir().unwrap();
        {
            let index = Index::open(&dir.path().join("index")).unwrap().index;
            let docs = Documents::new(index.clone(), dir.path());
            get(&docs, Ok("v1")).await.unwrap();
            docs.wait_for_files();
            index.flush().unwrap();
        }
        std::fs::remove_dir_all(dir.path().join("index")).unwrap();
        let index = Index::open(&dir.path().join("index")).unwrap().index;
        let docs = Documents::new(index.clone(), dir.path());
        let served = get(&docs, Err(FetchError::Unavailable("down".into())))
            .await
            .unwrap();
        assert_eq!(
            (served.doc.body.as_str(), served.provenance),
            ("v1", Provenance::Fresh)
        );
        assert_eq!(index.document("k").unwrap().unwrap().body, "v1");
    }

    #[test]
    fn memory_keeps_the_newest_documents_within_its_bound() {
        let mut memory = Memory::default();
        let big = Document::public(1, "x".repeat(MEMORY_BYTES / 3));
        for key in ["a", "b", "c", "d"] {
            memory.insert(key, &big);
        }
        assert!(memory.bytes <= MEMORY_BYTES);
        assert!(!memory.docs.contains_key("a"));
        assert!(memory.docs.contains_key("d"));
        memory.insert("huge", &Document::public(1, "x".repeat(MEMORY_BYTES)));
        assert!(!memory.docs.contains_key("huge"), "too big to keep");
        memory.remove("d");
        assert_eq!(
            memory.bytes,
            memory.docs.values().map(|d| d.body.len()).sum::<usize>()
        );
    }

    #[tokio::test]
    async fn answers_pass_through_and_are_not_cached() {
        let (_dir, docs) = documents();
        let err = get(
            &docs,
            Err(FetchError::Answer {
                status: 404,
                body: "nope".into(),
            }),
        )
        .await
        .unwrap_err();
        assert!(matches!(err, FetchError::Answer { status: 404, .. }));
        assert!(docs.cached("k").is_none());
    }

    #[tokio::test]
    async fn a_slow_upstream_does_not_delay_a_stale_copy() {
        let (_dir, docs) = documents();
        get(&docs, Ok("old")).await.unwrap();
        age(&docs, "k", Duration::from_secs(1000));
        let served = docs
            .get("k", TTL, Duration::from_millis(100), || async {
                tokio::time::sleep(Duration::from_millis(400)).await;
                Ok("new".to_owned())
            })
            .await
            .unwrap();
        assert_eq!(served.doc.body, "old");
        assert!(matches!(served.provenance, Provenance::StaleFallback(_)));
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(
            docs.cached("k").unwrap().body,
            "new",
            "the slow fetch still landed"
        );
    }

    fn reader(credential: Option<&str>, reads_private: bool) -> Reader {
        Reader {
            host: "registry.example".into(),
            credential_sha256: credential.map(str::to_owned),
            reads_private,
        }
    }

    /// Serves "k" to `reader`; `answer` is what the upstream says to the
    /// fetch this needs, if it needs one (`Err("unused")` otherwise).
    async fn get_as(
        docs: &Documents,
        reader: &Reader,
        answer: Result<&'static str, FetchError>,
    ) -> Result<Served, FetchError> {
        docs.get_for(
            reader,
            "k",
            TTL,
            Duration::from_millis(200),
            || async move { answer.map(str::to_owned) },
        )
        .await
    }

    fn unused() -> Result<&'static str, FetchError> {
        Err(FetchError::Unavailable(
            "the cached copy should have served".into(),
        ))
    }

    fn down() -> Result<&'static str, FetchError> {
        Err(FetchError::Unavailable("connection refused".into()))
    }

    /// A document fetched with credential "a", as the index holds it.
    async fn private_copy() -> (tempfile::TempDir, Documents) {
        let (dir, docs) = documents();
        let fetched = get_as(&docs, &reader(Some("a"), false), Ok("secret list"))
            .await
            .unwrap();
        assert_eq!(fetched.doc.credential_sha256.as_deref(), Some("a"));
        (dir, docs)
    }

    #[tokio::test]
    async fn the_credential_that_fetched_a_copy_reads_it_even_stale() {
        let (_dir, docs) = private_copy().await;
        let again = get_as(&docs, &reader(Some("a"), false), unused()).await;
        assert_eq!(again.unwrap().provenance, Provenance::Fresh);
        age(&docs, "k", Duration::from_secs(1000));
        let fallback = get_as(&docs, &reader(Some("a"), false), down()).await;
        assert_eq!(fallback.unwrap().doc.body, "secret list");
    }

    #[tokio::test]
    async fn an_accepted_credential_reads_another_ones_copy() {
        let (_dir, docs) = private_copy().await;
        let served = get_as(&docs, &reader(Some("b"), true), unused()).await;
        let served = served.unwrap();
        assert_eq!(
            (served.doc.body.as_str(), served.provenance),
            ("secret list", Provenance::Fresh)
        );
    }

    #[tokio::test]
    async fn another_credential_is_asked_of_the_upstream() {
        let (_dir, docs) = private_copy().await;
        let refused = FetchError::Answer {
            status: 403,
            body: "forbidden".into(),
        };
        let err = get_as(&docs, &reader(Some("b"), false), Err(refused))
            .await
            .unwrap_err();
        assert!(
            matches!(err, FetchError::Answer { status: 403, .. }),
            "{err:?}"
        );

        let served = get_as(&docs, &reader(Some("b"), false), Ok("b's list"))
            .await
            .unwrap();
        assert_eq!(
            (served.doc.body.as_str(), served.provenance),
            ("b's list", Provenance::Fetched)
        );
        let stored = docs.cached("k").unwrap();
        assert_eq!(stored.credential_sha256.as_deref(), Some("b"));
    }

    #[tokio::test]
    async fn no_credential_gets_what_the_upstream_gives_without_one() {
        let (_dir, docs) = private_copy().await;
        let unauthorized = FetchError::Answer {
            status: 401,
            body: "unauthorized".into(),
        };
        let err = get_as(&docs, &reader(None, false), Err(unauthorized))
            .await
            .unwrap_err();
        assert!(matches!(err, FetchError::Answer { status: 401, .. }));
        assert_eq!(docs.cached("k").unwrap().body, "secret list", "kept");

        let public = get_as(&docs, &reader(None, false), Ok("public after all"))
            .await
            .unwrap();
        assert_eq!(public.doc.body, "public after all");
        assert_eq!(docs.cached("k").unwrap().credential_sha256, None);
        let anyone = get_as(&docs, &reader(Some("c"), false), unused()).await;
        assert_eq!(anyone.unwrap().provenance, Provenance::Fresh, "public now");
    }

    #[tokio::test]
    async fn a_private_copy_is_withheld_when_the_upstream_is_down() {
        let (_dir, docs) = private_copy().await;
        age(&docs, "k", Duration::from_secs(1000));
        for stranger in [reader(None, false), reader(Some("b"), false)] {
            let err = get_as(&docs, &stranger, down()).await.unwrap_err();
            assert!(
                matches!(&err, FetchError::Withheld { host, .. } if host == "registry.example"),
                "{err:?}"
            );
            assert!(err.denies_access());
        }
        let slow = docs
            .get_for(
                &reader(None, false),
                "k",
                TTL,
                Duration::from_millis(50),
                || async {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    Err(FetchError::Unavailable("too slow".into()))
                },
            )
            .await;
        assert!(matches!(slow, Err(FetchError::Withheld { .. })));
    }

    #[tokio::test]
    async fn fetches_with_different_credentials_are_not_shared() {
        let (_dir, docs) = documents();
        let slow_private = {
            let docs = docs.clone();
            tokio::spawn(async move {
                docs.get_for(
                    &reader(Some("a"), false),
                    "k",
                    TTL,
                    Duration::from_secs(5),
                    || async {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        Ok("secret list".to_owned())
                    },
                )
                .await
            })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        let anonymous = get_as(
            &docs,
            &reader(None, false),
            Err(FetchError::Answer {
                status: 404,
                body: "not found".into(),
            }),
        )
        .await;
        assert!(matches!(
            anonymous,
            Err(FetchError::Answer { status: 404, .. })
        ));
        assert_eq!(slow_private.await.unwrap().unwrap().doc.body, "secret list");
    }

    #[tokio::test]
    async fn concurrent_misses_share_one_fetch() {
        let (_dir, docs) = documents();
        let calls = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let docs = docs.clone();
                let calls = calls.clone();
                tokio::spawn(async move {
                    docs.get("k", TTL, Duration::from_secs(5), move || {
                        calls.fetch_add(1, Ordering::SeqCst);
                        async {
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            Ok("shared".to_owned())
                        }
                    })
                    .await
                })
            })
            .collect();
        for task in tasks {
            assert_eq!(task.await.unwrap().unwrap().doc.body, "shared");
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    /// A version list is shared when fetched without a credential and
    /// changed; a cache that never had it falls back on the shared copy
    /// when the upstream is down, and keeps it.
    #[tokio::test]
    async fn a_shared_list_stands_in_for_a_down_upstream_on_another_cache() {
        let tier = Arc::new(crate::store::memory_tier::MemoryTier::default());
        let shared = TTL.shared();
        let fetch = |docs: &Documents, reader: Reader, answer: Result<&'static str, FetchError>| {
            let docs = docs.clone();
            async move {
                let fetch = || async move { answer.map(str::to_owned) };
                docs.get_for(&reader, "k", shared, Duration::from_millis(200), fetch)
                    .await
            }
        };
        let (_first_dir, mut first) = documents();
        first.set_tier(tier.clone());
        fetch(&first, Reader::public(), Ok("v1")).await.unwrap();
        let mut expired = first.cached("k").unwrap();
        expired.fetched_at_ms = 0;
        first.put("k", &expired).unwrap();
        fetch(&first, Reader::public(), Ok("v1")).await.unwrap();
        assert_eq!(
            *tier.offered.lock().unwrap(),
            ["k"],
            "unchanged: offered once"
        );
        first.put("k", &expired).unwrap();
        let private = fetch(&first, reader(Some("a"), false), Ok("private"))
            .await
            .unwrap();
        assert_eq!(&*private.doc.body, "private", "fetched with the credential");
        fetch(&first, reader(Some("a"), false), Ok("private"))
            .await
            .unwrap();
        assert_eq!(
            tier.offered.lock().unwrap().len(),
            1,
            "never a private copy"
        );

        let (_second_dir, mut second) = documents();
        second.set_tier(tier.clone());
        let served = fetch(&second, Reader::public(), down()).await.unwrap();
        assert_eq!(&*served.doc.body, "v1");
        assert!(matches!(served.provenance, Provenance::StaleFallback(_)));
        assert!(second.cached("k").is_some(), "kept");

        let (_third_dir, third) = documents();
        assert!(
            fetch(&third, Reader::public(), down()).await.is_err(),
            "no tier, no copy"
        );
    }
}
