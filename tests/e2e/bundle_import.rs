//! `tfmirror bundle import`: a bundle of the mixed root imported into an
//! empty cache inits sealed with the network unplugged, to the same
//! modules and lock file; an altered bundle is refused whole, naming the
//! entry, and stores nothing; a second import finds everything cached.

use std::path::{Path, PathBuf};
use std::process::Output;

use crate::bundles::{bounded, create, middle_bytes, write_flipped};
use crate::harness::{assert_failure, assert_success, World};
use crate::offline::{namespaces_permitted, sealed_init_unplugged_in};
use crate::shared_tier::{team_main_tf, team_root_world};

/// A tfmirror command against the cache at `cache`, bounded in time.
fn on_cache(world: &World, cache: &Path, args: &[&str]) -> Output {
    bounded(world, args)
        .env("TFMIRROR_CACHE_DIR", cache)
        .output()
        .unwrap()
}

fn import(world: &World, cache: &Path, bundle: &Path) -> Output {
    on_cache(
        world,
        cache,
        &["bundle", "import", bundle.to_str().unwrap()],
    )
}

fn stop(world: &World, cache: &Path) {
    assert_success(&on_cache(world, cache, &["stop"]), "tfmirror stop");
}

/// What a cache holds: its files (not the server's bookkeeping or the
/// index's own files) and the index's artifacts as `cache list` shows them.
fn contents(world: &World, cache: &Path) -> (Vec<String>, String) {
    let listed = on_cache(world, cache, &["cache", "list", "--json"]);
    // `cache list` makes no cache: none yet is an empty one.
    let listing = if listed.status.code() == Some(1)
        && String::from_utf8_lossy(&listed.stderr).starts_with("no tfmirror cache at ")
    {
        "[]\n".to_owned()
    } else {
        assert_success(&listed, "cache list --json");
        String::from_utf8_lossy(&listed.stdout).into_owned()
    };
    let bookkeeping = [
        "server.",
        "owner.lock",
        "index/",
        "terraform.rc",
        "CACHEDIR.TAG",
    ];
    let mut files = Vec::new();
    let mut dirs = vec![cache.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            let rel = path
                .strip_prefix(cache)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            if bookkeeping.iter().any(|b| rel.starts_with(b)) {
                continue;
            }
            match path.is_dir() {
                true => dirs.push(path),
                false => files.push(rel),
            }
        }
    }
    files.sort();
    (files, listing)
}

/// Every file below `dir`, relative, sorted.
fn file_list(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(next) = dirs.pop() {
        for entry in std::fs::read_dir(&next).unwrap().flatten() {
            let path = entry.path();
            match path.is_dir() {
                true => dirs.push(path),
                false => files.push(path.strip_prefix(dir).unwrap().to_path_buf()),
            }
        }
    }
    files.sort();
    files
}

#[test]
fn an_imported_bundle_inits_unplugged_and_a_bad_one_stores_nothing() {
    let world = team_root_world(&[("linux", "amd64"), ("darwin", "arm64")], "");
    let main_tf = team_main_tf(&world);
    let bundle = world.root.path().join("root.tfbundle");
    let original = world.workdir_with("root", &main_tf);
    assert_success(
        &create(&world, &original, &bundle, &["--platform", "darwin_arm64"]),
        "bundle create",
    );
    world.stop_server();
    let size = std::fs::metadata(&bundle).unwrap().len();

    // An altered byte in a provider zip, a download answer or a git
    // bundle: refused whole, named, nothing stored.
    let empty = world.root.path().join("refusing-cache");
    let before = contents(&world, &empty);
    let bytes = std::fs::read(&bundle).unwrap();
    let altered = world.root.path().join("altered.tfbundle");
    let positions = middle_bytes(&bytes);
    for wanted in [".zip", "providers%2Fdownload", ".git.bundle"] {
        let (path, position) = positions
            .iter()
            .find(|(path, _)| path.contains(wanted))
            .unwrap_or_else(|| panic!("no entry like {wanted}"));
        write_flipped(&bytes, *position, &altered);
        let message = assert_failure(
            &import(&world, &empty, &altered),
            "import of an altered bundle",
        );
        assert!(
            message.contains(path.as_str()),
            "{message:?} does not name {path}"
        );
        assert!(message.contains("nothing stored"), "{message}");
        assert_eq!(
            contents(&world, &empty),
            before,
            "the cache is unchanged after {path}"
        );
    }
    stop(&world, &empty);

    // Imported into an empty cache: everything is stored.
    let cache = world.root.path().join("imported-cache");
    let started = std::time::Instant::now();
    let output = import(&world, &cache, &bundle);
    let took = started.elapsed();
    assert_success(&output, "bundle import");
    let said = String::from_utf8_lossy(&output.stdout);
    assert!(
        said.contains("imported ") && said.contains(", 0 already cached"),
        "{said}"
    );
    eprintln!(
        "import of a {size}-byte bundle: {:.2}s ({said})",
        took.as_secs_f64()
    );

    // Again: all of it is there already.
    let output = import(&world, &cache, &bundle);
    assert_success(&output, "the second bundle import");
    let said = String::from_utf8_lossy(&output.stdout);
    assert!(said.starts_with("imported 0 entries ("), "{said}");
    stop(&world, &cache);

    if !namespaces_permitted() {
        eprintln!("skipped: unshare -n not permitted (the unplugged init)");
        return;
    }
    world.registry.clear_requests();
    let fresh = world.workdir_with("unplugged", &main_tf);
    let output = sealed_init_unplugged_in(&world, &fresh, &cache);
    assert_success(&output, "sealed init from the imported cache, unplugged");
    assert!(
        world.registry.requests().is_empty(),
        "the upstream was asked"
    );
    let read = |dir: &Path, file: &str| std::fs::read_to_string(dir.join(file)).unwrap();
    for file in [".terraform.lock.hcl", ".terraform/modules/modules.json"] {
        assert_eq!(read(&fresh, file), read(&original, file), "{file} differs");
    }
    let modules = |dir: &Path| file_list(&dir.join(".terraform/modules"));
    assert_eq!(
        modules(&fresh),
        modules(&original),
        "the modules' files differ"
    );
}
