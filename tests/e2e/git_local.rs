//! End to end: `exec` of `get` and `init` clones the repositories that the
//! module calls name by local path, from snapshots of their mirrors, after
//! checking the upstream's refs; everything else still goes through smart
//! HTTP.

use std::path::{Path, PathBuf};
use std::process::Output;

use crate::fixtures::git_repo::git_command;
use crate::fixtures::http::get;
use crate::fixtures::GitRepoSpec;
use crate::harness::{assert_failure, assert_success, installed_ids, ServeProcess, World};

const INFRA: &str = "org/infra.git";
const OTHER: &str = "org/other.git";

fn world() -> World {
    World::with_git(
        vec![],
        vec![GitRepoSpec::new(INFRA), GitRepoSpec::new(OTHER)],
        "metadata_ttl = \"1h\"",
    )
}

/// `module` blocks, each `(name, source)`.
fn modules_tf(calls: &[(&str, String)]) -> String {
    calls
        .iter()
        .map(|(name, source)| format!("module \"{name}\" {{\n  source = \"{source}\"\n}}\n"))
        .collect()
}

/// Five calls over two refs of the mono-repo and one into a second
/// repository, all spelt with `.git`.
fn five_calls(world: &World) -> Vec<(&'static str, String)> {
    let infra = world.registry.git_url(INFRA);
    let other = world.registry.git_url(OTHER);
    vec![
        ("vpc_old", format!("git::{infra}//modules/vpc?ref=v1.0.0")),
        ("dns_old", format!("git::{infra}//modules/dns?ref=v1.0.0")),
        ("vpc_new", format!("git::{infra}//modules/vpc?ref=v1.1.0")),
        ("dns_new", format!("git::{infra}//modules/dns?ref=v1.1.0")),
        ("other", format!("git::{other}//modules/vpc?ref=v1.1.0")),
    ]
}

/// `tfmirror exec -- terraform get [args]` in `dir`.
fn get_modules(world: &World, dir: &Path, args: &[&str]) -> Output {
    let terraform = crate::harness::terraform();
    world
        .tfmirror(&[
            "exec",
            "--",
            terraform.to_str().unwrap(),
            "get",
            "-no-color",
        ])
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run tfmirror exec")
}

/// Requests tfmirror's smart-HTTP route has answered since it started.
fn smart_http_requests(server: &ServeProcess) -> u64 {
    let metrics = get(&format!("{}/_tfmirror/metrics", server.url)).text();
    metrics
        .lines()
        .filter(|line| {
            line.starts_with("tfmirror_requests_total{") && line.contains("route=\"git\"")
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// Every file of `subdir` at `reference` in the upstream repository, with
/// its contents, as `git archive` would give them.
fn upstream_files(bare: &Path, reference: &str, subdir: &str) -> Vec<(String, String)> {
    let listed = git_command(bare)
        .arg("-C")
        .arg(bare)
        .args(["ls-tree", "-r", "--name-only", reference, subdir])
        .output()
        .unwrap();
    assert_success(&listed, "git ls-tree");
    String::from_utf8(listed.stdout)
        .unwrap()
        .lines()
        .map(|path| {
            let shown = git_command(bare)
                .arg("-C")
                .arg(bare)
                .args(["show", &format!("{reference}:{path}")])
                .output()
                .unwrap();
            assert_success(&shown, "git show");
            let relative = path.strip_prefix(subdir).unwrap().trim_start_matches('/');
            (
                relative.to_owned(),
                String::from_utf8(shown.stdout).unwrap(),
            )
        })
        .collect()
}

/// Every file below `dir`, `.git` left out, with its contents.
fn installed_files(dir: &Path) -> Vec<(String, String)> {
    let mut files = Vec::new();
    let mut dirs = vec![dir.to_owned()];
    while let Some(current) = dirs.pop() {
        for entry in std::fs::read_dir(&current).unwrap() {
            let entry = entry.unwrap();
            let path = entry.path();
            if entry.file_name() == ".git" {
                continue;
            }
            if entry.file_type().unwrap().is_dir() {
                dirs.push(path);
            } else {
                let relative = path
                    .strip_prefix(dir)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                files.push((relative, std::fs::read_to_string(&path).unwrap()));
            }
        }
    }
    files.sort();
    files
}

/// The directory Terraform installed call `key` into.
fn module_dir(workdir: &Path, key: &str) -> PathBuf {
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(workdir.join(".terraform/modules/modules.json")).unwrap(),
    )
    .unwrap();
    let module = manifest["Modules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["Key"] == key)
        .unwrap_or_else(|| panic!("{key} is installed: {manifest}"));
    workdir.join(module["Dir"].as_str().unwrap())
}

fn run_snapshots(world: &World) -> Vec<String> {
    std::fs::read_dir(world.cache_dir().join("git-snapshots"))
        .map(|entries| {
            entries
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Issue test 1: a warm `get` in a fresh directory clones every known
/// repository by path: the upstream sees only ref checks, tfmirror's smart
/// HTTP nothing, and every module directory is the upstream's subdirectory
/// at its ref.
#[test]
fn a_warm_get_in_a_fresh_directory_clones_by_path() {
    let world = world();
    let server = world.serve();
    let calls = five_calls(&world);
    let cold = world.workdir_with("cold", &modules_tf(&calls));
    assert_success(&get_modules(&world, &cold, &[]), "cold get");
    assert_eq!(
        world.registry.git_pack_fetches(),
        2,
        "one clone of each repository, by the server: {:?}",
        world.registry.requests()
    );
    assert_eq!(
        smart_http_requests(&server),
        0,
        "even a cold run clones by path once the mirrors exist"
    );

    world.registry.clear_requests();
    let warm = world.workdir_with("warm", &modules_tf(&calls));
    assert_success(&get_modules(&world, &warm, &[]), "warm get");
    assert_eq!(smart_http_requests(&server), 0, "no clone over smart HTTP");
    assert_eq!(world.registry.git_pack_fetches(), 0, "nothing fetched");
    assert_eq!(
        world.registry.git_info_refs(),
        2,
        "one ref check per repository: {:?}",
        world.registry.requests()
    );
    for (key, repo, reference, subdir) in [
        ("vpc_old", INFRA, "v1.0.0", "modules/vpc"),
        ("dns_old", INFRA, "v1.0.0", "modules/dns"),
        ("vpc_new", INFRA, "v1.1.0", "modules/vpc"),
        ("dns_new", INFRA, "v1.1.0", "modules/dns"),
        ("other", OTHER, "v1.1.0", "modules/vpc"),
    ] {
        let bare = world.registry.git_repo(repo).bare_path();
        let mut expected = upstream_files(bare, reference, subdir);
        expected.sort();
        assert_eq!(installed_files(&module_dir(&warm, key)), expected, "{key}");
    }
    assert!(
        run_snapshots(&world).is_empty(),
        "each run's snapshots go when it ends: {:?}",
        run_snapshots(&world)
    );
    let listed = world
        .tfmirror(&["cache", "list", "--json", "--kind", "git"])
        .output()
        .unwrap();
    assert_success(&listed, "cache list");
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&listed.stdout).unwrap();
    let mirrors: Vec<_> = rows
        .iter()
        .filter(|row| row["path"].as_str().unwrap().starts_with("git/"))
        .collect();
    assert_eq!(mirrors.len(), 2, "the snapshots are not listed: {rows:#?}");
    assert!(
        mirrors.iter().all(|row| row["uses"].as_u64() >= Some(2)),
        "each run's clones by path count as uses: {rows:#?}"
    );
}

/// A URL without `.git` could be the start of another repository's
/// (`.../vpc` and `.../vpc-endpoints`), so it is cloned by path only once
/// the directory's last run has listed every source it uses.
#[test]
fn a_url_without_git_is_cloned_by_path_once_the_last_run_listed_every_source() {
    let world = world();
    let server = world.serve();
    let bare = world.registry.git_url(INFRA);
    let bare = bare.strip_suffix(".git").unwrap();
    let tf = modules_tf(&[("vpc", format!("git::{bare}//modules/vpc?ref=v1.1.0"))]);
    let dir = world.workdir_with("bare", &tf);
    assert_success(&get_modules(&world, &dir, &[]), "first get");
    let first = smart_http_requests(&server);
    assert!(first > 0, "a fresh directory clones over smart HTTP");
    assert_success(&get_modules(&world, &dir, &["-update"]), "second get");
    assert_eq!(
        smart_http_requests(&server),
        first,
        "the second run clones by path"
    );
    assert_eq!(installed_ids(&dir), [("vpc".into(), "vpc v1.1.0".into())]);
}

/// Issue test 2, through the local path: a tag pushed and a branch moved a
/// moment ago are what the very next init clones, the mirror being an hour
/// from stale.
#[test]
fn a_pushed_tag_and_a_moved_branch_are_cloned_by_path_at_once() {
    let world = world();
    let server = world.serve();
    let infra = world.registry.git_url(INFRA);
    let call = |reference: &str| format!("git::{infra}//modules/vpc?ref={reference}");
    let first = world.workdir_with("first", &modules_tf(&[("main", call("main"))]));
    assert_success(&world.init(&first), "first init");
    assert_eq!(
        installed_ids(&first),
        [("main".into(), "vpc v1.1.0".into())]
    );

    let upstream = world.registry.git_repo(INFRA);
    upstream.advance_branch("main", "v2.0.0");
    upstream.add_tag("v2.0.0", "main");
    upstream.advance_branch("main", "main-3");
    let next = world.workdir_with(
        "next",
        &modules_tf(&[("main", call("main")), ("tag", call("v2.0.0"))]),
    );
    let before = smart_http_requests(&server);
    assert_success(&world.init(&next), "init after the push");
    let mut ids = installed_ids(&next);
    ids.sort();
    assert_eq!(
        ids,
        [
            ("main".into(), "vpc main-3".into()),
            ("tag".into(), "vpc v2.0.0".into())
        ]
    );
    assert_eq!(smart_http_requests(&server), before, "cloned by path");
}

/// A ref the upstream does not have fails the init, as it would without
/// tfmirror, and `exec` says which ref, which repository, and that the
/// upstream was asked just now.
#[test]
fn a_missing_ref_is_named() {
    let world = world();
    world.serve();
    let infra = world.registry.git_url(INFRA);
    let ok = world.workdir_with(
        "ok",
        &modules_tf(&[("vpc", format!("git::{infra}//modules/vpc?ref=v1.1.0"))]),
    );
    assert_success(&world.init(&ok), "init that makes the mirror");
    let tf = modules_tf(&[
        ("vpc", format!("git::{infra}//modules/vpc?ref=v1.1.0")),
        ("gone", format!("git::{infra}//modules/vpc?ref=v9.9.9")),
    ]);
    let dir = world.workdir_with("missing", &tf);
    let stderr = assert_failure(&world.init(&dir), "init with a missing ref");
    let line = format!(
        "tfmirror: {infra} has no branch, tag or commit \"v9.9.9\": its refs were checked \
         against the upstream just now"
    );
    assert!(stderr.contains(&line), "{stderr}");
}

/// Issue test 3, through the local path: with the upstream down, the run
/// clones from the mirror as it is.
#[test]
fn with_the_upstream_down_the_mirror_is_cloned_by_path() {
    let world = world();
    let server = world.serve();
    let calls = five_calls(&world);
    let first = world.workdir_with("first", &modules_tf(&calls));
    assert_success(&world.init(&first), "init that makes the mirrors");
    world.registry.stop();
    let before = smart_http_requests(&server);
    let offline = world.workdir_with("offline", &modules_tf(&calls));
    assert_success(&world.init(&offline), "init with the upstream down");
    assert_eq!(installed_ids(&offline), installed_ids(&first));
    assert_eq!(smart_http_requests(&server), before, "cloned by path");
}
