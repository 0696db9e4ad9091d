//! End to end: the savings line `exec` prints, and the Prometheus metrics,
//! checked against the files in the cache and the fake upstream's counts.

use std::path::Path;
use std::process::Output;

use crate::fixtures::http::get;
use crate::fixtures::registry_providers::Fault;
use crate::fixtures::{GitRepoSpec, ModuleSpec, ProviderSpec};
use crate::harness::{assert_success, terraform, World};

fn world() -> World {
    World::start(
        vec![
            ProviderSpec::new("hashicorp", "alpha", &["1.0.0"]).with_extra_bytes(300_000),
            ProviderSpec::new("acme", "beta", &["2.0.0"]).with_extra_bytes(200_000),
        ],
        vec![ModuleSpec::new("acme", "net", "aws", &["1.0.0"])],
        "",
    )
}

fn main_tf() -> String {
    format!(
        "{}\nmodule \"net\" {{\n  source  = \"acme/net/aws\"\n  version = \"1.0.0\"\n}}\n",
        crate::harness::main_tf(&[("hashicorp", "alpha", "1.0.0"), ("acme", "beta", "2.0.0")])
    )
}

/// The artifacts an init of [`main_tf`] is served: both linux zips, their
/// SHA256SUMS and signatures, and the module archive.
fn served_files(world: &World) -> Vec<String> {
    world
        .artifact_files()
        .into_iter()
        .filter(|f| !f.contains("darwin") && !f.contains("windows"))
        .collect()
}

fn signatures(files: &[String]) -> Vec<String> {
    files
        .iter()
        .filter(|f| f.ends_with(".sig"))
        .cloned()
        .collect()
}

fn size_of(world: &World, files: &[String]) -> u64 {
    files
        .iter()
        .map(|f| std::fs::metadata(world.cache_dir().join(f)).unwrap().len())
        .sum()
}

/// Decimal units with one decimal below 10, as `du --si`.
pub(crate) fn si(bytes: u64) -> String {
    let units = ["kB", "MB", "GB"];
    if bytes < 1000 {
        return format!("{bytes} B");
    }
    let (mut value, mut unit) = (bytes as f64 / 1000.0, 0);
    while value >= 1000.0 && unit < units.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    let digits = if value < 10.0 { 1 } else { 0 };
    format!("{value:.digits$} {}", units[unit])
}

pub(crate) fn savings_line(stderr: &[u8]) -> String {
    String::from_utf8_lossy(stderr)
        .lines()
        .find(|l| l.contains("from cache ("))
        .unwrap_or_else(|| panic!("no savings line in:\n{}", String::from_utf8_lossy(stderr)))
        .to_owned()
}

#[test]
fn the_savings_line_counts_what_the_run_took_from_the_cache() {
    let world = world();
    let cold = world.init(&world.workdir_with("cold", &main_tf()));
    assert_success(&cold, "cold init");
    let files = served_files(&world);
    assert_eq!(files.len(), 7, "{files:?}");
    let bytes = size_of(&world, &files);
    // The signatures come along with SHA256SUMS: served from disk, but
    // downloaded during this run, so they saved nothing and are misses.
    // Under 10 MB downloaded, no time saved is claimed.
    let line = savings_line(&cold.stderr);
    let expected = format!(
        "tfmirror: 0 B from cache (0 hits), {} downloaded (7 misses)",
        si(bytes)
    );
    assert_eq!(line, expected);

    let warm = world.init(&world.workdir_with("warm", &main_tf()));
    assert_success(&warm, "warm init");
    assert_eq!(
        savings_line(&warm.stderr),
        format!(
            "tfmirror: {} from cache (7 hits), 0 B downloaded (0 misses)",
            si(bytes)
        )
    );
}

#[test]
fn metrics_parse_and_agree_with_the_upstream() {
    let world = world();
    let server = world.serve();
    let rc = world.tfmirror(&["rc"]).output().unwrap();
    let cli_config = world.root.path().join("plain.tfrc");
    std::fs::write(&cli_config, rc.stdout).unwrap();
    let init = |name: &str| {
        let dir = world.workdir_with(name, &main_tf());
        let output = world
            .command(crate::harness::terraform())
            .args(["init", "-input=false", "-no-color"])
            .current_dir(&dir)
            .env("TF_CLI_CONFIG_FILE", &cli_config)
            .output()
            .unwrap();
        assert_success(&output, name);
    };
    init("cold");
    init("warm");

    let metrics = scrape(&server.url);

    let count = |route: &str, result: &str| {
        sample(
            &metrics,
            "tfmirror_requests_total",
            &[("route", route), ("result", result)],
        )
    };
    let upstream = |pred: &dyn Fn(&str) -> bool| {
        world.registry.count(|r| r.method == "GET" && pred(&r.path)) as f64
    };
    let lists = upstream(&|p| p.starts_with("/v1/providers/") && p.ends_with("/versions"));
    let zips = upstream(&|p| p.ends_with(".zip"));
    let sums = upstream(&|p| p.ends_with("_SHA256SUMS"));
    assert_eq!((lists, zips, sums), (2.0, 2.0, 2.0));
    // A miss is a response that had to fetch: each version list, zip and
    // SHA256SUMS (its signature comes in the same fetch).
    assert_eq!(count("providers", "miss"), lists + zips + sums);
    // The warm init's 2 lists, 6 artifacts and 2 zip HEADs, and the cold
    // init's 2 signatures, fetched along with their SHA256SUMS.
    assert_eq!(count("providers", "hit"), 12.0);
    assert_eq!(
        count("module_archives", "miss"),
        world.registry.module_archive_requests() as f64
    );

    let files = served_files(&world);
    let bytes = size_of(&world, &files) as f64;
    let signatures = size_of(&world, &signatures(&files)) as f64;
    // Terraform's HEAD for the module archive is what downloads it; its
    // GET then reads the cached file.
    let archive: Vec<String> = files
        .iter()
        .filter(|f| f.starts_with("modules/"))
        .cloned()
        .collect();
    let archive = size_of(&world, &archive) as f64;
    let served = |source| {
        sample(
            &metrics,
            "tfmirror_bytes_served_total",
            &[("source", source)],
        )
    };
    assert_eq!(served("cache"), bytes + signatures + archive);
    assert_eq!(served("upstream"), bytes - signatures - archive);
    assert!(sample(&metrics, "tfmirror_cache_bytes", &[("kind", "providers")]) > 0.0);
    assert_eq!(sample(&metrics, "tfmirror_downloads_in_flight", &[]), 0.0);
    let latency = metrics
        .samples
        .iter()
        .find(|s| s.metric == "tfmirror_upstream_request_duration_seconds")
        .expect("an upstream latency histogram");
    assert!(matches!(
        latency.value,
        prometheus_parse::Value::Histogram(_)
    ));
}

fn scrape(url: &str) -> prometheus_parse::Scrape {
    let response = get(&format!("{url}/_tfmirror/metrics"));
    assert_eq!(response.status, 200);
    assert!(response
        .header("content-type")
        .unwrap()
        .starts_with("text/plain"));
    let lines = response
        .text()
        .lines()
        .map(|l| Ok(l.to_owned()))
        .collect::<Vec<_>>();
    prometheus_parse::Scrape::parse(lines.into_iter()).expect("Prometheus text format")
}

fn sample(scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    let found = scrape
        .samples
        .iter()
        .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)));
    match found.map(|s| &s.value) {
        Some(prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Gauge(v)) => *v,
        Some(prometheus_parse::Value::Untyped(v)) => *v,
        None => 0.0,
        Some(other) => panic!("{name}: unexpected {other:?}"),
    }
}

/// `tfmirror rc | head -1` and the like: a reader that closes the pipe
/// ends a printing command quietly, as it ends any Unix tool, instead of
/// a panic about a broken pipe.
#[test]
fn printing_into_a_closed_pipe_ends_quietly() {
    use std::os::unix::process::ExitStatusExt;
    let world = world();
    let _server = world.serve();
    for args in [&["rc"][..], &["cache", "list"], &["status"]] {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let output = world
            .tfmirror(args)
            .stdout(std::process::Stdio::from(writer))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert_eq!(
            output.status.signal(),
            Some(libc::SIGPIPE),
            "{args:?}: {:?} {stderr}",
            output.status
        );
    }
}

/// How long one `exec -- terraform init` of these tests may take.
const INIT_LIMIT_SECS: u64 = 120;

/// `tfmirror exec -- terraform init` in `dir`, killed past
/// [`INIT_LIMIT_SECS`].
fn bounded_init(world: &World, dir: &Path) -> Output {
    let limit = INIT_LIMIT_SECS.to_string();
    let terraform = terraform();
    let mut command = world.command("timeout");
    command
        .args(["-k", "5", &limit, crate::harness::tfmirror(), "exec", "--"])
        .arg(terraform)
        .args(["init", "-input=false", "-no-color"])
        .current_dir(dir);
    let output = command.output().expect("run a bounded init");
    assert_ne!(output.status.code(), Some(124), "init timed out");
    output
}

/// What tfmirror said on stderr: its lines, and the indented lines of
/// its blocks, with the fake upstream's address redacted.
fn tfmirror_says(world: &World, stderr: &[u8]) -> Vec<String> {
    let upstream = world.registry.addr().to_string();
    let mut said = Vec::new();
    let mut in_block = false;
    for line in String::from_utf8_lossy(stderr).lines() {
        in_block = line.starts_with("tfmirror") || (in_block && line.starts_with("  "));
        if in_block {
            said.push(line.replace(&upstream, "UPSTREAM"));
        }
    }
    said
}

/// The registry is down and nothing is cached: Terraform fails, and
/// tfmirror says once which host it could not reach, why, what the run
/// did without, and what to do.
#[test]
fn an_unreachable_registry_is_one_block() {
    let world = World::new(vec![
        ProviderSpec::new("acme", "alpha", &["1.0.0"]),
        ProviderSpec::new("acme", "beta", &["1.0.0"]),
    ]);
    world.registry.stop();
    let dir = world.workdir(
        "down",
        &[("acme", "alpha", "1.0.0"), ("acme", "beta", "1.0.0")],
    );
    let output = bounded_init(&world, &dir);
    assert!(!output.status.success(), "init succeeded with no registry");
    let said = tfmirror_says(&world, &output.stderr);
    assert_eq!(
        said.iter()
            .filter(|l| l.starts_with("tfmirror: cannot reach"))
            .count(),
        1,
        "{said:#?}"
    );
    assert!(said.iter().all(|l| l.len() < 200), "{said:#?}");
    insta::assert_snapshot!(said.join("\n"));
}

/// Everything cached, then the registry goes down: the init succeeds from
/// the cache, and tfmirror says so in one line, not one per document.
#[test]
fn served_stale_is_one_line() {
    let world = World::with_config(
        vec![
            ProviderSpec::new("acme", "alpha", &["1.0.0"]),
            ProviderSpec::new("acme", "beta", &["1.0.0"]),
        ],
        "metadata_ttl = \"1s\"\nstale_while_revalidate = \"0s\"",
    );
    let providers = [("acme", "alpha", "1.0.0"), ("acme", "beta", "1.0.0")];
    let warm = bounded_init(&world, &world.workdir("warm", &providers));
    assert_success(&warm, "warming init");
    world.registry.stop();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let output = bounded_init(&world, &world.workdir("stale", &providers));
    assert_success(&output, "init served stale");
    let said = tfmirror_says(&world, &output.stderr);
    // Why: "connection refused", or "connection failed" when this run only
    // met the breaker another request opened.
    let stale = "tfmirror: served from cache, upstream UPSTREAM unreachable (connection ";
    assert_eq!(
        said.iter().filter(|l| l.contains("unreachable")).count(),
        1,
        "{said:#?}"
    );
    assert!(said[0].starts_with(stale), "{said:#?}");
    assert_eq!(
        said.len(),
        2,
        "the stale line and the savings line: {said:#?}"
    );
}

/// A cold run of a git module: the mirror's fetch is this run's download,
/// nothing of it is "from cache", and no time saved is claimed.
#[test]
fn a_cold_git_run_counts_its_fetch_as_downloaded() {
    const REPO: &str = "org/infra.git";
    let world = World::with_git(Vec::new(), vec![GitRepoSpec::new(REPO)], "");
    let source = world.registry.git_url(REPO);
    let text =
        format!("module \"vpc\" {{\n  source = \"git::{source}//modules/vpc?ref=v1.1.0\"\n}}\n");
    let output = bounded_init(&world, &world.workdir_with("git", &text));
    assert_success(&output, "cold git init");
    let line = savings_line(&output.stderr);
    assert!(
        line.starts_with("tfmirror: 0 B from cache (0 hits), "),
        "{line}"
    );
    assert!(!line.contains("saved"), "{line}");
    assert!(
        !line.contains(", 0 B downloaded"),
        "the fetch is downloaded: {line}"
    );
    assert!(world.registry.git_bytes_sent() > 0);
}

/// Two runs at once against one server, each with its own broken
/// provider: each is told of its own only.
#[test]
fn parallel_runs_get_only_their_own_problems() {
    let world = World::new(vec![
        ProviderSpec::new("acme", "one", &["1.0.0"]),
        ProviderSpec::new("acme", "two", &["1.0.0"]),
    ]);
    world.registry.set_fault("acme", "one", Fault::BadSignature);
    world.registry.set_fault("acme", "two", Fault::TamperedZip);
    let _server = world.serve();
    let one = world.workdir("one", &[("acme", "one", "1.0.0")]);
    let two = world.workdir("two", &[("acme", "two", "1.0.0")]);
    let (one, two) = std::thread::scope(|scope| {
        let first = scope.spawn(|| bounded_init(&world, &one));
        let second = scope.spawn(|| bounded_init(&world, &two));
        (first.join().unwrap(), second.join().unwrap())
    });
    for (output, own, other) in [
        (&one, "acme/one", "acme/two"),
        (&two, "acme/two", "acme/one"),
    ] {
        assert!(!output.status.success(), "a broken provider installed");
        let said = tfmirror_says(&world, &output.stderr).join("\n");
        assert!(said.contains(own), "names its own provider: {said}");
        assert!(!said.contains(other), "names the other run's: {said}");
    }
}

/// Two cold runs at once share each download: neither was served
/// anything from the cache that was there before it began, so both count
/// everything as downloaded, and neither claims time saved.
#[test]
fn parallel_cold_runs_claim_no_savings() {
    let world = world();
    // Slow enough that the runs overlap whatever the scheduling.
    world.registry.set_artifact_rate(Some(400_000));
    let _server = world.serve();
    let one = world.workdir_with("one", &main_tf());
    let two = world.workdir_with("two", &main_tf());
    let (one, two) = std::thread::scope(|scope| {
        let first = scope.spawn(|| bounded_init(&world, &one));
        let second = scope.spawn(|| bounded_init(&world, &two));
        (first.join().unwrap(), second.join().unwrap())
    });
    for output in [&one, &two] {
        assert_success(output, "parallel cold init");
        let line = savings_line(&output.stderr);
        // The slowed zips are downloaded while both runs are under way,
        // so neither counts them from the cache. A small document or the
        // module archive may honestly be a hit for a run that a loaded
        // machine started after the other had fetched it: bytes, not
        // kilobytes.
        let from_cache = line
            .strip_prefix("tfmirror: ")
            .and_then(|rest| rest.split(" from cache").next())
            .unwrap_or_else(|| panic!("no savings line: {line}"));
        assert!(
            from_cache.ends_with(" B"),
            "the zips are not from cache: {line}"
        );
        assert!(!line.contains("saved"), "{line}");
    }
    assert_eq!(world.registry.count(|r| r.path.ends_with(".zip")), 2);
}
