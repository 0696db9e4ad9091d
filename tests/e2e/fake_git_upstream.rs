//! Smoke tests of the fake registry's git half (`/git/`, `git http-backend` as CGI), driven with
//! the real git CLI, so that a failing end-to-end git test points at the proxy and not at its
//! fixture.

use std::net::TcpStream;
use std::path::Path;
use std::process::Output;

use crate::fixtures::git_repo::{git_command, module_main_tf};
use crate::fixtures::http::{get, raw_request};
use crate::fixtures::{AnswerForm, FakeRegistry, GitRepoSpec, ModuleSpec};

const REPO: &str = "org/infra.git";

fn registry(modules: Vec<ModuleSpec>) -> FakeRegistry {
    FakeRegistry::start_all(Vec::new(), modules, vec![GitRepoSpec::new(REPO)])
}

/// `git -c protocol.version=<version> <args>` in `dir`, with a clean environment.
fn git(dir: &Path, version: u8, args: &[&str]) -> Output {
    let mut command = git_command(dir);
    command
        .current_dir(dir)
        .arg("-c")
        .arg(format!("protocol.version={version}"))
        .args(args);
    command.output().expect("run git")
}

fn git_ok(dir: &Path, version: u8, args: &[&str]) -> String {
    let output = git(dir, version, args);
    assert!(
        output.status.success(),
        "git {args:?} (protocol v{version}) failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// `ls-remote --symref`, as `(ref, id)` pairs; `HEAD`'s symref line as `("HEAD", "ref: ...")`.
fn ls_remote(dir: &Path, version: u8, url: &str) -> Vec<(String, String)> {
    git_ok(dir, version, &["ls-remote", "--symref", url])
        .lines()
        .map(|line| {
            let (id, name) = line.split_once('\t').expect("tab in ls-remote line");
            (name.to_string(), id.to_string())
        })
        .collect()
}

fn lookup<'a>(refs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    refs.iter()
        .find(|(n, id)| n == name && !id.starts_with("ref: "))
        .map(|(_, id)| id.as_str())
}

fn vpc_label(checkout: &Path) -> String {
    std::fs::read_to_string(checkout.join("modules/vpc/main.tf")).expect("modules/vpc/main.tf")
}

#[test]
fn clones_and_lists_refs_over_protocol_v0_and_v2() {
    let reg = registry(Vec::new());
    let repo = reg.git_repo(REPO);
    let url = reg.git_url(REPO);
    assert_eq!(url, format!("http://{}/git/{REPO}", reg.addr()));
    let tmp = tempfile::tempdir().unwrap();
    let (v1, v11) = (repo.commit_id("v1.0.0"), repo.commit_id("v1.1.0"));
    assert_eq!(repo.commit_id("main"), v11);
    assert_ne!(repo.ref_target("v1.0.0"), v1, "v1.0.0 is an annotated tag");
    assert_eq!(
        repo.ref_target("v1.1.0"),
        v11,
        "v1.1.0 is a lightweight tag"
    );

    for version in [0u8, 2] {
        reg.clear_requests();
        let refs = ls_remote(tmp.path(), version, &url);
        assert!(
            refs.contains(&("HEAD".into(), "ref: refs/heads/main".into())),
            "v{version}: {refs:?}"
        );
        assert_eq!(lookup(&refs, "HEAD"), Some(v11.as_str()), "v{version}");
        assert_eq!(lookup(&refs, "refs/heads/main"), Some(v11.as_str()));
        assert_eq!(lookup(&refs, "refs/tags/v1.1.0"), Some(v11.as_str()));
        assert_eq!(lookup(&refs, "refs/tags/v1.0.0^{}"), Some(v1.as_str()));
        assert_eq!(
            lookup(&refs, "refs/tags/v1.0.0"),
            Some(repo.ref_target("v1.0.0").as_str())
        );
        // v0 lists refs in the GET advertisement; v2 asks with an ls-refs POST.
        let ls_posts = reg.git_upload_pack_posts();
        assert_eq!(
            ls_posts,
            usize::from(version == 2),
            "v{version}: {:?}",
            reg.requests()
        );
        assert!(reg.git_bytes_sent() > 0);

        // A full clone: v0 negotiates and fetches in one POST, v2 adds its ls-refs POST.
        let full = tmp.path().join(format!("full-v{version}"));
        git_ok(
            tmp.path(),
            version,
            &["clone", "--quiet", &url, full.to_str().unwrap()],
        );
        assert_eq!(vpc_label(&full), module_main_tf("vpc", "v1.1.0"));
        assert_eq!(
            std::fs::read_to_string(full.join("modules/dns/main.tf")).unwrap(),
            module_main_tf("dns", "v1.1.0")
        );
        assert!(full.join("README.md").is_file());
        let head = git_ok(&full, version, &["rev-parse", "HEAD"]);
        assert_eq!(head.trim(), v11);
        let clone_posts = reg.git_upload_pack_posts() - ls_posts;
        assert_eq!(
            clone_posts,
            if version == 2 { 2 } else { 1 },
            "v{version}: {:?}",
            reg.requests()
        );

        // A shallow clone of a tag, as go-getter makes it (v0 needs an extra round for the
        // shallow list).
        let before = reg.git_bytes_sent();
        let shallow = tmp.path().join(format!("shallow-v{version}"));
        git_ok(
            tmp.path(),
            version,
            &[
                "clone",
                "--quiet",
                "--depth",
                "1",
                "--branch",
                "v1.0.0",
                &url,
                shallow.to_str().unwrap(),
            ],
        );
        assert_eq!(vpc_label(&shallow), module_main_tf("vpc", "v1.0.0"));
        assert_eq!(
            git_ok(&shallow, version, &["rev-list", "--count", "HEAD"]).trim(),
            "1"
        );
        assert!(reg.git_upload_pack_posts() > ls_posts + clone_posts);
        assert!(reg.git_bytes_sent() > before);

        let info_refs = reg.count(|r| {
            r.method == "GET" && r.path == format!("/git/{REPO}/info/refs?service=git-upload-pack")
        });
        assert_eq!(info_refs, 3, "one advertisement per command");
        assert_eq!(reg.git_requests(), info_refs + reg.git_upload_pack_posts());
    }

    // Fetching a commit by id, as a client with a sha `ref` does.
    let by_id = tmp.path().join("by-id");
    git_ok(tmp.path(), 2, &["init", "--quiet", by_id.to_str().unwrap()]);
    git_ok(&by_id, 2, &["fetch", "--quiet", "--depth", "1", &url, &v1]);
    git_ok(&by_id, 2, &["checkout", "--quiet", &v1]);
    assert_eq!(vpc_label(&by_id), module_main_tf("vpc", "v1.0.0"));
}

/// One pkt-line: 4 hex digits of length (including themselves), then the data.
fn pkt(data: &str) -> String {
    format!("{:04x}{data}", data.len() + 4)
}

/// What a client that is not the git CLI may send: a v2 `ls-refs` POST with a gzipped body,
/// the protocol version only in the `Git-Protocol` header.
#[test]
fn a_gzipped_protocol_v2_post_is_understood() {
    use std::io::Write;
    let reg = registry(Vec::new());
    let main = reg.git_repo(REPO).commit_id("main");
    let request = format!(
        "{}0001{}{}0000",
        pkt("command=ls-refs\n"),
        pkt("symrefs\n"),
        pkt("ref-prefix refs/heads/\n")
    );
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(request.as_bytes()).unwrap();
    let body = gz.finish().unwrap();

    let head = format!(
        "POST /git/{REPO}/git-upload-pack HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\
         Content-Type: application/x-git-upload-pack-request\r\n\
         Accept: application/x-git-upload-pack-result\r\nGit-Protocol: version=2\r\n\
         Content-Encoding: gzip\r\nContent-Length: {}\r\n\r\n",
        reg.addr(),
        body.len()
    );
    // raw_request takes text; the gzip bytes go on the same connection right after it.
    let mut stream = TcpStream::connect(reg.addr()).unwrap();
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(&body).unwrap();
    let response =
        crate::fixtures::http::read_response(&mut std::io::BufReader::new(stream), false);
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(
        response.header("content-type"),
        Some("application/x-git-upload-pack-result")
    );
    let text = response.text();
    assert!(
        text.contains(&format!("{main} refs/heads/main")),
        "{text:?}"
    );
    assert_eq!(reg.git_upload_pack_posts(), 1);
    assert_eq!(reg.git_bytes_sent(), response.body.len() as u64);

    // The v0 advertisement over a plain GET, with the CGI headers passed through.
    let answer = raw_request(
        reg.addr(),
        &format!(
            "GET /git/{REPO}/info/refs?service=git-upload-pack HTTP/1.1\r\nHost: x\r\n\
             Connection: close\r\n\r\n"
        ),
    );
    assert_eq!(answer.status, 200);
    assert_eq!(
        answer.header("content-type"),
        Some("application/x-git-upload-pack-advertisement")
    );
    assert!(
        answer.header("cache-control").is_some(),
        "{:?}",
        answer.headers
    );
    assert!(answer
        .text()
        .starts_with("001e# service=git-upload-pack\n0000"));
}

#[test]
fn the_repository_is_the_same_on_every_build() {
    let (a, b) = (registry(Vec::new()), registry(Vec::new()));
    for reference in ["v1.0.0", "v1.1.0", "main", "refs/tags/v1.0.0"] {
        assert_eq!(
            a.git_repo(REPO).ref_target(reference),
            b.git_repo(REPO).ref_target(reference),
            "{reference}"
        );
    }
    assert_eq!(
        a.git_repo(REPO).advance_branch("main", "x"),
        b.git_repo(REPO).advance_branch("main", "x")
    );
    assert_eq!(
        a.git_repo(REPO).show("v1.0.0", "modules/dns/main.tf") + "\n",
        module_main_tf("dns", "v1.0.0")
    );
}

#[test]
fn moved_refs_are_seen_by_a_fresh_ls_remote_and_clone() {
    let reg = registry(Vec::new());
    let repo = reg.git_repo(REPO);
    let url = reg.git_url(REPO);
    let tmp = tempfile::tempdir().unwrap();
    let (v1, v11) = (repo.commit_id("v1.0.0"), repo.commit_id("v1.1.0"));
    let old_clone = tmp.path().join("old");
    git_ok(
        tmp.path(),
        2,
        &["clone", "--quiet", &url, old_clone.to_str().unwrap()],
    );

    let main2 = repo.advance_branch("main", "main-2");
    assert_eq!(repo.commit_id("main"), main2);
    assert_eq!(repo.commit_id("main~1"), v11);
    let moved = repo.move_tag("v1.1.0", "v1.1.0-moved");
    let moved_annotated = repo.move_tag("v1.0.0", "v1.0.0-moved");
    assert_eq!(
        repo.commit_id("v1.1.0~1"),
        v11,
        "moved on top of the old tag"
    );
    assert_eq!(
        repo.commit_id("main"),
        main2,
        "moving a tag leaves main alone"
    );
    assert_eq!(repo.ref_target("v1.1.0"), moved, "still lightweight");
    assert_ne!(
        repo.ref_target("v1.0.0"),
        moved_annotated,
        "still annotated"
    );
    assert_ne!(moved_annotated, v1);
    let feature = repo.advance_branch("feature", "feature-1");
    assert_eq!(
        repo.commit_id("feature~1"),
        main2,
        "a new branch starts at main"
    );

    for version in [0u8, 2] {
        let refs = ls_remote(tmp.path(), version, &url);
        assert_eq!(
            lookup(&refs, "refs/heads/main"),
            Some(main2.as_str()),
            "v{version}"
        );
        assert_eq!(lookup(&refs, "refs/heads/feature"), Some(feature.as_str()));
        assert_eq!(lookup(&refs, "refs/tags/v1.1.0"), Some(moved.as_str()));
        assert_eq!(
            lookup(&refs, "refs/tags/v1.0.0^{}"),
            Some(moved_annotated.as_str())
        );
    }

    for (reference, label) in [
        ("main", "main-2"),
        ("v1.1.0", "v1.1.0-moved"),
        ("v1.0.0", "v1.0.0-moved"),
        ("feature", "feature-1"),
    ] {
        let dir = tmp.path().join(format!("fresh-{reference}"));
        git_ok(
            tmp.path(),
            2,
            &[
                "clone",
                "--quiet",
                "--depth",
                "1",
                "--branch",
                reference,
                &url,
                dir.to_str().unwrap(),
            ],
        );
        assert_eq!(vpc_label(&dir), module_main_tf("vpc", label), "{reference}");
    }

    // An existing clone sees the moves with a forced tag fetch.
    git_ok(
        &old_clone,
        2,
        &["fetch", "--quiet", "--force", "--tags", "origin"],
    );
    let fetched = git_ok(
        &old_clone,
        2,
        &["rev-parse", "origin/main", "v1.1.0^{commit}"],
    );
    assert_eq!(
        fetched.split_whitespace().collect::<Vec<_>>(),
        [main2.as_str(), moved.as_str()]
    );
}

#[test]
fn registry_modules_answer_git_locations() {
    let reg = registry(vec![
        ModuleSpec::new("acme", "vpc", "git", &["1.0.0"]).with_git_location(
            REPO,
            "modules/vpc",
            "v1.0.0",
        ),
        ModuleSpec::new("acme", "dns", "git", &["1.1.0"])
            .with_answer(AnswerForm::Json200)
            .with_git_location(REPO, "modules/dns", "v1.1.0"),
        ModuleSpec::new("acme", "whole", "git", &["2.0.0"]).with_git_location(REPO, "", ""),
        ModuleSpec::new("acme", "exact", "git", &["3.0.0"])
            .with_location("git::https://example.invalid/org/infra.git//modules/vpc?ref=v1.0.0"),
    ]);
    let download = |module: &str, version: &str| {
        get(&format!(
            "{}v1/modules/acme/{module}/git/{version}/download",
            reg.url()
        ))
    };
    let url = reg.git_url(REPO);

    let answer = download("vpc", "1.0.0");
    assert_eq!(answer.status, 204, "{}", answer.text());
    assert_eq!(
        answer.header("x-terraform-get"),
        Some(format!("git::{url}//modules/vpc?ref=v1.0.0").as_str())
    );
    let answer = download("dns", "1.1.0");
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(
        answer.json()["location"],
        format!("git::{url}//modules/dns?ref=v1.1.0")
    );
    let answer = download("whole", "2.0.0");
    assert_eq!(
        answer.header("x-terraform-get"),
        Some(format!("git::{url}").as_str())
    );
    let answer = download("exact", "3.0.0");
    assert_eq!(
        answer.header("x-terraform-get"),
        Some("git::https://example.invalid/org/infra.git//modules/vpc?ref=v1.0.0")
    );
    assert_eq!(
        download("vpc", "9.9.9").status,
        404,
        "unknown versions stay 404"
    );
    assert_eq!(reg.module_location_requests(), 5);
}

#[test]
fn unknown_repositories_faults_and_stop() {
    let reg = registry(Vec::new());
    let tmp = tempfile::tempdir().unwrap();
    let info_refs = |path: &str| {
        get(&format!(
            "http://{}{path}/info/refs?service=git-upload-pack",
            reg.addr()
        ))
    };
    assert_eq!(info_refs(&format!("/git/{REPO}")).status, 200);
    assert_eq!(info_refs("/git/org/missing.git").status, 404);
    assert_eq!(info_refs("/git/org/../org/infra.git").status, 404);
    assert_eq!(info_refs("/git/org/%2e%2e/org/infra.git").status, 404);
    let missing = git(
        tmp.path(),
        2,
        &["ls-remote", &reg.git_url("org/missing.git")],
    );
    assert!(!missing.status.success());

    reg.set_git_status(Some(503));
    let answer = info_refs(&format!("/git/{REPO}"));
    assert_eq!(answer.status, 503, "{}", answer.text());
    assert!(!git(tmp.path(), 2, &["ls-remote", &reg.git_url(REPO)])
        .status
        .success());
    reg.set_git_status(None);
    git_ok(tmp.path(), 2, &["ls-remote", &reg.git_url(REPO)]);

    // A registry without repositories answers 404 under /git/.
    let plain = FakeRegistry::start(Vec::new());
    let answer = get(&format!(
        "{}/info/refs?service=git-upload-pack",
        plain.git_url(REPO)
    ));
    assert_eq!(answer.status, 404);

    reg.stop();
    let served = reg.requests().len();
    if let Ok(stream) = TcpStream::connect(reg.addr()) {
        // Another test's fake upstream was given the same port (seen in
        // CI: a second LISTEN socket on it, whose owner this test cannot
        // control). What matters is that this one answers no more.
        let port = format!(":{:04X}", reg.addr().port());
        let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
        let sockets: Vec<&str> = table.lines().filter(|l| l.contains(&port)).collect();
        eprintln!(
            "a stopped upstream's port still accepts ({:?}); sockets on it:\n{}",
            stream.local_addr(),
            sockets.join("\n")
        );
    }
    // Refused, or answered by whoever was given the port since: not by
    // this upstream.
    let _ = git(tmp.path(), 2, &["ls-remote", &reg.git_url(REPO)]);
    assert_eq!(
        reg.requests().len(),
        served,
        "a stopped upstream answers nothing"
    );
}
