//! End to end: git module sources, direct and through the registry, served
//! from one local mirror of a mono-repo.

use std::time::{Duration, Instant};

use crate::fixtures::git_repo::git_command;
use crate::fixtures::http::{get, raw_request};
use crate::fixtures::{FakeRegistry, GitRepoSpec, ModuleSpec};
use crate::harness::{assert_failure, assert_success, installed_ids, ServeProcess, World};

const REPO: &str = "org/infra.git";

fn registry_modules() -> Vec<ModuleSpec> {
    vec![
        ModuleSpec::new("acme", "vpc", "git", &["1.1.0"]).with_git_location(
            REPO,
            "modules/vpc",
            "v1.1.0",
        ),
        ModuleSpec::new("acme", "dns", "git", &["1.0.0"]).with_git_location(
            REPO,
            "modules/dns",
            "v1.0.0",
        ),
        ModuleSpec::new("acme", "oldvpc", "git", &["1.0.0"]).with_git_location(
            REPO,
            "modules/vpc",
            "v1.0.0",
        ),
    ]
}

fn world(extra_config: &str) -> World {
    World::with_git(
        registry_modules(),
        vec![GitRepoSpec::new(REPO)],
        extra_config,
    )
}

/// Six calls into the mono-repo: three direct `git::` sources at two refs,
/// three registry modules that resolve to `git::`.
fn six_calls(world: &World) -> String {
    let repo = world.registry.git_url(REPO);
    let mut text = String::new();
    for (name, subdir, reference) in [
        ("d_vpc_old", "vpc", "v1.0.0"),
        ("d_dns_old", "dns", "v1.0.0"),
        ("d_vpc_new", "vpc", "v1.1.0"),
    ] {
        text.push_str(&format!("module \"{name}\" {{\n  source = \"git::{repo}//modules/{subdir}?ref={reference}\"\n}}\n"));
    }
    for (name, module, version) in [
        ("r_vpc", "vpc", "1.1.0"),
        ("r_dns", "dns", "1.0.0"),
        ("r_oldvpc", "oldvpc", "1.0.0"),
    ] {
        text.push_str(&format!("module \"{name}\" {{\n  source  = \"acme/{module}/git\"\n  version = \"{version}\"\n}}\n"));
    }
    text
}

fn expected_six() -> Vec<(String, String)> {
    let mut ids: Vec<(String, String)> = [
        ("d_dns_old", "dns v1.0.0"),
        ("d_vpc_new", "vpc v1.1.0"),
        ("d_vpc_old", "vpc v1.0.0"),
        ("r_dns", "dns v1.0.0"),
        ("r_oldvpc", "vpc v1.0.0"),
        ("r_vpc", "vpc v1.1.0"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    ids.sort();
    ids
}

#[test]
fn one_mirror_serves_every_call_and_ref() {
    let world = world("");
    let cold = world.workdir_with("cold", &six_calls(&world));
    let started = Instant::now();
    assert_success(&world.init(&cold), "cold init");
    let cold_time = started.elapsed();
    assert_eq!(installed_ids(&cold), expected_six());
    assert_eq!(
        world.registry.git_pack_fetches(),
        1,
        "one clone of the repository: {:?}",
        world.registry.requests()
    );
    let cold_bytes = world.registry.git_bytes_sent();

    world.registry.clear_requests();
    let warm = world.workdir_with("warm", &six_calls(&world));
    let started = Instant::now();
    assert_success(&world.init(&warm), "warm init");
    let warm_time = started.elapsed();
    assert_eq!(installed_ids(&warm), expected_six());
    assert_eq!(
        world.registry.git_pack_fetches(),
        0,
        "ref checks only: {:?}",
        world.registry.requests()
    );
    assert!(
        world.registry.git_info_refs() <= 6,
        "one ref check per call at most: {:?}",
        world.registry.requests()
    );
    eprintln!("git mono-repo, 6 calls: cold {cold_time:?}, warm {warm_time:?}, upstream git bytes cold {cold_bytes}");

    world.registry.stop();
    let offline = world.workdir_with("offline", &six_calls(&world));
    assert_success(&world.init(&offline), "offline init");
    assert_eq!(installed_ids(&offline), expected_six());
}

/// `module` blocks, each `(name, source)`.
fn modules_tf(calls: &[(&str, String)]) -> String {
    calls
        .iter()
        .map(|(name, source)| format!("module \"{name}\" {{\n  source = \"{source}\"\n}}\n"))
        .collect()
}

fn sorted_ids(dir: &std::path::Path) -> Vec<(String, String)> {
    let mut ids = installed_ids(dir);
    ids.sort();
    ids
}

fn ids(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

/// A tag pushed and a branch moved upstream are seen by the very next init,
/// through smart HTTP and through a registry module that resolves to
/// `git::`, however young the mirror: every clone and resolution checks
/// the upstream's refs first. The TTL is an hour, so it cannot be what
/// makes the mirror fetch.
#[test]
fn pushed_tags_and_moved_branches_are_seen_at_once() {
    let mut modules = registry_modules();
    modules.push(
        ModuleSpec::new("acme", "tip", "git", &["1.0.0"]).with_git_location(
            REPO,
            "modules/vpc",
            "main",
        ),
    );
    modules.push(
        ModuleSpec::new("acme", "next", "git", &["3.0.0"]).with_git_location(
            REPO,
            "modules/vpc",
            "v3.0.0",
        ),
    );
    let world = World::with_git(
        modules,
        vec![GitRepoSpec::new(REPO)],
        "metadata_ttl = \"1h\"",
    );
    let repo = world.registry.git_url(REPO);
    let direct = |reference: &str| format!("git::{repo}//modules/vpc?ref={reference}");
    let first = world.workdir_with("first", &modules_tf(&[("main", direct("main"))]));
    assert_success(&world.init(&first), "first init");
    assert_eq!(sorted_ids(&first), ids(&[("main", "vpc v1.1.0")]));

    let upstream = world.registry.git_repo(REPO);
    upstream.advance_branch("main", "v2.0.0");
    upstream.add_tag("v2.0.0", "main");
    upstream.advance_branch("main", "main-3");
    let smart = world.workdir_with(
        "smart",
        &modules_tf(&[("main", direct("main")), ("tag", direct("v2.0.0"))]),
    );
    assert_success(&world.init(&smart), "init after a push, smart HTTP");
    assert_eq!(
        sorted_ids(&smart),
        ids(&[("main", "vpc main-3"), ("tag", "vpc v2.0.0")])
    );

    upstream.advance_branch("main", "v3.0.0");
    upstream.add_tag("v3.0.0", "main");
    let new_tag = world.workdir_with("new-tag", &registry_tf("reg", "next", "3.0.0"));
    assert_success(&world.init(&new_tag), "init after a push, registry git::");
    assert_eq!(sorted_ids(&new_tag), ids(&[("reg", "vpc v3.0.0")]));

    upstream.advance_branch("main", "main-4");
    let moved = world.workdir_with("moved", &registry_tf("tip", "tip", "1.0.0"));
    assert_success(&world.init(&moved), "init after a move, registry git::");
    assert_eq!(sorted_ids(&moved), ids(&[("tip", "vpc main-4")]));
}

/// A `module` block for `acme/<module>/git` at `version`.
fn registry_tf(name: &str, module: &str, version: &str) -> String {
    format!(
        "module \"{name}\" {{\n  source  = \"acme/{module}/git\"\n  version = \"{version}\"\n}}\n"
    )
}

/// An upstream slower than the ref check's budget, or down, while the
/// mirror misses its latest push: init succeeds from the mirror as it is,
/// paying the budget per clone, not the upstream's delay.
#[test]
fn a_slow_or_down_upstream_serves_the_mirror_as_it_is() {
    let world = world("metadata_ttl = \"1h\"");
    let repo = world.registry.git_url(REPO);
    let calls = modules_tf(&[("main", format!("git::{repo}//modules/vpc?ref=main"))]);
    assert_success(&world.init(&world.workdir_with("first", &calls)), "first");
    world
        .registry
        .git_repo(REPO)
        .advance_branch("main", "main-2");

    const DELAY: Duration = Duration::from_secs(20);
    world.registry.set_request_latency(Some(DELAY));
    let slow = world.workdir_with("slow", &calls);
    let started = Instant::now();
    assert_success(&world.init(&slow), "init with a slow upstream");
    let took = started.elapsed();
    assert_eq!(sorted_ids(&slow), ids(&[("main", "vpc v1.1.0")]));
    assert!(took < DELAY / 2, "bounded by the check's budget: {took:?}");
    eprintln!("init with a slow upstream took {took:?}");

    world.registry.stop();
    let down = world.workdir_with("down", &calls);
    let started = Instant::now();
    assert_success(&world.init(&down), "init with the upstream down");
    assert_eq!(sorted_ids(&down), ids(&[("main", "vpc v1.1.0")]));
    eprintln!("init with the upstream down took {:?}", started.elapsed());
}

#[test]
fn missing_refs_and_path_tricks_are_refused() {
    let world = World::with_git(
        vec![
            ModuleSpec::new("acme", "ghost", "git", &["1.0.0"]).with_git_location(
                REPO,
                "modules/vpc",
                "v9.9.9",
            ),
        ],
        vec![GitRepoSpec::new(REPO)],
        "",
    );
    let dir = world.workdir_with(
        "ghost",
        "module \"g\" {\n  source  = \"acme/ghost/git\"\n  version = \"1.0.0\"\n}\n",
    );
    let text = assert_failure(&world.init(&dir), "init with a missing ref");
    assert!(
        text.contains("v9.9.9") && text.contains("org/infra"),
        "names the ref and the repository:\n{text}"
    );
    assert!(
        text.contains("the upstream's refs were checked just now"),
        "says the upstream does not have it either:\n{text}"
    );

    let server = world.serve();
    for path in [
        "/git/http/127.0.0.1:1/../../etc/info/refs?service=git-upload-pack",
        "/git/http/127.0.0.1:1/%2Fetc/passwd/info/refs?service=git-upload-pack",
        "/git-archive/https/github.com/org/..%2F..%2Fx.git/0123456789abcdef0123456789abcdef01234567.tar.gz",
        "/git-archive/https/github.com/%2Fetc.git/0123456789abcdef0123456789abcdef01234567.tar.gz",
    ] {
        let request = format!(
            "GET /{}{path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            server.secret,
            server.addr()
        );
        let response = raw_request(server.addr(), &request);
        assert_eq!(response.status, 400, "{path}: {}", response.text());
    }
}

#[test]
fn an_archive_is_the_same_bytes_every_time_it_is_built() {
    let world = world("");
    let server = world.serve();
    let location = get(&format!(
        "{}/v1/modules/registry.terraform.io/acme/vpc/git/1.1.0/download",
        server.url
    ));
    assert_eq!(location.status, 204, "{}", location.text());
    let source = location.header("X-Terraform-Get").unwrap().to_owned();
    let archive_url = source.split("//modules/").next().unwrap().to_owned();
    assert!(
        archive_url.contains("/git-archive/") && archive_url.ends_with(".tar.gz"),
        "{source}"
    );
    let first = get(&archive_url);
    assert_eq!(first.status, 200);
    let stored: Vec<_> = world
        .cache_files()
        .into_iter()
        .filter(|f| f.starts_with("git-archives/"))
        .collect();
    assert_eq!(stored.len(), 1, "{:?}", world.cache_files());
    std::fs::remove_file(world.cache_dir().join(&stored[0])).unwrap();
    let second = get(&archive_url);
    assert_eq!(second.status, 200);
    assert_eq!(
        crate::fixtures::provider_zip::sha256_hex(&first.body),
        crate::fixtures::provider_zip::sha256_hex(&second.body)
    );
}

/// The one place this file turns a path into a URL of the server.
fn server_url(server: &ServeProcess, path: &str) -> String {
    format!("{}{path}", server.url)
}

/// The harness mirrors `http://127.0.0.1:PORT/git/`. A client that names
/// another upstream, a sibling path, or the same repository with a user or
/// another port in its URL is refused on every git route, and no upstream
/// hears of it: the server clones only what `[git] mirror` names.
#[test]
fn a_repository_outside_the_mirror_prefixes_is_never_cloned() {
    let world = world("");
    let other = FakeRegistry::start_all(Vec::new(), Vec::new(), vec![GitRepoSpec::new(REPO)]);
    let commit = other.git_repo(REPO).commit_id("main");
    let server = world.serve();
    let (ours, theirs) = (world.registry.addr(), other.addr());
    let outside = [
        format!("http/{theirs}/git/{REPO}"),
        format!("http/{}/gitx/{REPO}", ours),
        format!("http/{}/git-evil/{REPO}", ours),
        format!("http/user@{ours}/git/{REPO}"),
        format!("http/{}:{}/git/{REPO}", ours.ip(), ours.port() ^ 1),
        format!("https/{ours}/git/{REPO}"),
        format!("ssh/git@{}/git/{REPO}", ours.ip()),
    ];
    for repo in &outside {
        for path in [
            format!("/git/{repo}/info/refs?service=git-upload-pack"),
            format!("/git-archive/{repo}/{commit}.tar.gz"),
        ] {
            let response = get(&server_url(&server, &path));
            assert_eq!(response.status, 403, "{path}: {}", response.text());
            assert!(
                response.text().contains("[git] mirror"),
                "{path}: the refusal names the key to change: {}",
                response.text()
            );
        }
    }

    // Real git, as a `git::` source outside the prefixes would reach it.
    let home = tempfile::tempdir().unwrap();
    let url = server_url(&server, &format!("/git/{}", outside[0]));
    let output = git_command(home.path())
        .args(["-c", "http.lowSpeedLimit=1", "-c", "http.lowSpeedTime=30"])
        .args(["ls-remote", &url])
        .output()
        .expect("run git");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success() && stderr.contains("403"),
        "git ls-remote {url} should be refused with 403:\n{stderr}"
    );

    assert_eq!(other.requests().len(), 0, "{:?}", other.requests());
    assert_eq!(
        world.registry.requests().len(),
        0,
        "{:?}",
        world.registry.requests()
    );
    let cloned: Vec<_> = world
        .cache_files()
        .into_iter()
        .filter(|f| f.starts_with("git"))
        .collect();
    assert!(cloned.is_empty(), "nothing mirrored: {cloned:?}");

    // The same routes serve the mirrored prefix: the refusals above are
    // about the repository, not the URLs this test builds.
    let mirrored = format!("http/{ours}/git/{REPO}");
    let refs = get(&server_url(
        &server,
        &format!("/git/{mirrored}/info/refs?service=git-upload-pack"),
    ));
    assert_eq!(refs.status, 200, "{}", refs.text());
    let ours_commit = world.registry.git_repo(REPO).commit_id("main");
    let archive = get(&server_url(
        &server,
        &format!("/git-archive/{mirrored}/{ours_commit}.tar.gz"),
    ));
    assert_eq!(archive.status, 200, "{}", archive.text());
}

/// Registry modules that resolve to `git::` are served as archives of the
/// mirror, never cloned from it by git: their resolutions and archives
/// still count as uses, so gc sees the mirror and the archives in use.
#[test]
fn registry_git_modules_count_uses_of_the_mirror_and_its_archives() {
    let world = world("");
    let calls: String = six_calls(&world)
        .split_inclusive("}\n")
        .filter(|block| block.contains("acme/"))
        .collect();
    for name in ["first", "second"] {
        assert_success(&world.init(&world.workdir_with(name, &calls)), name);
    }
    let output = world
        .tfmirror(&["cache", "list", "--json", "--kind", "git"])
        .output()
        .unwrap();
    assert_success(&output, "cache list");
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&output.stdout).unwrap();
    let uses = |prefix: &str| -> Vec<u64> {
        rows.iter()
            .filter(|row| row["path"].as_str().unwrap().starts_with(prefix))
            .map(|row| row["uses"].as_u64().unwrap())
            .collect()
    };
    let mirror = uses("git/");
    assert_eq!(mirror.len(), 1, "{rows:#?}");
    assert!(mirror[0] >= 2, "resolved by both inits: {rows:#?}");
    let archives = uses("git-archives/");
    assert_eq!(archives.len(), 2, "one per commit: {rows:#?}");
    assert!(archives.iter().all(|&n| n >= 2), "{rows:#?}");
}
