//! Many clients at once through one `tfmirror serve`: one upstream download
//! per artifact, however many ask for it, and a download that outlives the
//! client that started it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::Duration;

use crate::fixtures::git_repo::git_command;
use crate::fixtures::http::get;
use crate::fixtures::provider_zip::sha256_hex;
use crate::fixtures::{GitRepoSpec, ModuleSpec, ProviderSpec};
use crate::harness::{ServeProcess, World};
use sha2::{Digest, Sha256};

const BIG: (&str, &str, &str) = ("acme", "big", "1.0.0");

fn big_provider(extra_bytes: usize) -> Vec<ProviderSpec> {
    let (namespace, name, version) = BIG;
    vec![ProviderSpec::new(namespace, name, &[version])
        .with_platforms(&[("linux", "amd64")])
        .with_extra_bytes(extra_bytes)]
}

fn upstream_zip(world: &World) -> Vec<u8> {
    let (namespace, name, version) = BIG;
    world
        .registry
        .zip_bytes(namespace, name, version, "linux", "amd64")
}

fn zip_downloads(world: &World) -> usize {
    world
        .registry
        .count(|r| r.method == "GET" && r.path.ends_with(".zip"))
}

/// tfmirror's URL for the zip, as its download answer gives it to Terraform.
fn zip_url(server: &ServeProcess) -> String {
    let (namespace, name, version) = BIG;
    let answer = get(&format!(
        "{}/v1/providers/registry.terraform.io/{namespace}/{name}/{version}/download/linux/amd64",
        server.url
    ));
    assert_eq!(answer.status, 200, "{}", answer.text());
    answer.json()["download_url"].as_str().unwrap().to_owned()
}

/// Sends `GET url` and reads the status line and headers; the body is left
/// to read from the returned reader.
fn open(url: &str) -> (u16, BufReader<TcpStream>) {
    let rest = url.strip_prefix("http://").expect("an http:// URL");
    let (authority, path) = rest.split_at(rest.find('/').expect("a path"));
    let mut stream = TcpStream::connect(authority).expect("connect to tfmirror");
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    let status = line.split(' ').nth(1).and_then(|s| s.parse().ok());
    let status = status.unwrap_or_else(|| panic!("bad status line {line:?}"));
    while line != "\r\n" && !line.is_empty() {
        line.clear();
        reader.read_line(&mut line).unwrap();
    }
    (status, reader)
}

/// The status and the sha256 of the body, hashed as it arrives: 32 copies
/// of a 20 MB zip need not sit in memory.
fn get_sha256(url: &str) -> (u16, String) {
    let (status, mut reader) = open(url);
    let mut hasher = Sha256::new();
    let mut buf = vec![0; 64 * 1024];
    loop {
        match reader.read(&mut buf).expect("read the body") {
            0 => break,
            n => hasher.update(&buf[..n]),
        }
    }
    (status, hex::encode(hasher.finalize()))
}

/// Runs `request` on `clients` threads at once; their answers.
fn at_once<T: Send + 'static>(
    clients: usize,
    request: impl Fn() -> T + Send + Clone + 'static,
) -> Vec<T> {
    let threads: Vec<_> = (0..clients)
        .map(|_| thread::spawn(request.clone()))
        .collect();
    threads.into_iter().map(|t| t.join().unwrap()).collect()
}

#[test]
fn concurrent_requests_for_one_zip_share_one_download() {
    let world = World::new(big_provider(20 << 20));
    let expected = sha256_hex(&upstream_zip(&world));
    // About a second upstream, so every request arrives while it runs.
    world.registry.set_artifact_rate(Some(20 << 20));
    let server = world.serve();
    let url = zip_url(&server);

    for answer in at_once(32, move || get_sha256(&url)) {
        assert_eq!(answer, (200, expected.clone()));
    }
    assert_eq!(zip_downloads(&world), 1, "{:#?}", world.registry.requests());
}

#[test]
fn a_client_that_leaves_does_not_cancel_the_download() {
    let world = World::new(big_provider(4 << 20));
    let expected = upstream_zip(&world);
    world.registry.set_artifact_rate(Some(8 << 20));
    let server = world.serve();
    let url = zip_url(&server);

    let (status, mut reader) = open(&url);
    assert_eq!(status, 200);
    reader.read_exact(&mut [0; 1024]).unwrap();
    drop(reader);

    // Had the download stopped with its client, this request would start
    // another; it waits for the first one's instead and reads the result.
    assert_eq!(get_sha256(&url), (200, sha256_hex(&expected)));
    assert_eq!(zip_downloads(&world), 1, "{:#?}", world.registry.requests());
    let (namespace, name, version) = BIG;
    let stored = world.cache_dir().join(format!(
        "providers/registry.terraform.io/{namespace}/{name}/terraform-provider-{name}_{version}_linux_amd64.zip"
    ));
    assert_eq!(std::fs::read(&stored).unwrap(), expected);
}

#[test]
fn concurrent_requests_for_one_module_archive_share_one_download() {
    let (namespace, name, system, version) = ("acme", "net", "aws", "1.0.0");
    let world = World::with_modules(vec![ModuleSpec::new(namespace, name, system, &[version])]);
    let archive = world
        .registry
        .module_archive_bytes(namespace, name, system, version);
    // Half a second upstream, so every request arrives while it runs.
    world
        .registry
        .set_artifact_rate(Some(archive.len() as u64 * 2));
    let server = world.serve();
    let location = get(&format!(
        "{}/v1/modules/registry.terraform.io/{namespace}/{name}/{system}/{version}/download",
        server.url
    ));
    assert_eq!(location.status, 204, "{}", location.text());
    let url = location.header("X-Terraform-Get").unwrap().to_owned();

    for response in at_once(16, move || get(&url)) {
        assert_eq!(response.status, 200, "{}", response.text());
        assert!(response.body == archive, "the archive as upstream has it");
    }
    assert_eq!(
        world.registry.module_archive_requests(),
        1,
        "{:#?}",
        world.registry.requests()
    );
}

/// Modules of a mono-repo released together at a tag the mirror does not
/// have yet: their requests share one fetch instead of queueing one each.
#[test]
fn concurrent_requests_for_a_new_tag_share_one_git_fetch() {
    const REPO: &str = "org/infra.git";
    let mut modules = vec![
        ModuleSpec::new("acme", "vpc", "git", &["1.1.0"]).with_git_location(
            REPO,
            "modules/vpc",
            "v1.1.0",
        ),
    ];
    for i in 0..6 {
        modules.push(
            ModuleSpec::new("acme", &format!("m{i}"), "git", &["2.0.0"]).with_git_location(
                REPO,
                "modules/vpc",
                "v2.0.0",
            ),
        );
    }
    let world = World::with_git(modules, vec![GitRepoSpec::new(REPO)], "");
    let server = world.serve();
    let location = |name: &str, version: &str| {
        get(&format!(
            "{}/v1/modules/registry.terraform.io/acme/{name}/git/{version}/download",
            server.url
        ))
    };
    assert_eq!(location("vpc", "1.1.0").status, 204, "the mirror is made");

    push_release(&world, REPO, "v2.0.0");
    world.registry.clear_requests();
    let url = server.url.clone();
    let answers: Vec<_> = (0..6)
        .map(|i| {
            let url = url.clone();
            thread::spawn(move || {
                get(&format!(
                    "{url}/v1/modules/registry.terraform.io/acme/m{i}/git/2.0.0/download"
                ))
            })
        })
        .collect();
    for answer in answers {
        let answer = answer.join().unwrap();
        assert_eq!(answer.status, 204, "{}", answer.text());
    }
    assert_eq!(
        world.registry.git_pack_fetches(),
        1,
        "{:#?}",
        world.registry.requests()
    );
}

/// A new commit on `main` of the upstream `repo`, tagged `tag`: a fetch
/// must get a pack, so it shows in `git_pack_fetches`.
fn push_release(world: &World, repo: &str, tag: &str) {
    let upstream = world.registry.git_repo(repo);
    upstream.advance_branch("main", tag);
    upstream.add_tag(tag, "main");
}

/// Clients cloning a repository right after a push all get the new tag;
/// their ref checks of the upstream share one check and one fetch.
#[test]
fn concurrent_clones_after_a_push_share_one_git_fetch() {
    const REPO: &str = "org/infra.git";
    const CLONES: usize = 12;
    let world = World::with_git(
        Vec::new(),
        vec![GitRepoSpec::new(REPO)],
        "metadata_ttl = \"1h\"",
    );
    let server = world.serve();
    let url = format!(
        "{}/git/http/{}/git/{REPO}",
        server.url,
        world.registry.addr()
    );
    let home = tempfile::tempdir().unwrap();
    let clone = move |home: &std::path::Path, name: &str| {
        let output = git_command(home)
            .args(["clone", "--quiet", "--branch", "v2.0.0", &url])
            .arg(home.join(name))
            .output()
            .expect("run git");
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let first = clone(home.path(), "first");
    assert!(!first.0, "no v2.0.0 yet: {}", first.1);

    push_release(&world, REPO, "v2.0.0");
    world.registry.clear_requests();
    let shared_home = home.path().to_owned();
    let counter = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let answers = at_once(CLONES, move || {
        let n = counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        clone(&shared_home, &format!("clone{n}"))
    });
    for (ok, stderr) in answers {
        assert!(ok, "the new tag is cloned at once: {stderr}");
    }
    assert_eq!(
        world.registry.git_pack_fetches(),
        1,
        "{:#?}",
        world.registry.requests()
    );
    // One check and one fetch when every clone arrives during the first
    // check; a clone that comes later checks again. Without single flight
    // every clone checks, and the count exceeds the clones.
    assert!(
        world.registry.git_info_refs() <= CLONES / 2,
        "{:#?}",
        world.registry.requests()
    );
}
