//! End to end: `tfmirror warm` fills the cache from lock files, and
//! `tfmirror lock` adds other platforms' `h1:` hashes to them, compared
//! with what the real terraform writes.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use crate::fixtures::ProviderSpec;
use crate::harness::{assert_failure, assert_success, locked_hashes, World};

const LOCK_FILE: &str = ".terraform.lock.hcl";

/// `(namespace, type, version)` of the providers a test locks.
type Locked = [(&'static str, &'static str, &'static str)];

const TWO: &Locked = &[("hashicorp", "alpha", "1.2.0"), ("acme", "beta", "0.3.0")];

fn specs(providers: &Locked) -> Vec<ProviderSpec> {
    providers
        .iter()
        .map(|(namespace, name, version)| ProviderSpec::new(namespace, name, &[version]))
        .collect()
}

/// A working directory initialised through tfmirror, so its lock file has
/// the `zh:` of every platform and the `h1:` of this machine's.
fn locked_workdir(world: &World, name: &str, providers: &Locked) -> PathBuf {
    let dir = world.workdir(name, providers);
    assert_success(&world.init(&dir), "terraform init");
    dir
}

fn run_in(world: &World, dir: &Path, args: &[&str]) -> Output {
    world
        .tfmirror(args)
        .current_dir(dir)
        .output()
        .expect("run tfmirror")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn read_lock(dir: &Path) -> String {
    std::fs::read_to_string(dir.join(LOCK_FILE)).unwrap()
}

/// The cached zips, by file name.
fn cached_zips(world: &World) -> Vec<String> {
    world
        .artifact_files()
        .into_iter()
        .filter(|f| f.starts_with("providers/") && f.ends_with(".zip"))
        .map(|f| f.rsplit('/').next().unwrap().to_owned())
        .collect()
}

/// Stops the server and deletes the whole cache: the next run starts cold.
fn empty_cache(world: &World) {
    world.stop_server();
    std::fs::remove_dir_all(world.cache_dir()).unwrap();
}

fn timed_warm(world: &World, dir: &Path, args: &[&str]) -> Duration {
    let started = Instant::now();
    let output = run_in(world, dir, args);
    let elapsed = started.elapsed();
    assert_success(&output, &format!("tfmirror {args:?}"));
    assert!(
        stdout(&output).contains("6 packages: 0 already cached, 6 downloaded"),
        "{}",
        stdout(&output)
    );
    elapsed
}

#[test]
fn warm_caches_every_locked_package_for_an_offline_init() {
    const SIX: &Locked = &[
        ("hashicorp", "alpha", "1.0.0"),
        ("hashicorp", "beta", "2.1.0"),
        ("acme", "gamma", "0.3.0"),
        ("acme", "delta", "1.0.0"),
        ("example", "epsilon", "4.0.0"),
        ("example", "zeta", "0.0.1"),
    ];
    // 256 KiB a zip at 1 MiB/s: a quarter of a second each, so fetching
    // them one after another shows.
    let padded = specs(SIX)
        .into_iter()
        .map(|spec| spec.with_extra_bytes(256 * 1024))
        .collect();
    let world = World::new(padded);
    let dir = locked_workdir(&world, "six", SIX);
    world.registry.set_artifact_rate(Some(1024 * 1024));

    empty_cache(&world);
    let sequential = timed_warm(&world, &dir, &["warm", "--concurrency", "1"]);
    empty_cache(&world);
    let lock_file = dir.join(LOCK_FILE);
    let elsewhere = world.root.path();
    let concurrent = timed_warm(
        &world,
        elsewhere,
        &["warm", "--lockfile", lock_file.to_str().unwrap()],
    );
    eprintln!("warm of 6 packages: sequential {sequential:?}, concurrent (8) {concurrent:?}");
    assert!(concurrent < sequential, "{concurrent:?} vs {sequential:?}");
    assert_eq!(cached_zips(&world).len(), 6, "{:?}", cached_zips(&world));

    let again = run_in(&world, &dir, &["warm"]);
    assert_success(&again, "a second warm");
    assert!(
        stdout(&again).contains("6 packages: 6 already cached, 0 downloaded"),
        "{}",
        stdout(&again)
    );

    world.registry.clear_requests();
    let fresh = world.workdir("fresh", SIX);
    std::fs::copy(dir.join(LOCK_FILE), fresh.join(LOCK_FILE)).unwrap();
    assert_success(&world.init(&fresh), "init after warm");
    assert_eq!(
        world.registry.artifact_requests(),
        0,
        "{:#?}",
        world.registry.requests()
    );
}

/// A world publishing [`TWO`], and a directory initialised with them.
fn two_locked(name: &str) -> (World, PathBuf) {
    let world = World::new(specs(TWO));
    let dir = locked_workdir(&world, name, TWO);
    (world, dir)
}

/// `tfmirror lock [flags] --platform linux_amd64 --platform darwin_arm64`.
fn lock_both_platforms(world: &World, dir: &Path, flags: &[&str]) -> Output {
    let platforms = ["--platform", "linux_amd64", "--platform", "darwin_arm64"];
    run_in(world, dir, &[&["lock"], flags, &platforms].concat())
}

#[test]
fn lock_adds_the_hashes_terraform_computes() {
    let (world, mine) = two_locked("mine");
    let before = read_lock(&mine);

    let lock = lock_both_platforms(&world, &mine, &[]);
    assert_success(&lock, "tfmirror lock");

    let theirs = world.workdir("theirs", TWO);
    world.providers_lock(&theirs, &["linux_amd64", "darwin_arm64"]);
    for (namespace, name, _) in TWO {
        let mut ours = locked_hashes(&mine, namespace, name);
        let mut expected = locked_hashes(&theirs, namespace, name);
        ours.sort();
        expected.sort();
        assert_eq!(ours, expected, "{namespace}/{name}");
    }
    let after = read_lock(&mine);
    assert_ne!(after, before);
    assert_eq!(
        after,
        read_lock(&theirs),
        "laid out as terraform lays it out"
    );
    let added = stdout(&lock);
    assert_eq!(added.lines().count(), 2, "one h1: a provider: {added}");
    assert!(added.contains("darwin_arm64"), "{added}");

    let again = lock_both_platforms(&world, &mine, &[]);
    assert_success(&again, "tfmirror lock again");
    assert_eq!(read_lock(&mine), after);
}

#[test]
fn check_lists_missing_hashes_until_lock_adds_them() {
    let (world, dir) = two_locked("check");
    let before = read_lock(&dir);

    let check = lock_both_platforms(&world, &dir, &["--check"]);
    let text = assert_failure(&check, "lock --check with hashes missing");
    assert_eq!(check.status.code(), Some(1), "{text}");
    let listed = stdout(&check);
    assert_eq!(listed.lines().count(), 2, "{listed}");
    for address in ["hashicorp/alpha 1.2.0", "acme/beta 0.3.0"] {
        let wanted = format!("(registry.terraform.io/{address} darwin_arm64)");
        assert!(
            listed
                .lines()
                .any(|line| line.starts_with(".terraform.lock.hcl: lacks h1:")
                    && line.ends_with(&wanted)),
            "{listed}"
        );
    }
    assert_eq!(read_lock(&dir), before, "--check changes nothing");

    assert_success(&lock_both_platforms(&world, &dir, &[]), "lock");
    let check = lock_both_platforms(&world, &dir, &["--check"]);
    assert_success(&check, "lock --check once complete");
    assert!(stdout(&check).contains("complete"), "{}", stdout(&check));
}

#[test]
fn lock_refuses_a_package_the_lock_file_does_not_pin() {
    let (world, dir) = two_locked("tampered");
    // Every zh: of alpha changed: the cached zips no longer match the trust
    // root, though the h1: of this machine's package still does.
    let text = read_lock(&dir);
    let (head, tail) = text.split_at(text.find("hashicorp/alpha").unwrap());
    let (alpha, rest) = tail.split_at(tail.find("\n}").unwrap());
    let edited = format!("{head}{}{rest}", alpha.replace("\"zh:", "\"zh:0"));
    std::fs::write(dir.join(LOCK_FILE), &edited).unwrap();
    let beta_before = locked_hashes(&dir, "acme", "beta").len();

    let lock = run_in(
        &world,
        &dir,
        &[
            "lock",
            "--platform",
            "linux_amd64",
            "--platform",
            "darwin_arm64",
        ],
    );
    let output = assert_failure(&lock, "lock with a foreign zh:");
    assert!(
        output.contains("registry.terraform.io/hashicorp/alpha 1.2.0")
            && output.contains("does not match")
            && output.contains(LOCK_FILE),
        "{output}"
    );
    let after = read_lock(&dir);
    let alpha_after = &after[after.find("hashicorp/alpha").unwrap()..];
    assert_eq!(
        &alpha_after[..alpha_after.find("\n}").unwrap()],
        alpha.replace("\"zh:", "\"zh:0"),
        "nothing added to the refused provider"
    );
    assert_eq!(
        locked_hashes(&dir, "acme", "beta").len(),
        beta_before + 1,
        "the other provider still gets its darwin_arm64 h1:"
    );

    // warm checks any hash: the h1: Terraform recorded still vouches for
    // this machine's package.
    assert_success(&run_in(&world, &dir, &["warm"]), "warm");
}

#[test]
fn a_platform_the_registry_lacks_is_reported_by_name() {
    let linux_only =
        vec![ProviderSpec::new("acme", "linuxonly", &["1.0.0"])
            .with_platforms(&[("linux", "amd64")])];
    let world = World::new(linux_only);
    let root = world.root.path().join("work");
    locked_workdir(&world, "nested/one", &[("acme", "linuxonly", "1.0.0")]);

    let warm = run_in(
        &world,
        &root,
        &[
            "warm",
            "--platform",
            "darwin_arm64",
            "--platform",
            "linux_amd64",
            ".",
        ],
    );
    let output = assert_failure(&warm, "warm for a platform nobody built");
    assert!(
        output.contains("registry.terraform.io/acme/linuxonly 1.0.0 darwin_arm64: not available"),
        "{output}"
    );
    assert!(
        stdout(&warm).contains("2 packages: 1 already cached, 0 downloaded"),
        "{output}"
    );
}

#[test]
fn malformed_lock_files_are_reported_with_their_line() {
    let world = World::new(Vec::new());
    let cases = [
        (
            "bad-hcl",
            "# locked\nprovider \"registry.terraform.io/hashicorp/aws\" {\n  version = \"1.0.0\"\n  \
             hashes = [\n    \"h1:a=\"\n    \"zh:b\",\n  ]\n}\n",
            "tfmirror: .terraform.lock.hcl:6: not valid HCL",
        ),
        (
            "unknown-block",
            "provider \"registry.terraform.io/hashicorp/aws\" {\n  version = \"1.0.0\"\n}\n\n\
             module \"x\" {\n}\nfoo {\n}\n",
            "tfmirror: .terraform.lock.hcl:7: unknown block \"foo\"",
        ),
    ];
    for (name, text, expected) in cases {
        let dir = world.workdir_with(name, "");
        std::fs::write(dir.join(LOCK_FILE), text).unwrap();
        for command in ["warm", "lock"] {
            let output = run_in(&world, &dir, &[command]);
            assert_eq!(output.status.code(), Some(1), "{command} {name}");
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert!(stderr.starts_with(expected), "{command} {name}: {stderr}");
        }
    }
    assert!(
        world.server_info().is_none(),
        "no server for a bad lock file"
    );
}
