//! End to end: `exec` of `init` with a lock file installs the locked
//! providers from the server's unpacked tree (Terraform symlinks them), adds
//! this machine's `h1:` where the lock file vouches for the zip with a
//! `zh:`, and never changes which version is selected.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use crate::fixtures::ProviderSpec;
use crate::harness::{assert_failure, assert_success, locked_hashes, terraform, World};
use crate::reporting::{savings_line, si};
use base64::Engine;
use sha2::{Digest, Sha256};

const LOCK_FILE: &str = ".terraform.lock.hcl";

/// `(namespace, type, version)`.
const TWO: &[(&str, &str, &str)] = &[("hashicorp", "alpha", "1.2.0"), ("acme", "beta", "0.3.0")];

fn two_providers() -> World {
    World::new(
        TWO.iter()
            .map(|(namespace, name, version)| ProviderSpec::new(namespace, name, &[version]))
            .collect(),
    )
}

fn text(output: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// `tfmirror exec -- terraform ARGS` in `dir`.
fn exec_terraform(world: &World, dir: &Path, args: &[&str]) -> Output {
    let terraform = terraform();
    world
        .tfmirror(&[&["exec", "--", terraform.to_str().unwrap()], args].concat())
        .current_dir(dir)
        .output()
        .expect("run tfmirror exec")
}

/// A directory initialised through the registry path, for its lock file.
fn locked_workdir(world: &World, name: &str) -> PathBuf {
    let dir = world.workdir(name, TWO);
    assert_success(&world.init(&dir), "first init");
    dir
}

/// A fresh working directory holding a copy of `lock`.
fn fresh_with_lock(world: &World, name: &str, lock: &Path) -> PathBuf {
    let dir = world.workdir(name, TWO);
    std::fs::copy(lock, dir.join(LOCK_FILE)).unwrap();
    dir
}

/// Where `init` installed a provider for this machine.
fn installed(dir: &Path, namespace: &str, name: &str, version: &str) -> PathBuf {
    dir.join(".terraform/providers/registry.terraform.io")
        .join(namespace)
        .join(name)
        .join(version)
        .join("linux_amd64")
}

fn tree_entry(world: &World, namespace: &str, name: &str, version: &str) -> PathBuf {
    world
        .cache_dir()
        .join("providers-unpacked/registry.terraform.io")
        .join(namespace)
        .join(name)
        .join(version)
        .join("linux_amd64")
}

fn is_link(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink())
}

/// Asserts each of [`TWO`] is installed as a link into the cache's tree.
fn assert_linked_from_tree(world: &World, dir: &Path, output: &Output) {
    for (namespace, name, version) in TWO {
        let path = installed(dir, namespace, name, version);
        assert!(
            is_link(&path),
            "{} is not a link:\n{}",
            path.display(),
            text(output)
        );
        let target = std::fs::canonicalize(&path).unwrap();
        let entry = std::fs::canonicalize(tree_entry(world, namespace, name, version)).unwrap();
        assert_eq!(target, entry, "{namespace}/{name}");
    }
}

/// Go's dirhash `Hash1` of a directory: what Terraform compares with the
/// lock file's `h1:` before it links an unpacked mirror's directory.
fn dir_h1(root: &Path) -> String {
    let mut files = Vec::new();
    let mut dirs = vec![root.to_owned()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                let name = path
                    .strip_prefix(root)
                    .unwrap()
                    .to_str()
                    .unwrap()
                    .to_owned();
                files.push((name, path));
            }
        }
    }
    files.sort();
    let mut summary = String::new();
    for (name, path) in files {
        let digest = Sha256::digest(std::fs::read(path).unwrap());
        summary.push_str(&format!("{}  {name}\n", hex::encode(digest)));
    }
    let digest = Sha256::digest(summary.as_bytes());
    format!(
        "h1:{}",
        base64::engine::general_purpose::STANDARD.encode(digest)
    )
}

#[test]
fn a_warm_init_with_a_lock_file_links_every_provider_from_the_tree() {
    let world = two_providers();
    let first = locked_workdir(&world, "first");
    world.registry.clear_requests();

    let fresh = fresh_with_lock(&world, "fresh", &first.join(LOCK_FILE));
    let started = Instant::now();
    let output = world.init(&fresh);
    eprintln!("warm init with a lock file: {:?}", started.elapsed());
    assert_success(&output, "warm init");
    assert_linked_from_tree(&world, &fresh, &output);
    assert_eq!(
        world.registry.requests(),
        [],
        "no upstream request of any kind"
    );
    assert_eq!(
        std::fs::read(fresh.join(LOCK_FILE)).unwrap(),
        std::fs::read(first.join(LOCK_FILE)).unwrap(),
        "the lock file is unchanged"
    );
}

/// Terraform never asks for the zips of providers it links from the tree;
/// the savings line counts them all the same: downloaded when the prepare
/// request fetched them (a cold cache), from the cache when they were
/// there before the run.
#[test]
fn a_locked_inits_savings_line_counts_the_linked_providers() {
    let world = two_providers();
    let darwin = world.workdir("darwin", TWO);
    world.providers_lock(&darwin, &["darwin_arm64"]);
    let zips: u64 = TWO
        .iter()
        .map(|(namespace, name, version)| {
            let zip = world
                .registry
                .zip_bytes(namespace, name, version, "linux", "amd64");
            zip.len() as u64
        })
        .sum();

    let cold = fresh_with_lock(&world, "cold", &darwin.join(LOCK_FILE));
    let output = world.init(&cold);
    assert_success(&output, "cold init with a lock file");
    assert_linked_from_tree(&world, &cold, &output);
    assert_eq!(
        savings_line(&output.stderr),
        format!(
            "tfmirror: 0 B from cache (0 hits), {} downloaded (2 misses)",
            si(zips)
        )
    );

    let warm = fresh_with_lock(&world, "warm", &darwin.join(LOCK_FILE));
    let output = world.init(&warm);
    assert_success(&output, "warm init with a lock file");
    assert_linked_from_tree(&world, &warm, &output);
    assert_eq!(
        savings_line(&output.stderr),
        format!(
            "tfmirror: {} from cache (2 hits), 0 B downloaded (0 misses)",
            si(zips)
        )
    );
}

#[test]
fn a_cross_platform_lock_gets_this_platforms_h1_and_installs_from_the_tree() {
    let world = two_providers();
    let darwin = world.workdir("darwin", TWO);
    world.providers_lock(&darwin, &["darwin_arm64"]);
    let linux = world.workdir("linux", TWO);
    let lock = exec_terraform(
        &world,
        &linux,
        &["providers", "lock", "-no-color", "-platform=linux_amd64"],
    );
    assert_success(&lock, "providers lock through exec");

    let dir = fresh_with_lock(&world, "cross", &darwin.join(LOCK_FILE));
    let output = world.init(&dir);
    assert_success(&output, "init with a darwin-only lock");
    let said = text(&output);
    let line = said
        .lines()
        .find(|line| line.contains("added the linux_amd64 h1: hash of"))
        .unwrap_or_else(|| panic!("no line about the added hashes:\n{said}"));
    for (namespace, name, _) in TWO {
        assert!(
            line.contains(&format!("registry.terraform.io/{namespace}/{name}")),
            "{line}"
        );
        let mut ours = locked_hashes(&dir, namespace, name);
        let mut expected = locked_hashes(&darwin, namespace, name);
        expected.extend(locked_hashes(&linux, namespace, name));
        expected.sort();
        expected.dedup();
        ours.sort();
        assert_eq!(
            ours, expected,
            "{namespace}/{name}: darwin's and terraform's linux h1:"
        );
    }
    assert_linked_from_tree(&world, &dir, &output);
}

#[test]
fn a_tampered_cached_zip_adds_nothing_and_fails_by_name() {
    let flip_a_byte = |zip: &Path, _: &World| {
        let mut bytes = std::fs::read(zip).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0xff;
        std::fs::write(zip, &bytes).unwrap();
    };
    // A valid zip with other contents: only its hash tells it apart.
    let another_providers_zip = |zip: &Path, world: &World| {
        let beta = world
            .registry
            .zip_bytes("acme", "beta", "0.3.0", "linux", "amd64");
        std::fs::write(zip, beta).unwrap();
    };
    for tamper in [
        &flip_a_byte as &dyn Fn(&Path, &World),
        &another_providers_zip,
    ] {
        let world = two_providers();
        let darwin = world.workdir("darwin", TWO);
        world.providers_lock(&darwin, &["darwin_arm64"]);
        let warm = world
            .tfmirror(&["warm", "--platform", "linux_amd64"])
            .current_dir(&darwin)
            .output()
            .unwrap();
        assert_success(&warm, "warm");
        let zip = world
            .cache_dir()
            .join("providers/registry.terraform.io/hashicorp/alpha")
            .join("terraform-provider-alpha_1.2.0_linux_amd64.zip");
        tamper(&zip, &world);

        let dir = fresh_with_lock(&world, "tampered", &darwin.join(LOCK_FILE));
        let before = std::fs::read_to_string(dir.join(LOCK_FILE)).unwrap();
        let output = world.init(&dir);
        let said = assert_failure(&output, "init with a tampered zip");
        assert!(
            said.lines()
                .any(|l| l.starts_with("tfmirror: registry.terraform.io/hashicorp/alpha")),
            "{said}"
        );
        let after = std::fs::read_to_string(dir.join(LOCK_FILE)).unwrap();
        assert_eq!(
            locked_hashes_of(&after, "hashicorp/alpha"),
            locked_hashes_of(&before, "hashicorp/alpha"),
            "nothing added for alpha:\n{said}"
        );
        assert!(!is_link(&installed(&dir, "hashicorp", "alpha", "1.2.0")));
    }
}

/// The hashes of one provider block of a lock file's text.
fn locked_hashes_of(lock: &str, provider: &str) -> Vec<String> {
    let start = lock
        .find(&format!("registry.terraform.io/{provider}\""))
        .unwrap();
    let block = &lock[start..];
    let block = &block[..block.find("\n}").unwrap()];
    block
        .lines()
        .map(|l| l.trim().trim_end_matches(',').trim_matches('"').to_owned())
        .filter(|l| l.starts_with("h1:") || l.starts_with("zh:"))
        .collect()
}

#[test]
fn eight_parallel_inits_with_a_plugin_cache_write_correct_lock_files() {
    let world = two_providers();
    let plugin_cache = world.home().join("plugin-cache");
    std::fs::create_dir_all(&plugin_cache).unwrap();
    std::fs::write(
        world.home().join(".terraformrc"),
        format!("plugin_cache_dir = \"{}\"\n", plugin_cache.display()),
    )
    .unwrap();
    let darwin = world.workdir("darwin", TWO);
    world.providers_lock(&darwin, &["darwin_arm64"]);
    // Half start with a darwin-only lock file (exec adds the h1:), half
    // with none (the registry path); all at once.
    let with_lock = |i: usize| i.is_multiple_of(2);
    let dirs: Vec<PathBuf> = (0..8)
        .map(|i| {
            if with_lock(i) {
                fresh_with_lock(&world, &format!("p{i}"), &darwin.join(LOCK_FILE))
            } else {
                world.workdir(&format!("p{i}"), TWO)
            }
        })
        .collect();
    let started = Instant::now();
    let outputs: Vec<Output> = std::thread::scope(|scope| {
        let running: Vec<_> = dirs
            .iter()
            .map(|dir| scope.spawn(|| world.init(dir)))
            .collect();
        running.into_iter().map(|t| t.join().unwrap()).collect()
    });
    assert!(
        started.elapsed() < Duration::from_secs(120),
        "{:?}",
        started.elapsed()
    );
    for (i, (dir, output)) in dirs.iter().zip(&outputs).enumerate() {
        assert_success(output, &format!("init in {}", dir.display()));
        assert!(
            text(output).contains("plugin_cache_dir is left out"),
            "{}",
            text(output)
        );
        for (namespace, name, version) in TWO {
            let tree_h1 = dir_h1(&tree_entry(&world, namespace, name, version));
            let hashes = locked_hashes(dir, namespace, name);
            assert!(
                hashes.contains(&tree_h1),
                "{}: {hashes:?} lacks {tree_h1}",
                dir.display()
            );
            // This machine's h1:, and darwin's where the lock file had it.
            let h1s = hashes.iter().filter(|h| h.starts_with("h1:")).count();
            let expected = if with_lock(i) { 2 } else { 1 };
            assert_eq!(h1s, expected, "{}: {hashes:?}", dir.display());
            assert_eq!(
                is_link(&installed(dir, namespace, name, version)),
                with_lock(i)
            );
        }
    }
    assert_eq!(
        std::fs::read_dir(&plugin_cache).unwrap().count(),
        0,
        "the plugin cache was not used"
    );
}

#[test]
fn without_a_lock_file_init_uses_the_registry_and_locks_every_platform() {
    let world = two_providers();
    let dir = world.workdir("new", TWO);
    let output = world.init(&dir);
    assert_success(&output, "init without a lock file");
    for (namespace, name, version) in TWO {
        assert!(!is_link(&installed(&dir, namespace, name, version)));
        let zh = locked_hashes(&dir, namespace, name)
            .iter()
            .filter(|h| h.starts_with("zh:"))
            .count();
        assert_eq!(zh, 3, "linux_amd64, darwin_arm64 and windows_amd64");
    }
}

#[test]
fn a_locked_init_installs_from_the_tree_with_the_upstream_down() {
    let world = two_providers();
    let first = locked_workdir(&world, "first");
    world.registry.stop();
    let fresh = fresh_with_lock(&world, "offline", &first.join(LOCK_FILE));
    let output = world.init(&fresh);
    assert_success(&output, "init with the upstream down");
    assert_linked_from_tree(&world, &fresh, &output);
}

#[test]
fn upgrade_and_a_users_provider_installation_keep_the_registry_path() {
    let world = two_providers();
    let first = locked_workdir(&world, "first");

    let upgrade = fresh_with_lock(&world, "upgrade", &first.join(LOCK_FILE));
    let output = exec_terraform(
        &world,
        &upgrade,
        &["init", "-upgrade", "-input=false", "-no-color"],
    );
    assert_success(&output, "init -upgrade");
    assert!(
        !is_link(&installed(&upgrade, "hashicorp", "alpha", "1.2.0")),
        "{}",
        text(&output)
    );

    std::fs::write(
        world.home().join(".terraformrc"),
        "provider_installation {\n  direct {}\n}\n",
    )
    .unwrap();
    let own = fresh_with_lock(&world, "own", &first.join(LOCK_FILE));
    let output = world.init(&own);
    assert_success(&output, "init with the user's provider_installation");
    assert!(!is_link(&installed(&own, "hashicorp", "alpha", "1.2.0")));
    assert!(
        text(&output).contains("has a provider_installation block"),
        "{}",
        text(&output)
    );
}

#[test]
fn a_script_keeps_the_providers_of_a_unit_without_lock_file_on_the_registry_path() {
    let world = two_providers();
    let a = locked_workdir(&world, "a");
    std::fs::remove_dir_all(a.join(".terraform")).unwrap();
    let b = world.workdir("b", &[("acme", "beta", "0.3.0")]);
    let terraform = terraform();
    let terraform = terraform.to_str().unwrap();
    let script = format!(
        "cd a && {terraform} init -input=false -no-color && cd ../b && {terraform} init -input=false -no-color"
    );
    let output = world
        .tfmirror(&["exec", "--", "sh", "-c", &script])
        .current_dir(a.parent().unwrap())
        .output()
        .unwrap();
    assert_success(&output, "the script");
    assert!(
        is_link(&installed(&a, "hashicorp", "alpha", "1.2.0")),
        "{}",
        text(&output)
    );
    assert!(
        !is_link(&installed(&a, "acme", "beta", "0.3.0")),
        "{}",
        text(&output)
    );
    assert!(installed(&a, "acme", "beta", "0.3.0").is_dir());
    assert!(!is_link(&installed(&b, "acme", "beta", "0.3.0")));
    assert!(installed(&b, "acme", "beta", "0.3.0").is_dir());
    let said = text(&output);
    assert!(
        said.contains(&format!(
            "registry.terraform.io/acme/beta ({})",
            b.display()
        )),
        "{said}"
    );
}
