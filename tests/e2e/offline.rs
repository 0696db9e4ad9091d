//! Sealed (offline) mode: with `exec --offline` or `offline = true`, the
//! server contacts no upstream at all. A warm cache still inits, whatever
//! the age of its metadata; a miss fails with an error naming what is
//! missing and saying that tfmirror is offline; and the fake upstream sees
//! no request either way. Inside a network namespace with only loopback
//! up, the same holds with the network unplugged.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use crate::fixtures::ProviderSpec;
use crate::harness::{assert_failure, assert_success, main_tf, terraform, tfmirror, World};
use crate::shared_tier::{team_main_tf, team_root_world};

/// Each command of these tests is killed past this many seconds, so a
/// hang fails the test instead of stalling the suite.
const COMMAND_LIMIT_SECS: u64 = 120;

/// Metadata that expires at once: a server that is not sealed would ask
/// the upstream again on every later run.
const EXPIRES_AT_ONCE: &str = "metadata_ttl = \"1s\"\nstale_while_revalidate = \"0s\"";

/// `tfmirror exec [--offline] -- terraform init` arguments.
fn init_args(offline_flag: bool) -> Vec<String> {
    let mut args = vec![tfmirror().to_owned(), "exec".to_owned()];
    if offline_flag {
        args.push("--offline".to_owned());
    }
    args.extend(
        [
            "--",
            terraform().to_str().unwrap(),
            "init",
            "-input=false",
            "-no-color",
        ]
        .map(str::to_owned),
    );
    args
}

/// Runs `args` under `timeout`, in `dir`, in the world's environment.
fn bounded(world: &World, dir: &Path, args: &[String]) -> Output {
    let mut command = world.command("timeout");
    command
        .args(["-k", "5", &COMMAND_LIMIT_SECS.to_string()])
        .args(args)
        .current_dir(dir);
    command.output().expect("run a bounded command")
}

/// `tfmirror exec [--offline] -- terraform init` in `dir`, bounded in
/// time; without the flag, sealed only if the config says so.
fn init(world: &World, dir: &Path, offline_flag: bool) -> Output {
    bounded(world, dir, &init_args(offline_flag))
}

/// Whether this process may make a network namespace and bring its
/// loopback up (root, and a kernel and sandbox that allow it).
pub(crate) fn namespaces_permitted() -> bool {
    Command::new("unshare")
        .args(["-n", "ip", "link", "set", "lo", "up"])
        .output()
        .is_ok_and(|output| output.status.success())
}

/// A sealed init inside a new network namespace where only loopback is
/// up: the server `exec` starts runs in it too, and is stopped before the
/// namespace goes (it would be unreachable from outside).
fn sealed_init_unplugged(world: &World, dir: &Path) -> Output {
    sealed_init_unplugged_in(world, dir, &world.cache_dir())
}

/// [`sealed_init_unplugged`] with the cache at `cache_dir`.
pub(crate) fn sealed_init_unplugged_in(world: &World, dir: &Path, cache_dir: &Path) -> Output {
    const SCRIPT: &str = "ip link set lo up || exit 97\n\
         tfmirror=\"$1\"\n\
         timeout -k 5 \"$LIMIT\" \"$@\"\n\
         status=$?\n\
         timeout 60 \"$tfmirror\" stop >/dev/null 2>&1\n\
         exit $status\n";
    let mut command = world.command("unshare");
    command
        .args(["-n", "sh", "-c", SCRIPT, "sh"])
        .args(init_args(true))
        .env("LIMIT", COMMAND_LIMIT_SECS.to_string())
        .env("TFMIRROR_CACHE_DIR", cache_dir)
        .current_dir(dir);
    command.output().expect("run unshare")
}

/// Prepends `offline = true` to the world's config (top-level keys go
/// before its sections).
fn seal_config(world: &World) {
    let config = std::fs::read_to_string(world.config_path()).unwrap();
    std::fs::write(world.config_path(), format!("offline = true\n{config}")).unwrap();
}

fn stop(world: &World) {
    let output = bounded(
        world,
        world.root.path(),
        &[tfmirror().into(), "stop".into()],
    );
    assert_success(&output, "tfmirror stop");
}

fn assert_no_upstream_request(world: &World, what: &str) {
    let requests = world.registry.requests();
    assert!(
        requests.is_empty(),
        "{what}: the upstream saw {} requests, e.g. {:?}",
        requests.len(),
        requests.iter().take(5).map(|r| &r.path).collect::<Vec<_>>()
    );
}

/// Warms the team root (providers, an HTTP archive, registry modules in a
/// git repository, a direct `git::` source), lets its metadata expire, and
/// stops the server; returns the warm run's lock file.
fn warm_team_root(world: &World) -> String {
    let warm = world.workdir_with("warm", &team_main_tf(world));
    assert_success(&init(world, &warm, false), "warming init");
    // An online server is not used for an offline run: it would fetch.
    let refused = bounded(
        world,
        &warm,
        &[
            tfmirror().into(),
            "exec".into(),
            "--offline".into(),
            "--".into(),
            "true".into(),
        ],
    );
    let message = assert_failure(&refused, "exec --offline with an online server running");
    assert!(
        message.contains("is online") && message.contains("tfmirror stop"),
        "says to stop the online server: {message}"
    );
    stop(world);
    std::thread::sleep(Duration::from_millis(1500));
    world.registry.clear_requests();
    std::fs::read_to_string(warm.join(".terraform.lock.hcl")).unwrap()
}

#[test]
fn a_warm_cache_inits_sealed_without_asking_the_upstream() {
    let world = team_root_world(&[("linux", "amd64")], EXPIRES_AT_ONCE);
    let warm_lock = warm_team_root(&world);

    let dir = world.workdir_with("sealed", &team_main_tf(&world));
    let output = init(&world, &dir, true);
    assert_success(&output, "sealed init from a warm cache");
    assert_no_upstream_request(&world, "sealed init from a warm cache");
    let lock = std::fs::read_to_string(dir.join(".terraform.lock.hcl")).unwrap();
    assert_eq!(lock, warm_lock, "the same lock file as the warm run");
    for module in ["net", "vpc", "dns", "direct"] {
        assert!(
            dir.join(".terraform/modules").join(module).is_dir(),
            "module {module} installed"
        );
    }

    // What the cache lacks is named: a git ref, a registry module.
    let repo = world.registry.git_url(crate::shared_tier::REPO);
    let git_miss = world.workdir_with(
        "git-miss",
        &format!("module \"m\" {{\n  source = \"git::{repo}//modules/vpc?ref=v9.9.9\"\n}}\n"),
    );
    let message = assert_failure(
        &init(&world, &git_miss, true),
        "sealed init of a ref never cached",
    );
    assert!(
        message.contains(&format!(
            "{repo} v9.9.9 is not in the cache, and tfmirror is offline"
        )),
        "names the repository and the ref: {message}"
    );
    let module_miss = world.workdir_with(
        "module-miss",
        "module \"m\" {\n  source  = \"acme/absent/aws\"\n  version = \"1.0.0\"\n}\n",
    );
    let message = assert_failure(
        &init(&world, &module_miss, true),
        "sealed init of a module never cached",
    );
    assert!(
        message.contains(
            "registry.terraform.io/acme/absent/aws is not in the cache, and tfmirror is offline"
        ),
        "names the module: {message}"
    );

    let status = bounded(&world, &dir, &[tfmirror().into(), "status".into()]);
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(
        text.contains("offline:   yes (sealed: TFMIRROR_OFFLINE=1"),
        "status says the server is sealed: {text}"
    );
    stop(&world);
    assert_no_upstream_request(&world, "status and stop");
}

/// A world with two providers on the upstream, of which only `alpha` is
/// ever cached.
fn world_missing_gamma() -> World {
    let providers = ["alpha", "gamma"]
        .map(|name| ProviderSpec::new("acme", name, &["1.0.0"]))
        .into();
    let world = World::with_config(providers, EXPIRES_AT_ONCE);
    let warm = world.workdir("warm", &[("acme", "alpha", "1.0.0")]);
    assert_success(&init(&world, &warm, false), "warming init");
    stop(&world);
    world.registry.clear_requests();
    world
}

fn missing_gamma_dir(world: &World, name: &str) -> std::path::PathBuf {
    let text = main_tf(&[("acme", "alpha", "1.0.0"), ("acme", "gamma", "1.0.0")]);
    world.workdir_with(name, &text)
}

/// The refusal names the provider and says tfmirror is offline, in
/// Terraform's output or in the server's line `exec` repeats.
fn assert_offline_refusal(message: &str, sealed_by: &str) {
    eprintln!("the refusal as the user sees it:\n{message}");
    assert!(
        message.contains(
            "registry.terraform.io/acme/gamma is not in the cache, and tfmirror is offline"
        ),
        "names the missing provider and says tfmirror is offline: {message}"
    );
    assert!(message.contains(sealed_by), "says why: {message}");
    for symptom in ["connection refused", "network is unreachable", "no answer"] {
        assert!(
            !message.to_lowercase().contains(symptom),
            "an offline refusal, not a connection error: {message}"
        );
    }
}

#[test]
fn a_sealed_miss_names_the_artifact_and_asks_nothing_upstream() {
    let world = world_missing_gamma();
    seal_config(&world);
    let dir = missing_gamma_dir(&world, "sealed");
    let output = init(&world, &dir, false);
    let message = assert_failure(&output, "sealed init of a provider never cached");
    let config = world.config_path();
    assert_offline_refusal(&message, &format!("offline = true in {}", config.display()));
    assert_eq!(
        message.matches("is not in the cache").count(),
        1,
        "exec repeats the refusal once, as one line: {message}"
    );
    stop(&world);
    assert_no_upstream_request(&world, "sealed init of a provider never cached");
}

#[test]
fn unplugged_a_sealed_miss_is_the_offline_error_and_a_warm_cache_inits() {
    if !namespaces_permitted() {
        eprintln!("skipped: unshare -n not permitted");
        return;
    }
    let world = world_missing_gamma();
    let missing = missing_gamma_dir(&world, "unplugged-miss");
    let output = sealed_init_unplugged(&world, &missing);
    let message = assert_failure(&output, "unplugged sealed init of a provider never cached");
    assert_offline_refusal(&message, "TFMIRROR_OFFLINE=1");

    let warm = world.workdir("unplugged-warm", &[("acme", "alpha", "1.0.0")]);
    let output = sealed_init_unplugged(&world, &warm);
    assert_success(&output, "unplugged sealed init from a warm cache");
    assert!(warm.join(".terraform.lock.hcl").is_file());
    assert_no_upstream_request(&world, "unplugged sealed inits");
}
