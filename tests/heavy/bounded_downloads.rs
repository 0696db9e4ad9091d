//! Downloads bounded in size, unpacked size and time (issue 16): an xz
//! bomb, an endless provider zip, an endless module archive and an upstream
//! that drips its bytes are each given up at their cap, with the cap's
//! config key in the error, nothing half-written left in the cache, and
//! the requests waiting for them released.

use std::path::Path;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::fixtures::http::get;
use crate::fixtures::{Fault, ModuleFault, ModuleSpec, ProviderSpec};
use crate::harness::{assert_failure, ServeProcess, World};
use bytes::Bytes;

/// Small caps, so an endless body reaches them in a moment.
const SMALL_CAPS: &str =
    "max_provider_package_size = \"50MB\"\nmax_module_archive_size = \"50MB\"\n";
/// What the bomb unpacks to: more than the default `max_module_unpacked_size`.
const BOMB_SIZE: u64 = 1 << 30;
/// The bound on the server's peak memory while it checks the bomb.
const PEAK_RSS_LIMIT_KB: u64 = 200 * 1024;

/// `tfmirror serve` with its log in `<cache>/server.log`, where a
/// background server writes it and `exec` relays its errors from.
fn serve_logged(world: &World) -> ServeProcess {
    std::fs::create_dir_all(world.cache_dir()).unwrap();
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(world.cache_dir().join("server.log"))
        .unwrap();
    let mut command = world.tfmirror(&["serve"]);
    command.stderr(log);
    world.serve_command(command)
}

/// The most memory the process has held, from `/proc/<pid>/status`.
fn peak_rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .expect("VmHWM in /proc/<pid>/status");
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// A `.tar.xz` of one entry of [`BOMB_SIZE`] zero bytes: a few hundred
/// kilobytes that unpack to a gibibyte. Built once per test binary.
fn xz_bomb() -> Bytes {
    static BOMB: OnceLock<Bytes> = OnceLock::new();
    BOMB.get_or_init(|| {
        let mut tar = tar::Builder::new(xz2::write::XzEncoder::new(Vec::new(), 1));
        let mut header = tar::Header::new_gnu();
        header.set_path("main.tf").unwrap();
        header.set_size(BOMB_SIZE);
        header.set_mode(0o644);
        header.set_cksum();
        let zeros = std::io::Read::take(std::io::repeat(0), BOMB_SIZE);
        tar.append(&header, zeros).unwrap();
        Bytes::from(tar.into_inner().unwrap().finish().unwrap())
    })
    .clone()
}

fn module_call(source: &str) -> String {
    format!("module \"m\" {{\n  source  = \"{source}\"\n  version = \"1.0.0\"\n}}\n")
}

/// Temporary files left in the cache; waits a little for a download task
/// still winding up, so a leak is one that stays.
fn leftover_temp_files(world: &World) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let temps: Vec<String> = world
            .cache_files()
            .into_iter()
            .filter(|f| {
                Path::new(f)
                    .file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with(".tmp-")
            })
            .collect();
        if temps.is_empty() || Instant::now() > deadline {
            return temps;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn stored(world: &World, prefix: &str) -> Vec<String> {
    world
        .artifact_files()
        .into_iter()
        .filter(|f| f.starts_with(prefix))
        .collect()
}

#[test]
fn an_xz_bomb_is_refused_in_bounded_memory_naming_the_key() {
    let _turn = crate::file_turn(module_path!());
    let world = World::with_modules(vec![
        ModuleSpec::new("acme", "bomb", "aws", &["1.0.0"]).with_location("/blobs/bomb.tar.xz")
    ]);
    let bomb = xz_bomb();
    let bomb_len = bomb.len();
    assert!(
        bomb.len() < 1 << 20,
        "a small archive: {} bytes",
        bomb.len()
    );
    world.registry.serve_blob("bomb.tar.xz", bomb);
    let server = serve_logged(&world);
    let before = peak_rss_kb(server.child.id());

    let dir = world.workdir_with("bomb", &module_call("acme/bomb/aws"));
    let text = assert_failure(&world.init(&dir), "init with the xz bomb");

    let peak = peak_rss_kb(server.child.id());
    eprintln!("server peak RSS: {before} kB at start, {peak} kB after a {bomb_len}-byte bomb");
    assert!(
        text.contains("the module archive unpacks to more than 1.0 GB (max_module_unpacked_size)"),
        "the error names the cap and its key:\n{text}"
    );
    assert!(
        peak < PEAK_RSS_LIMIT_KB,
        "peak RSS {peak} kB, over {PEAK_RSS_LIMIT_KB} kB"
    );
    assert_eq!(stored(&world, "modules/archives/"), Vec::<String>::new());
    assert_eq!(leftover_temp_files(&world), Vec::<String>::new());
}

#[test]
fn an_endless_provider_zip_is_cut_at_its_cap() {
    let _turn = crate::file_turn(module_path!());
    let world = World::with_config(
        vec![ProviderSpec::new("acme", "endless", &["1.0.0"])],
        SMALL_CAPS,
    );
    world
        .registry
        .set_fault("acme", "endless", Fault::EndlessZip);
    let _server = serve_logged(&world);

    let dir = world.workdir("endless", &[("acme", "endless", "1.0.0")]);
    let started = Instant::now();
    let text = assert_failure(&world.init(&dir), "init with an endless zip");

    assert!(
        text.contains("the download is larger than 50 MB (max_provider_package_size)"),
        "the error names the cap and its key:\n{text}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(stored(&world, "providers/"), Vec::<String>::new());
    assert_eq!(leftover_temp_files(&world), Vec::<String>::new());
}

#[test]
fn an_endless_module_archive_is_cut_at_its_cap() {
    let _turn = crate::file_turn(module_path!());
    let world = World::start(
        Vec::new(),
        vec![ModuleSpec::new("acme", "endless", "aws", &["1.0.0"])],
        SMALL_CAPS,
    );
    world
        .registry
        .set_module_fault("acme", "endless", "aws", ModuleFault::EndlessArchive);
    let _server = serve_logged(&world);

    let dir = world.workdir_with("endless", &module_call("acme/endless/aws"));
    let text = assert_failure(&world.init(&dir), "init with an endless archive");

    assert!(
        text.contains("the download is larger than 50 MB (max_module_archive_size)"),
        "the error names the cap and its key:\n{text}"
    );
    assert_eq!(stored(&world, "modules/archives/"), Vec::<String>::new());
    assert_eq!(leftover_temp_files(&world), Vec::<String>::new());
}

/// The first client's download stalls (the upstream waits 5 s between
/// chunks); a second client waiting for the same zip is released when the
/// 2 s stall timeout gives it up, with its reason, and starts no download
/// of its own.
#[test]
fn a_stalled_download_releases_its_waiters() {
    let _turn = crate::file_turn(module_path!());
    const STALL: Duration = Duration::from_secs(2);
    const MARGIN: Duration = Duration::from_millis(1500);
    let world = World::with_config(
        vec![ProviderSpec::new("acme", "drip", &["1.0.0"]).with_platforms(&[("linux", "amd64")])],
        "download_stall_timeout = \"2s\"\n",
    );
    world.registry.set_fault("acme", "drip", Fault::DripZip);
    let server = world.serve();
    let answer = get(&format!(
        "{}/v1/providers/registry.terraform.io/acme/drip/1.0.0/download/linux/amd64",
        server.url
    ));
    assert_eq!(answer.status, 200, "{}", answer.text());
    let zip_url = answer.json()["download_url"].as_str().unwrap().to_owned();

    let first = {
        let url = zip_url.clone();
        std::thread::spawn(move || get(&url))
    };
    // Until the first download is under way, holding the zip's lock.
    let deadline = Instant::now() + Duration::from_secs(10);
    while world.registry.count(|r| r.path.ends_with(".zip")) == 0 {
        assert!(
            Instant::now() < deadline,
            "the first download never started"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let started = Instant::now();
    let second = get(&zip_url);
    let waited = started.elapsed();
    eprintln!("the second client waited {waited:?}");

    assert_eq!(second.status, 502, "{}", second.text());
    assert!(
        second
            .text()
            .contains("the upstream sent nothing for 2s (download_stall_timeout)"),
        "{}",
        second.text()
    );
    assert!(
        waited < STALL + MARGIN,
        "the second client waited {waited:?}"
    );
    let first = first.join().unwrap();
    assert!(
        first.body.len() < 1 << 20,
        "the first got {} bytes",
        first.body.len()
    );
    assert_eq!(
        world.registry.count(|r| r.path.ends_with(".zip")),
        1,
        "the waiter started no download of its own"
    );
    assert_eq!(leftover_temp_files(&world), Vec::<String>::new());
}

/// A version list over `max_metadata_size` is refused whole, naming the
/// key, and nothing of it is kept; a list under the cap is served.
#[test]
fn a_version_list_over_its_cap_is_refused_naming_the_key() {
    let _turn = crate::file_turn(module_path!());
    let many: Vec<String> = (0..200).map(|n| format!("1.0.{n}")).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    let world = World::start(
        Vec::new(),
        vec![
            ModuleSpec::new("acme", "many", "aws", &many),
            ModuleSpec::new("acme", "few", "aws", &["1.0.0"]),
        ],
        "max_metadata_size = \"2kB\"\n",
    );
    let _server = serve_logged(&world);

    let dir = world.workdir_with("many", &module_call("acme/many/aws"));
    let text = assert_failure(&world.init(&dir), "init with a huge version list");
    assert!(
        text.contains("larger than 2.0 kB (max_metadata_size)"),
        "the error names the cap and its key:\n{text}"
    );
    let dir = world.workdir_with("few", &module_call("acme/few/aws"));
    crate::harness::assert_success(&world.init(&dir), "init with a small version list");
}
