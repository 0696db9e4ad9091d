//! End to end: only verified provider zips enter the cache (issue 13,
//! finding 1). `tfmirror cache import` hands zips to the server, which
//! stores one only if the registry's signed SHA256SUMS lists it, or, when
//! the registry cannot answer, if a `--lock-file` the user named holds its
//! `zh:` or `h1:`. The network mirror serves, and lists `h1:` for, only
//! zips whose verification is on record.

use std::io::{Cursor, Write};
use std::path::{Path, PathBuf};
use std::process::Output;

use crate::fixtures::http::get;
use crate::fixtures::provider_zip::{sha256_hex, zip_filename};
use crate::fixtures::ProviderSpec;
use crate::harness::{assert_failure, assert_success, terraform, ServeProcess, World};

const PROVIDER: [(&str, &str, &str); 1] = [("hashicorp", "alpha", "1.2.0")];

fn world() -> World {
    World::new(vec![ProviderSpec::new("hashicorp", "alpha", &["1.2.0"])])
}

/// A valid provider zip for `hashicorp/alpha 1.2.0` that the registry
/// never published: the attacker's package.
fn planted_zip() -> Vec<u8> {
    let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default().unix_permissions(0o755);
    zip.start_file("terraform-provider-alpha_v1.2.0", options)
        .unwrap();
    zip.write_all(b"#!/bin/sh\necho PWNED\n").unwrap();
    zip.finish().unwrap().into_inner()
}

/// The registry's own zip of `hashicorp/alpha 1.2.0` for a platform.
fn genuine_zip(world: &World, os: &str, arch: &str) -> Vec<u8> {
    world
        .registry
        .zip_bytes("hashicorp", "alpha", "1.2.0", os, arch)
}

/// A `terraform providers mirror` style directory holding `zips`
/// (`(os, arch, bytes)`) of `hashicorp/alpha 1.2.0`, without version files.
fn mirror_dir(world: &World, name: &str, zips: &[(&str, &str, Vec<u8>)]) -> PathBuf {
    let root = world.root.path().join(name);
    let dir = root.join("registry.terraform.io/hashicorp/alpha");
    std::fs::create_dir_all(&dir).unwrap();
    for (os, arch, bytes) in zips {
        std::fs::write(dir.join(zip_filename("alpha", "1.2.0", os, arch)), bytes).unwrap();
    }
    root
}

fn import(world: &World, dir: &Path, lock_files: &[&Path]) -> Output {
    let mut command = world.tfmirror(&["cache", "import", dir.to_str().unwrap()]);
    for lock in lock_files {
        command.arg("--lock-file").arg(lock);
    }
    command.output().unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The cache's files, without the index and the server's bookkeeping,
/// which change with every request.
/// The cache's files but its bookkeeping: the index and the files that
/// back it (`documents/`) hold registry answers, which an import may
/// fetch; what must not change is what is served.
fn cache_tree(world: &World) -> Vec<String> {
    world
        .cache_files()
        .into_iter()
        .filter(|f| {
            !f.starts_with("index/")
                && !f.starts_with("documents/")
                && !["CACHEDIR.TAG", "owner.lock", "server.json", "terraform.rc"]
                    .contains(&f.as_str())
                && !f.starts_with("server.log")
                && !f.starts_with("audit.jsonl")
        })
        .collect()
}

fn cached_zip(world: &World, os: &str, arch: &str) -> PathBuf {
    world
        .cache_dir()
        .join("providers/registry.terraform.io/hashicorp/alpha")
        .join(zip_filename("alpha", "1.2.0", os, arch))
}

/// The verification record of a cached zip, read from the index after
/// stopping the server that owns it.
fn verification_record(world: &World, os: &str, arch: &str) -> Option<serde_json::Value> {
    if world.server_info().is_some() {
        world.stop_server();
    }
    let db = sled::open(world.cache_dir().join("index")).unwrap();
    let documents = db.open_tree("documents").unwrap();
    let key = format!(
        "providers/verified/providers/registry.terraform.io/hashicorp/alpha/{}",
        zip_filename("alpha", "1.2.0", os, arch)
    );
    let stored = documents.get(key.as_bytes()).unwrap()?;
    let doc: serde_json::Value = serde_json::from_slice(&stored).unwrap();
    Some(serde_json::from_str(doc["body"].as_str().unwrap()).unwrap())
}

/// A lock file for `hashicorp/alpha 1.2.0` with exactly these hashes.
fn lock_file(path: &Path, hashes: &[String]) -> PathBuf {
    let listed: Vec<String> = hashes.iter().map(|h| format!("    \"{h}\",\n")).collect();
    std::fs::write(
        path,
        format!(
            "provider \"registry.terraform.io/hashicorp/alpha\" {{\n  version = \"1.2.0\"\n  hashes = [\n{}  ]\n}}\n",
            listed.concat()
        ),
    )
    .unwrap();
    path.to_owned()
}

#[test]
fn a_planted_zip_is_refused_while_the_registry_is_up() {
    let world = world();
    assert_success(
        &world.init(&world.workdir("first", &PROVIDER)),
        "first init",
    );
    let before = cache_tree(&world);
    assert!(
        !cached_zip(&world, "darwin", "arm64").exists(),
        "only this machine's platform is cached: {before:#?}"
    );

    // Even a lock file listing the planted zip does not outvote the registry.
    let planted = planted_zip();
    let vouching = lock_file(
        &world.root.path().join("vouching.lock.hcl"),
        &[format!("zh:{}", sha256_hex(&planted))],
    );
    let dir = mirror_dir(&world, "planted", &[("darwin", "arm64", planted)]);
    let output = import(&world, &dir, &[&vouching]);
    let text = assert_failure(&output, "import of a planted zip");
    assert!(
        text.contains("terraform-provider-alpha_1.2.0_darwin_arm64.zip: refusing")
            && text.contains("not listed in the registry's signed SHA256SUMS"),
        "{text}"
    );
    assert!(stdout(&output).contains("0 imported, 0 already cached, 1 refused"));
    assert_eq!(cache_tree(&world), before, "the cache is unchanged");

    assert_success(
        &world.init(&world.workdir("second", &PROVIDER)),
        "init after the refused import",
    );
}

#[test]
fn the_registrys_own_zip_is_imported_and_recorded_as_registry_verified() {
    let world = world();
    let dir = mirror_dir(
        &world,
        "genuine",
        &[("darwin", "arm64", genuine_zip(&world, "darwin", "arm64"))],
    );
    let output = import(&world, &dir, &[]);
    assert_success(&output, "import of the registry's own zip");
    assert!(
        stdout(&output).contains("1 imported"),
        "{}",
        stdout(&output)
    );
    assert_eq!(
        std::fs::read(cached_zip(&world, "darwin", "arm64")).unwrap(),
        genuine_zip(&world, "darwin", "arm64")
    );
    let record = verification_record(&world, "darwin", "arm64").expect("a record");
    assert_eq!(record["by"], "registry-signature", "{record}");
}

/// With no registry to ask, only the lock files the user names vouch for a
/// zip: by the `h1:` Terraform records for its own platform, or by the
/// `zh:` it records for every platform.
#[test]
fn offline_only_a_lock_file_hash_lets_a_zip_in() {
    // A real lock file, written by Terraform through another cache.
    let source = world();
    let workdir = source.workdir("source", &PROVIDER);
    assert_success(&source.init(&workdir), "init that writes the lock file");
    let full_lock = workdir.join(".terraform.lock.hcl");
    let locked = crate::harness::locked_hashes(&workdir, "hashicorp", "alpha");
    let h1_only: Vec<String> = locked
        .iter()
        .filter(|h| h.starts_with("h1:"))
        .cloned()
        .collect();
    assert!(!h1_only.is_empty(), "{locked:?}");
    let h1_lock = lock_file(&source.root.path().join("h1.lock.hcl"), &h1_only);

    let world = world();
    world.registry.stop();
    let dir = mirror_dir(
        &world,
        "offline",
        &[
            ("linux", "amd64", genuine_zip(&world, "linux", "amd64")),
            ("darwin", "arm64", genuine_zip(&world, "darwin", "arm64")),
            ("windows", "amd64", planted_zip()),
        ],
    );
    let before = cache_tree(&world);

    let output = import(&world, &dir, &[]);
    let text = assert_failure(&output, "offline import without --lock-file");
    assert_eq!(
        text.matches("no --lock-file was given").count(),
        3,
        "{text}"
    );
    assert!(text.contains("the registry is unreachable"), "{text}");
    assert!(text.contains("--lock-file .terraform.lock.hcl"), "{text}");
    assert_eq!(cache_tree(&world), before, "nothing stored");

    // Terraform's h1: covers the platform it ran on (linux_amd64) only.
    let output = import(&world, &dir, &[&h1_lock]);
    let text = assert_failure(&output, "offline import with an h1:-only lock file");
    assert!(
        stdout(&output).contains("1 imported, 0 already cached, 2 refused"),
        "{text}"
    );
    assert!(
        text.contains("terraform-provider-alpha_1.2.0_darwin_arm64.zip: refusing")
            && text.contains("no lock file hash matches (zh:"),
        "{text}"
    );

    // Its zh: hashes cover every platform the registry published; the
    // planted zip is in none.
    let output = import(&world, &dir, &[&full_lock]);
    let text = assert_failure(&output, "offline import with Terraform's lock file");
    assert!(
        stdout(&output).contains("1 imported, 1 already cached, 1 refused"),
        "{text}"
    );
    assert!(
        text.contains("terraform-provider-alpha_1.2.0_windows_amd64.zip: refusing"),
        "{text}"
    );
    assert!(!cached_zip(&world, "windows", "amd64").exists());

    let linux = verification_record(&world, "linux", "amd64").expect("a record");
    assert_eq!(linux["by"], "lock-file", "{linux}");
    assert_eq!(linux["file"], h1_lock.to_str().unwrap(), "{linux}");
    let darwin = verification_record(&world, "darwin", "arm64").expect("a record");
    assert_eq!(darwin["file"], full_lock.to_str().unwrap(), "{darwin}");

    // With the registry still down, an init locked to the imported zip
    // installs it, by symlink from the unpacked tree.
    let offline = world.workdir("offline-init", &PROVIDER);
    std::fs::copy(&full_lock, offline.join(".terraform.lock.hcl")).unwrap();
    assert_success(&world.init(&offline), "init offline after the import");
    let installed = offline
        .join(".terraform/providers/registry.terraform.io/hashicorp/alpha/1.2.0/linux_amd64");
    assert!(
        installed.symlink_metadata().unwrap().is_symlink(),
        "{}",
        installed.display()
    );
}

/// Puts the planted zip straight into the cache, with no verification
/// record, as one imported before imports were checked.
fn plant_in_cache(world: &World) -> (PathBuf, Vec<u8>) {
    let planted = planted_zip();
    let zip = cached_zip(world, "linux", "amd64");
    std::fs::create_dir_all(zip.parent().unwrap()).unwrap();
    std::fs::write(&zip, &planted).unwrap();
    (zip, planted)
}

fn mirror_base(server: &ServeProcess) -> String {
    format!(
        "{}/providers/registry.terraform.io/hashicorp/alpha",
        server.url
    )
}

/// A zip in the cache with no verification record is neither listed with
/// an `h1:` nor served by the network mirror, and Terraform does not
/// install it from there.
#[test]
fn the_network_mirror_neither_lists_nor_serves_an_unverified_zip() {
    let world = world();
    let (zip, planted) = plant_in_cache(&world);

    let server = world.serve();
    let base = mirror_base(&server);
    let version = get(&format!("{base}/1.2.0.json"));
    assert_eq!(version.status, 200, "{}", version.text());
    let hashes = version.json()["archives"]["linux_amd64"]["hashes"].clone();
    let genuine = sha256_hex(&genuine_zip(&world, "linux", "amd64"));
    assert_eq!(
        hashes,
        serde_json::json!([format!("zh:{genuine}")]),
        "only the registry's zh:"
    );
    let name = zip_filename("alpha", "1.2.0", "linux", "amd64");
    let served = get(&format!("{base}/{name}"));
    assert_eq!(served.status, 404, "{}", served.text());
    assert!(
        served.text().contains("never verified"),
        "{}",
        served.text()
    );
    drop(server);

    let (server, ca) = world.serve_tls(&[]);
    let cli_config = world.root.path().join("mirror.tfrc");
    std::fs::write(
        &cli_config,
        format!(
            "provider_installation {{\n  network_mirror {{\n    url = \"{}/providers/\"\n  }}\n}}\n",
            server.url
        ),
    )
    .unwrap();
    let output = world
        .command(terraform())
        .args(["init", "-input=false", "-no-color"])
        .current_dir(world.workdir("over-tls", &PROVIDER))
        .env("TF_CLI_CONFIG_FILE", &cli_config)
        .env("SSL_CERT_FILE", &ca)
        .output()
        .unwrap();
    let text = assert_failure(
        &output,
        "init of a planted provider over the network mirror",
    );
    assert!(
        text.contains("Failed to install provider") && text.contains("404"),
        "{text}"
    );
    assert_eq!(
        std::fs::read(&zip).unwrap(),
        planted,
        "left for the owner to delete"
    );
}

/// With the registry down, the mirror answers from the zips on disk, and
/// has nothing to say of one that nothing vouches for.
#[test]
fn offline_the_network_mirror_leaves_an_unverified_zip_out() {
    let world = world();
    plant_in_cache(&world);
    world.registry.stop();
    let server = world.serve();
    let version = get(&format!("{}/1.2.0.json", mirror_base(&server)));
    assert_eq!(version.status, 200, "{}", version.text());
    assert_eq!(
        version.json()["archives"],
        serde_json::json!({}),
        "{}",
        version.text()
    );
}

/// The index is a cache of the files: after it is lost, a zip the registry
/// path stored still counts as verified, because the cached signed
/// SHA256SUMS lists it.
#[test]
fn a_lost_index_does_not_unverify_a_registry_download() {
    let world = world();
    assert_success(&world.init(&world.workdir("first", &PROVIDER)), "init");
    world.stop_server();
    std::fs::remove_dir_all(world.cache_dir().join("index")).unwrap();

    let server = world.serve();
    let version = get(&format!("{}/1.2.0.json", mirror_base(&server)));
    let hashes = version.json()["archives"]["linux_amd64"]["hashes"].clone();
    assert!(hashes[0].as_str().unwrap().starts_with("h1:"), "{hashes}");
    drop(server);
    let record = verification_record(&world, "linux", "amd64").expect("derived and kept");
    assert_eq!(record["by"], "registry-signature", "{record}");
}
