//! End to end: one server per cache, started in the background by `exec`,
//! shared by parallel inits, found again or replaced, and stopped when idle.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::fixtures::{GitRepoSpec, ModuleSpec, ProviderSpec};
use crate::harness::{assert_success, terraform, World};

const REPO: &str = "org/infra.git";

/// Two providers, a registry module with an HTTP archive and a direct git
/// module: every kind of download tfmirror makes.
fn mixed_world(extra: &str) -> World {
    World::start_all(
        vec![
            ProviderSpec::new("hashicorp", "alpha", &["1.0.0"]),
            ProviderSpec::new("hashicorp", "beta", &["2.0.0"]),
        ],
        vec![ModuleSpec::new("acme", "net", "aws", &["1.0.0"])],
        vec![GitRepoSpec::new(REPO)],
        extra,
    )
}

fn mixed_main_tf(world: &World) -> String {
    crate::harness::mixed_main_tf(
        world,
        &[
            ("hashicorp", "alpha", "1.0.0"),
            ("hashicorp", "beta", "2.0.0"),
        ],
        REPO,
    )
}

fn server_pid(world: &World) -> u32 {
    let info = world.server_info().expect("server.json written");
    info["pid"].as_u64().expect("pid recorded") as u32
}

/// The pid and URL of the server a plain `exec -- true` starts.
fn server_started_by_exec(world: &World) -> (u32, String) {
    assert_success(
        &world.tfmirror(&["exec", "--", "true"]).output().unwrap(),
        "exec true",
    );
    let url = world.server_info().unwrap()["url"]
        .as_str()
        .unwrap()
        .to_owned();
    (server_pid(world), url)
}

fn alive(pid: u32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    !stat.is_empty()
        && !stat
            .rsplit_once(')')
            .unwrap()
            .1
            .trim_start()
            .starts_with('Z')
}

#[test]
fn parallel_execs_share_one_server_and_download_everything_once() {
    let world = mixed_world("");
    let main_tf = mixed_main_tf(&world);
    let dirs: Vec<_> = (0..8)
        .map(|i| world.workdir_with(&format!("w{i}"), &main_tf))
        .collect();

    let started = Instant::now();
    let outputs: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = dirs
            .iter()
            .map(|dir| scope.spawn(|| world.init_with_env(dir, &[("TFMIRROR_LOG", "info")])))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    eprintln!("8 parallel cold inits: {:?}", started.elapsed());
    for (i, output) in outputs.iter().enumerate() {
        assert_success(output, &format!("init {i}"));
    }

    let log = std::fs::read_to_string(world.cache_dir().join("server.log")).unwrap();
    assert_eq!(
        log.matches("listening on").count(),
        1,
        "exactly one server ran:\n{log}"
    );
    let mut downloads = std::collections::BTreeMap::<String, usize>::new();
    for request in world.registry.requests() {
        if request.method == "GET"
            && (request.path.starts_with("/files/") || request.path.starts_with("/archives/"))
        {
            *downloads.entry(request.path).or_default() += 1;
        }
    }
    // 2 zips, 2 SHA256SUMS, 2 signatures, 1 module archive.
    assert_eq!(downloads.len(), 7, "{downloads:#?}");
    assert!(
        downloads.values().all(|&n| n == 1),
        "each artifact fetched once: {downloads:#?}"
    );
    // Module version lists are revalidated on every request by design
    // (see modules/mod.rs), so only the providers' lists count here.
    for provider in ["alpha", "beta"] {
        let versions = format!("/v1/providers/hashicorp/{provider}/versions");
        assert_eq!(
            world.registry.count(|r| r.path == versions),
            1,
            "{versions}"
        );
    }
    // Every clone checks the upstream's refs first; only one fetches.
    assert_eq!(
        world.registry.git_pack_fetches(),
        1,
        "one clone of the repository: {:#?}",
        world.registry.requests()
    );

    let status = world.tfmirror(&["status"]).output().unwrap();
    assert_success(&status, "tfmirror status");
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(
        text.contains(&format!("pid:       {}", server_pid(&world))),
        "{text}"
    );
    assert!(text.contains(env!("CARGO_PKG_VERSION")), "{text}");
}

#[test]
fn a_stale_server_json_is_replaced() {
    let world = World::new(vec![ProviderSpec::new("hashicorp", "alpha", &["1.0.0"])]);
    let providers = [("hashicorp", "alpha", "1.0.0")];
    std::fs::create_dir_all(world.cache_dir()).unwrap();
    let closed_port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut dead = Command::new("true").spawn().unwrap();
    let dead_pid = dead.id();
    dead.wait().unwrap();
    // A dead process, then a live one (this test) that does not answer.
    for (case, pid) in [("dead pid", dead_pid), ("silent pid", std::process::id())] {
        let stale = serde_json::json!({
            "pid": pid,
            "url": format!("http://{closed_port}"),
            "version": env!("CARGO_PKG_VERSION"),
        });
        std::fs::write(world.cache_dir().join("server.json"), stale.to_string()).unwrap();
        assert_success(&world.init(&world.workdir(case, &providers)), case);
        let new_pid = server_pid(&world);
        assert_ne!(new_pid, pid, "{case}: server.json was replaced");
        assert!(alive(new_pid));
        world.stop_server();
    }
}

/// A server of another version is stopped, not used: `exec` says so, and
/// the old process gets SIGTERM (and with it the chance to finish its
/// requests) before the new one starts.
#[test]
fn a_server_of_another_version_is_restarted() {
    let world = World::new(vec![ProviderSpec::new("hashicorp", "alpha", &["1.0.0"])]);
    std::fs::create_dir_all(world.cache_dir()).unwrap();
    let mut old_process = Command::new("sleep").arg("60").spawn().unwrap();
    let old = OldServer::start(old_process.id(), &world.cache_dir());
    let info = serde_json::json!({"pid": old_process.id(), "url": old.url, "version": "0.0.1"});
    std::fs::write(world.cache_dir().join("server.json"), info.to_string()).unwrap();

    let dir = world.workdir("upgrade", &[("hashicorp", "alpha", "1.0.0")]);
    let output = world.init(&dir);
    assert_success(&output, "init after an upgrade");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("runs tfmirror 0.0.1") && stderr.contains("restarting it"),
        "{stderr}"
    );
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        old_process.wait().unwrap().signal(),
        Some(libc::SIGTERM),
        "the old server was asked to stop"
    );
    assert_ne!(server_pid(&world), old_process.id());
}

/// Answers every request as the health check of a tfmirror 0.0.1 server.
struct OldServer {
    url: String,
}

impl OldServer {
    fn start(pid: u32, cache_dir: &Path) -> OldServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let body = serde_json::json!({
            "status": "ok", "version": "0.0.1", "pid": pid, "url": url,
            "cache_dir": cache_dir, "uptime_secs": 5,
        })
        .to_string();
        std::thread::spawn(move || {
            for mut stream in listener.incoming().flatten() {
                let mut buffer = [0u8; 4096];
                let _ = stream.read(&mut buffer);
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        OldServer { url }
    }
}

#[test]
fn an_idle_background_server_exits() {
    let world = World::with_config(Vec::new(), "idle_timeout = \"2s\"");
    assert_success(
        &world.tfmirror(&["exec", "--", "true"]).output().unwrap(),
        "exec true",
    );
    let pid = server_pid(&world);
    let started = Instant::now();
    while alive(pid) && started.elapsed() < Duration::from_secs(15) {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!alive(pid), "the idle server exited");
    eprintln!(
        "idle server (2s timeout) exited after {:?}",
        started.elapsed()
    );
    assert!(world.server_info().is_none(), "it removed server.json");
    let status = world.tfmirror(&["status"]).output().unwrap();
    assert_eq!(status.status.code(), Some(1), "status says none runs");

    // Started by hand, it stops only when told to, or after --idle-timeout.
    let started = Instant::now();
    let output = world
        .tfmirror(&["serve", "--idle-timeout", "1s"])
        .output()
        .unwrap();
    assert_success(&output, "serve --idle-timeout 1s");
    assert!(started.elapsed() < Duration::from_secs(10));
}

/// `eval "$(tfmirror env)"` in a shell, then plain `terraform init`: the
/// exported config names a 0600 file outside the cache, which a restarted
/// server (on another port, with another secret) rewrites.
#[test]
fn env_exports_point_plain_terraform_at_the_server() {
    let world = World::new(vec![ProviderSpec::new("hashicorp", "alpha", &["1.0.0"])]);
    let providers = [("hashicorp", "alpha", "1.0.0")];
    let plain_init = |dir: &Path, setup: &str| {
        let script = format!(
            "{setup} && exec '{}' init -input=false -no-color",
            terraform().display()
        );
        world
            .command("sh")
            .arg("-c")
            .arg(script)
            .current_dir(dir)
            .output()
            .unwrap()
    };
    let eval_env = format!("eval \"$('{}' env)\"", crate::harness::tfmirror());

    let output = world.tfmirror(&["env"]).output().unwrap();
    assert_eq!(output.status.code(), Some(1), "env needs a running server");

    let mut server = world.serve();
    let first = world.workdir("first", &providers);
    assert_success(&plain_init(&first, &eval_env), "init after eval of env");
    assert_eq!(
        world.registry.artifact_requests(),
        3,
        "zip, sums and signature through tfmirror"
    );
    let exports = world.tfmirror(&["env"]).output().unwrap();
    assert_success(&exports, "tfmirror env");
    let exports = String::from_utf8(exports.stdout).unwrap();
    let rc = exports
        .lines()
        .find_map(|line| line.strip_prefix("export TF_CLI_CONFIG_FILE="))
        .map(|path| PathBuf::from(path.trim_matches('\'')))
        .unwrap_or_else(|| panic!("no TF_CLI_CONFIG_FILE in {exports}"));
    assert!(!rc.starts_with(world.cache_dir()), "{}", rc.display());
    assert!(rc.starts_with(world.home()), "{}", rc.display());
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(rc.metadata().unwrap().permissions().mode() & 0o777, 0o600);
    assert!(std::fs::read_to_string(&rc).unwrap().contains(&server.url));
    assert!(server.stop());

    let mut restarted = world.serve();
    assert_ne!(restarted.url, server.url);
    world.registry.clear_requests();
    let second = world.workdir("second", &providers);
    let exported = format!("export TF_CLI_CONFIG_FILE='{}'", rc.display());
    assert_success(&plain_init(&second, &exported), "init with the old exports");
    assert_eq!(
        world.registry.artifact_requests(),
        0,
        "served from the cache"
    );
    assert!(restarted.stop());
}

/// A server that cannot start is reported at once, with the reason from
/// its log, rather than after the 10 s wait.
#[test]
fn a_server_that_cannot_start_is_reported_with_its_reason() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let world = World::with_config(Vec::new(), &format!("listen = \"{addr}\""));
    let started = Instant::now();
    let output = world.tfmirror(&["exec", "--", "true"]).output().unwrap();
    let text = crate::harness::assert_failure(&output, "exec with the port taken");
    assert!(
        text.contains("could not start") && text.contains(&format!("cannot listen on {addr}")),
        "{text}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
}

/// `stop` returns once the server is gone: not running, out of the
/// process table, its port closed and `server.json` removed.
#[test]
fn stop_returns_once_the_server_is_gone() {
    let world = World::new(Vec::new());
    let (pid, url) = server_started_by_exec(&world);
    let started = Instant::now();
    let stop = world.tfmirror(&["stop"]).output().unwrap();
    let took = started.elapsed();
    assert_success(&stop, "tfmirror stop");
    let listed = Path::new(&format!("/proc/{pid}")).exists();
    assert!(!alive(pid), "stopped means exited");
    assert!(!listed, "and no longer in the process table");
    let address = url.trim_start_matches("http://");
    assert!(
        std::net::TcpStream::connect(address).is_err(),
        "{address} closed"
    );
    assert!(world.server_info().is_none(), "server.json removed");
    assert_eq!(
        String::from_utf8_lossy(&stop.stdout),
        format!("stopped the tfmirror server (pid {pid}, {url})\n")
    );
    eprintln!("tfmirror stop took {took:?}");
}

/// The server `exec` starts listens on a random port and exits when idle:
/// `env` refuses to export its address. A fixed `listen` is fine.
#[test]
fn env_refuses_a_server_that_dies_with_its_idle_timeout() {
    let world = World::new(Vec::new());
    let (pid, url) = server_started_by_exec(&world);
    let refused = world.tfmirror(&["env"]).output().unwrap();
    assert_eq!(refused.status.code(), Some(1), "env refuses");
    assert!(refused.stdout.is_empty(), "nothing for eval to run");
    let message = String::from_utf8_lossy(&refused.stderr)
        .replace(&pid.to_string(), "PID")
        .replace(&url, "http://127.0.0.1:PORT");
    insta::assert_snapshot!("env_refuses_ephemeral", message);

    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let world = World::with_config(Vec::new(), &format!("listen = \"127.0.0.1:{port}\""));
    assert_success(
        &world.tfmirror(&["exec", "--", "true"]).output().unwrap(),
        "exec true on a fixed port",
    );
    let exports = world.tfmirror(&["env"]).output().unwrap();
    assert_success(&exports, "env against a fixed listen");
    assert!(String::from_utf8_lossy(&exports.stdout).contains("export TF_CLI_CONFIG_FILE="));
}

/// Terraform refuses a plain-HTTP network mirror, so `rc --network-mirror`
/// prints no config for one and says how to serve HTTPS.
#[test]
fn rc_network_mirror_on_plain_http_is_an_error() {
    let world = World::new(Vec::new());
    let _server = world.serve();
    let rc = world
        .tfmirror(&["rc", "--network-mirror"])
        .output()
        .unwrap();
    assert_eq!(rc.status.code(), Some(1));
    assert!(rc.stdout.is_empty(), "no config to paste");
    let stderr = String::from_utf8_lossy(&rc.stderr);
    assert!(
        stderr.contains("--tls-cert FILE --tls-key FILE") && stderr.lines().count() == 1,
        "{stderr}"
    );
}
