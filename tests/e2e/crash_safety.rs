//! What is left on disk when things go wrong while storing: a full disk,
//! and a server killed with SIGKILL in the middle of a download. Either
//! way nothing half-written is ever served, and the cache keeps working.

use std::io::Write;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::fixtures::http::get;
use crate::fixtures::provider_zip::sha256_hex;
use crate::fixtures::{ModuleSpec, ProviderSpec};
use crate::harness::{assert_failure, assert_success, World};

const SMALL: (&str, &str, &str) = ("acme", "small", "1.0.0");
const BIG: (&str, &str, &str) = ("acme", "big", "1.0.0");

fn provider(spec: (&str, &str, &str), extra_bytes: usize) -> ProviderSpec {
    let (namespace, name, version) = spec;
    ProviderSpec::new(namespace, name, &[version])
        .with_platforms(&[("linux", "amd64")])
        .with_extra_bytes(extra_bytes)
}

/// Where tfmirror stores a provider's linux_amd64 zip, relative to the cache.
fn zip_rel((namespace, name, version): (&str, &str, &str)) -> String {
    format!(
        "providers/registry.terraform.io/{namespace}/{name}/terraform-provider-{name}_{version}_linux_amd64.zip"
    )
}

fn upstream_zip(world: &World, (namespace, name, version): (&str, &str, &str)) -> Vec<u8> {
    world
        .registry
        .zip_bytes(namespace, name, version, "linux", "amd64")
}

fn temp_files(world: &World) -> Vec<String> {
    world
        .cache_files()
        .into_iter()
        .filter(|f| f.contains("/.tmp-") || f.starts_with(".tmp-"))
        .collect()
}

fn wait_for(what: &str, limit: Duration, done: impl Fn() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < limit, "gave up waiting for {what}");
        thread::sleep(Duration::from_millis(20));
    }
}

/// A size-limited tmpfs, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    /// `None` when this process may not mount (not root).
    fn mount(dir: &Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(dir).unwrap();
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success());
        mounted.then(|| Tmpfs(dir.to_owned()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let unmounted = Command::new("umount").arg(&self.0).status();
        if !unmounted.is_ok_and(|status| status.success()) {
            // Still busy: detach it now, the kernel frees it when unused.
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
}

/// The module `acme/huge/aws`, whose archive is the big provider's zip: a
/// valid zip, and more than the disk can hold.
fn huge_module() -> ModuleSpec {
    let (namespace, name, version) = BIG;
    let file = format!("terraform-provider-{name}_{version}_linux_amd64.zip");
    ModuleSpec::new("acme", "huge", "aws", &["1.0.0"])
        .with_location(format!("/files/{namespace}/{name}/{version}/{file}"))
}

#[test]
fn a_full_disk_costs_the_cache_not_the_installs() {
    let world = World::start(
        vec![provider(SMALL, 0), provider(BIG, 12 << 20)],
        vec![huge_module()],
        "",
    );
    let Some(_tmpfs) = Tmpfs::mount(&world.cache_dir(), "8m") else {
        eprintln!("skipped: cannot mount tmpfs (needs root)");
        return;
    };
    let server = world.serve();
    let small = [SMALL];
    assert_success(
        &world.init(&world.workdir("small", &small)),
        "init with a provider that fits",
    );

    // Relayed whole and checked, though it cannot be stored.
    assert_success(
        &world.init(&world.workdir("big", &[BIG])),
        "init with a provider bigger than the free space",
    );
    let cached = world.cache_files();
    assert!(!cached.contains(&zip_rel(BIG)), "{cached:?}");
    assert_eq!(temp_files(&world), Vec::<String>::new());

    let module = "module \"huge\" {\n  source  = \"acme/huge/aws\"\n  version = \"1.0.0\"\n}\n";
    let output = world.init(&world.workdir_with("module", module));
    let text = assert_failure(&output, "init with a module bigger than the free space");
    assert!(
        text.contains("Could not download module \"huge\"") && text.contains("507"),
        "{text}"
    );
    assert_eq!(temp_files(&world), Vec::<String>::new());
    let location = get(&format!(
        "{}/v1/modules/registry.terraform.io/acme/huge/aws/1.0.0/download",
        server.url
    ));
    let archive = get(location.header("X-Terraform-Get").unwrap());
    assert_eq!(archive.status, 507, "{}", archive.text());
    assert!(
        archive.text().contains("the cache disk is full")
            && archive
                .text()
                .contains(&world.cache_dir().display().to_string()),
        "{}",
        archive.text()
    );
    assert_eq!(temp_files(&world), Vec::<String>::new());

    // What was cached before is still served, without the upstream.
    world.registry.clear_requests();
    assert_success(
        &world.init(&world.workdir("small-again", &small)),
        "init from the cache after the disk filled up",
    );
    assert_eq!(world.registry.artifact_requests(), 0);
    drop(server);
}

#[test]
fn a_killed_download_leaves_nothing_and_is_fetched_again() {
    let world = World::new(vec![provider(BIG, 4 << 20)]);
    let expected = sha256_hex(&upstream_zip(&world, BIG));
    // About four seconds upstream, so the server dies half-way.
    world.registry.set_artifact_rate(Some(1 << 20));
    let mut server = world.serve();
    let (namespace, name, version) = BIG;
    let answer = get(&format!(
        "{}/v1/providers/registry.terraform.io/{namespace}/{name}/{version}/download/linux/amd64",
        server.url
    ));
    let url = answer.json()["download_url"].as_str().unwrap().to_owned();
    // Sent, and never read: what the client sees is not the point here.
    let mut client = TcpStream::connect(server.addr()).unwrap();
    let path = url.strip_prefix(&server.address).unwrap();
    let host = server.addr();
    write!(client, "GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n").unwrap();

    let partial = || {
        temp_files(&world)
            .iter()
            .any(|f| std::fs::metadata(world.cache_dir().join(f)).is_ok_and(|m| m.len() > 0))
    };
    wait_for(
        "a partly written download",
        Duration::from_secs(10),
        partial,
    );
    server.child.kill().unwrap(); // SIGKILL
    server.child.wait().unwrap();
    drop(client);
    assert!(!world.cache_files().contains(&zip_rel(BIG)));
    assert!(!temp_files(&world).is_empty(), "kill -9 left its temp file");

    world.registry.set_artifact_rate(None);
    let _server = world.serve();
    assert_eq!(temp_files(&world), Vec::<String>::new(), "swept on start");
    assert_success(
        &world.init(&world.workdir("after-kill", &[BIG])),
        "init after the kill",
    );
    let stored = std::fs::read(world.cache_dir().join(zip_rel(BIG))).unwrap();
    assert_eq!(sha256_hex(&stored), expected);
}
