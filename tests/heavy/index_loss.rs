//! The index is a cache of files: damaged or deleted, it is rebuilt from
//! the files, and a warm init needs no upstream afterwards. And a large
//! cached document is served to many clients at once from one shared copy.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::fixtures::http::get;
use crate::fixtures::{AnswerForm, ArchiveKind, ModuleSpec, ProviderSpec};
use crate::harness::{assert_success, main_tf, World};

/// Ends the whole test process if the test is still running after `limit`:
/// a hung terraform or server must not hang the suite.
struct Deadline(Arc<AtomicBool>);

impl Deadline {
    fn after(what: &'static str, limit: Duration) -> Deadline {
        let done = Arc::new(AtomicBool::new(false));
        let flag = done.clone();
        std::thread::spawn(move || {
            let step = Duration::from_millis(200);
            let mut waited = Duration::ZERO;
            while waited < limit {
                if flag.load(Ordering::SeqCst) {
                    return;
                }
                std::thread::sleep(step);
                waited += step;
            }
            eprintln!("{what}: still running after {limit:?}, giving up");
            std::process::exit(101);
        });
        Deadline(done)
    }
}

impl Drop for Deadline {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

const PROVIDERS: [(&str, &str, &str); 2] =
    [("hashicorp", "demo", "1.0.0"), ("acme", "thing", "2.1.0")];

fn providers() -> Vec<ProviderSpec> {
    vec![
        ProviderSpec::new("hashicorp", "demo", &["1.0.0"]),
        ProviderSpec::new("acme", "thing", &["2.0.0", "2.1.0"]),
    ]
}

/// Registry modules whose archives are HTTP archives on the upstream, in
/// the forms a registry may answer with.
fn modules() -> Vec<ModuleSpec> {
    vec![
        ModuleSpec::new("acme", "net", "aws", &["1.0.0", "1.1.0"]),
        ModuleSpec::new("acme", "db", "aws", &["2.0.0"])
            .with_answer(AnswerForm::Json200)
            .with_archive(ArchiveKind::Zip)
            .with_absolute_location(),
        ModuleSpec::new("acme", "dns", "aws", &["0.3.0"])
            .with_archive(ArchiveKind::ZipByQuery)
            .with_subdir("modules/sub"),
    ]
}

fn configuration() -> String {
    let mut text = main_tf(&PROVIDERS);
    for (name, source, version) in [
        ("net", "acme/net/aws", "1.1.0"),
        ("db", "acme/db/aws", "2.0.0"),
        ("dns", "acme/dns/aws", "0.3.0"),
    ] {
        text.push_str(&format!(
            "module \"{name}\" {{\n  source  = \"{source}\"\n  version = \"{version}\"\n}}\n\n"
        ));
    }
    text
}

fn lock_file(dir: &Path) -> String {
    std::fs::read_to_string(dir.join(".terraform.lock.hcl")).expect("a lock file")
}

fn index_dir(world: &World) -> PathBuf {
    world.cache_dir().join("index")
}

fn truncate(path: &Path) {
    let length = std::fs::metadata(path).unwrap().len();
    let file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    file.set_len(length / 2).unwrap();
}

/// Fills the cache with an init, damages the index with `damage` while no
/// server runs, stops the upstream, and inits a new directory: it must
/// succeed from the cache alone, with the same lock file.
fn offline_after(what: &'static str, damage: impl FnOnce(&World)) {
    let _deadline = Deadline::after(what, Duration::from_secs(240));
    let world = World::start(providers(), modules(), "");
    let cold = world.workdir_with("cold", &configuration());
    assert_success(&world.init(&cold), "cold init");
    world.stop_server();

    damage(&world);
    world.registry.stop();
    let offline = world.workdir_with("offline", &configuration());
    let output = world.init(&offline);
    assert_success(&output, &format!("offline init after {what}"));
    assert_eq!(lock_file(&offline), lock_file(&cold), "{what}");
    world.stop_server();
}

#[test]
fn offline_after_the_index_db_is_truncated() {
    let _turn = crate::file_turn(module_path!());
    offline_after("index/db truncated", |world| {
        truncate(&index_dir(world).join("db"))
    });
}

#[test]
fn offline_after_the_index_conf_is_truncated() {
    let _turn = crate::file_turn(module_path!());
    offline_after("index/conf truncated", |world| {
        truncate(&index_dir(world).join("conf"))
    });
}

#[test]
fn offline_after_an_index_snapshot_is_truncated() {
    let _turn = crate::file_turn(module_path!());
    offline_after("a snap.* truncated", |world| {
        // sled writes a snapshot when it opens a database whose log has
        // moved on since the last one: a second start.
        let mut server = world.serve();
        assert!(server.stop());
        let snapshot = std::fs::read_dir(index_dir(world))
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .find(|path| {
                path.file_name()
                    .is_some_and(|name| name.to_string_lossy().starts_with("snap."))
            })
            .expect("sled left a snapshot");
        truncate(&snapshot);
    });
}

#[test]
fn offline_after_the_index_is_deleted() {
    let _turn = crate::file_turn(module_path!());
    offline_after("the index deleted", |world| {
        std::fs::remove_dir_all(index_dir(world)).unwrap()
    });
}

/// `(VmRSS, VmHWM)` of `pid`, in bytes.
fn memory(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        let line = status
            .lines()
            .find(|line| line.starts_with(name))
            .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status"));
        let kb: u64 = line
            .split_whitespace()
            .nth(1)
            .and_then(|n| n.parse().ok())
            .unwrap();
        kb * 1024
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// A provider with this many versions has a version list of several MB.
const MANY_VERSIONS: usize = 40_000;
const PARALLEL: usize = 40;

#[test]
fn many_requests_for_a_large_cached_list_share_one_copy() {
    let _turn = crate::file_turn(module_path!());
    let _deadline = Deadline::after("parallel version lists", Duration::from_secs(180));
    let versions: Vec<String> = (0..MANY_VERSIONS)
        .map(|i| format!("1.{}.{}", i / 1000, i % 1000))
        .collect();
    let versions: Vec<&str> = versions.iter().map(String::as_str).collect();
    let world = World::new(vec![ProviderSpec::new("acme", "huge", &versions)]);
    let path = "/v1/providers/registry.terraform.io/acme/huge/versions";

    let mut server = world.serve();
    let first = get(&format!("{}{path}", server.url));
    assert_eq!(first.status, 200, "{}", first.text());
    let size = first.body.len() as u64;
    assert!(size > 4 << 20, "the list is only {size} bytes");
    assert!(server.stop());

    // A new process, with the list cached: one request reads it in, then
    // the peak is reset and 40 requests at once must share that copy.
    let server = world.serve();
    let pid = server.child.id();
    let url = format!("{}{path}", server.url);
    let warm = get(&url);
    assert_eq!(warm.status, 200);
    assert_eq!(warm.body.len() as u64, size);
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").expect("reset the peak RSS");
    let (baseline, _) = memory(pid);

    let clients: Vec<_> = (0..PARALLEL)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || {
                let answer = get(&url);
                (answer.status, answer.body.len() as u64)
            })
        })
        .collect();
    for client in clients {
        assert_eq!(client.join().unwrap(), (200, size));
    }
    let (rss, peak) = memory(pid);
    let growth = peak.max(rss).saturating_sub(baseline);
    eprintln!(
        "list {size} B; baseline RSS {baseline} B, after {rss} B, peak {peak} B, growth {growth} B"
    );
    assert!(
        growth < 2 * size,
        "{PARALLEL} requests for a {size} B list grew the server by {growth} B \
         (baseline {baseline} B, peak {peak} B, now {rss} B)"
    );
}
