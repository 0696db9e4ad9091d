//! `tfmirror bundle create / list / verify` against a root with providers
//! for two platforms, an HTTP-archive module, registry `git::` modules and
//! a direct `git::` source (the shared tier's mixed world).

use std::collections::BTreeSet;
use std::io::Read;
use std::path::Path;
use std::process::Output;

use crate::harness::main_tf as main_tf_of;
use crate::harness::{assert_failure, assert_success, terraform, tfmirror, World};
use crate::shared_tier::{team_main_tf, team_root_world, PROVIDERS};

/// Every tfmirror command here gets this long (coreutils' `timeout`).
const TIME_LIMIT_SECS: &str = "300";
/// Fixed, so two bundles of the same closure are the same bytes.
const EPOCH: &str = "1700000000";

pub(crate) fn bounded(world: &World, args: &[&str]) -> std::process::Command {
    let mut command = world.command("timeout");
    command.arg(TIME_LIMIT_SECS).arg(tfmirror()).args(args);
    command
}

/// `bundle create -o bundle OPTIONS -- terraform init` in `dir`.
pub(crate) fn create(world: &World, dir: &Path, bundle: &Path, options: &[&str]) -> Output {
    let terraform = terraform();
    let mut args = vec!["bundle", "create", "-o", bundle.to_str().unwrap()];
    args.extend_from_slice(options);
    args.extend_from_slice(&[
        "--",
        terraform.to_str().unwrap(),
        "init",
        "-input=false",
        "-no-color",
    ]);
    bounded(world, &args)
        .current_dir(dir)
        .env("SOURCE_DATE_EPOCH", EPOCH)
        .output()
        .unwrap()
}

fn verify(world: &World, bundle: &Path) -> Output {
    bounded(world, &["bundle", "verify", bundle.to_str().unwrap()])
        .output()
        .unwrap()
}

/// Each entry's path in the bundle `bytes` with the position of its
/// middle byte in the decompressed tar.
pub(crate) fn middle_bytes(bytes: &[u8]) -> Vec<(String, u64)> {
    let tar = zstd::decode_all(bytes).unwrap();
    let mut positions = Vec::new();
    for entry in tar::Archive::new(&tar[..]).entries().unwrap() {
        let entry = entry.unwrap();
        let path = String::from_utf8(entry.path_bytes().into_owned()).unwrap();
        if path != "manifest.json" && entry.size() > 0 {
            positions.push((path, entry.raw_file_position() + entry.size() / 2));
        }
    }
    positions
}

/// The bundle `bytes` with the tar's byte at `position` altered, at `dest`.
pub(crate) fn write_flipped(bytes: &[u8], position: u64, dest: &Path) {
    let mut tar = zstd::decode_all(bytes).unwrap();
    tar[position as usize] ^= 0x20;
    std::fs::write(dest, zstd::encode_all(&tar[..], 3).unwrap()).unwrap();
}

#[test]
fn a_bundle_holds_the_closure_verifies_and_is_reproducible() {
    let world = team_root_world(&[("linux", "amd64"), ("darwin", "arm64")], "");
    let main_tf = team_main_tf(&world);
    let first = world.root.path().join("first.tfbundle");
    let dir = world.workdir_with("root", &main_tf);
    let darwin = ["--platform", "darwin_arm64"];
    let started = std::time::Instant::now();
    assert_success(&create(&world, &dir, &first, &darwin), "bundle create");
    let took = started.elapsed();

    let listed = bounded(
        &world,
        &["bundle", "list", "--json", first.to_str().unwrap()],
    )
    .output()
    .unwrap();
    assert_success(&listed, "bundle list --json");
    let manifest: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    let entries = manifest["entries"].as_array().unwrap();
    let kinds: BTreeSet<&str> = entries
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    for kind in [
        "provider-package",
        "provider-checksums",
        "provider-signature",
        "download-answer",
        "version-list",
        "module-location",
        "module-archive",
        "git-bundle",
    ] {
        assert!(kinds.contains(kind), "no {kind} in {kinds:?}");
    }
    let zips: Vec<&str> = entries
        .iter()
        .filter(|e| e["kind"] == "provider-package")
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(zips.len(), 4, "two providers for two platforms: {zips:?}");
    assert!(
        zips.iter().any(|name| name.ends_with("darwin_arm64")),
        "{zips:?}"
    );
    assert_eq!(manifest["created"], "2023-11-14T22:13:20Z");
    let content: u64 = entries.iter().map(|e| e["size"].as_u64().unwrap()).sum();
    eprintln!(
        "bundle of {} entries: {} bytes for {content} bytes of content; create (with a cold init) {:.2}s",
        entries.len(),
        std::fs::metadata(&first).unwrap().len(),
        took.as_secs_f64()
    );

    let table = bounded(&world, &["bundle", "list", first.to_str().unwrap()])
        .output()
        .unwrap();
    assert_success(&table, "bundle list");
    assert!(String::from_utf8_lossy(&table.stdout).contains("provider-package"));

    assert_success(&verify(&world, &first), "bundle verify");

    // One flipped byte in any entry's content is found and named.
    let bytes = std::fs::read(&first).unwrap();
    let positions = middle_bytes(&bytes);
    assert_eq!(positions.len(), entries.len());
    let altered = world.root.path().join("altered.tfbundle");
    for (path, position) in &positions {
        write_flipped(&bytes, *position, &altered);
        let output = verify(&world, &altered);
        let message = assert_failure(&output, "verify of an altered bundle");
        assert!(
            message.contains(path.as_str()),
            "{message:?} does not name {path}"
        );
    }

    // The same closure, from a fresh copy of the root, is the same file.
    let second = world.root.path().join("second.tfbundle");
    let again = world.workdir_with("again", &main_tf);
    assert_success(
        &create(&world, &again, &second, &darwin),
        "the second bundle create",
    );
    let mut second_bytes = Vec::new();
    std::fs::File::open(&second)
        .unwrap()
        .read_to_end(&mut second_bytes)
        .unwrap();
    if bytes != second_bytes {
        let entries_of = |bundle: &[u8]| -> Vec<(String, String)> {
            let tar = zstd::decode_all(bundle).unwrap();
            let mut archive = tar::Archive::new(&tar[..]);
            let mut first = archive.entries().unwrap().next().unwrap().unwrap();
            let mut json = Vec::new();
            first.read_to_end(&mut json).unwrap();
            let manifest: serde_json::Value = serde_json::from_slice(&json).unwrap();
            let entries = manifest["entries"].as_array().unwrap().iter();
            entries
                .map(|e| (e["path"].to_string(), e["sha256"].to_string()))
                .collect()
        };
        let (one, two) = (entries_of(&bytes), entries_of(&second_bytes));
        let differ: Vec<_> = one.iter().filter(|e| !two.contains(e)).collect();
        let only_second: Vec<_> = two.iter().filter(|e| !one.contains(e)).collect();
        panic!("the two bundles differ: {differ:#?} against {only_second:#?}");
    }

    // A root with the providers only, for this machine only, then the whole
    // root appended with the second platform: the union is the first bundle.
    let appended = world.root.path().join("appended.tfbundle");
    let providers_only = world.workdir_with("providers", &main_tf_of(&PROVIDERS));
    assert_success(
        &create(&world, &providers_only, &appended, &[]),
        "bundle create of the providers",
    );
    let smaller = std::fs::read(&appended).unwrap();
    assert!(
        smaller.len() < bytes.len(),
        "the providers alone make a smaller bundle"
    );
    let whole = world.workdir_with("whole", &main_tf);
    let mut append = darwin.to_vec();
    append.push("--append");
    assert_success(
        &create(&world, &whole, &appended, &append),
        "bundle create --append",
    );
    assert!(
        std::fs::read(&appended).unwrap() == bytes,
        "the appended bundle differs"
    );
    world.stop_server();
}
