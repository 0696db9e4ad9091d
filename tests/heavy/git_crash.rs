//! End to end: `tfmirror serve` killed with SIGKILL while a git mirror is
//! being created, and while one is being repacked. The next start leaves
//! nothing of either behind (no staging directory, no lock file, no
//! temporary pack, no git process still at work in the mirror), and a real
//! `terraform init` of a `git::` module through the restarted server gets
//! the right files.

use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use crate::fixtures::git_repo::{git_command, module_main_tf};
use crate::fixtures::http::get;
use crate::fixtures::GitRepoSpec;
use crate::harness::{assert_success, installed_ids, ServeProcess, World};
use crate::mirror_files::{mirror_dir, pack_dir_names, packs, wait_for};
use crate::pusher::Pusher;

const REPO: &str = "org/infra.git";

/// tfmirror's threshold (`git::repack::MAX_PACKS`): a mirror with more
/// packs than this is repacked after a fetch.
const MAX_PACKS: usize = 8;

/// Bounds every wait in these tests.
const PATIENCE: Duration = Duration::from_secs(60);

/// Every fetch is done on the request path: a request after a push sees it.
const ALWAYS_FETCH: &str = "metadata_ttl = \"0s\"\nstale_while_revalidate = \"0s\"";

fn world() -> World {
    World::with_git(Vec::new(), vec![GitRepoSpec::new(REPO)], ALWAYS_FETCH)
}

/// The smart HTTP URL of the repository through the server.
fn proxied_url(world: &World, server: &ServeProcess) -> String {
    let upstream = world.registry.addr();
    format!("{}/git/http/{upstream}/git/{REPO}", server.url)
}

/// `GET info/refs` through the server: with [`ALWAYS_FETCH`], the mirror is
/// created or fetched before the answer.
fn advertise(url: &str) {
    let refs = get(&format!("{url}/info/refs?service=git-upload-pack"));
    assert_eq!(refs.status, 200, "{}", refs.text());
}

/// SIGKILL, as `kill -9` does, and reaps it.
fn kill9(server: &mut ServeProcess) {
    server.child.kill().expect("SIGKILL the server");
    server.child.wait().expect("reap the server");
}

/// Waits for a child that is about to end (a client of a dead server),
/// killing it past [`PATIENCE`].
fn reap(mut child: Child, what: &str) {
    let started = Instant::now();
    while child.try_wait().expect("poll the child").is_none() {
        if started.elapsed() > PATIENCE {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} still ran {PATIENCE:?} after the server died");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Every path below `<cache>/git`, relative to it, directories included.
fn git_tree(world: &World) -> Vec<(String, bool)> {
    let top = world.cache_dir().join("git");
    let mut found = Vec::new();
    let mut dirs = vec![top.clone()];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
            let rel = path.strip_prefix(&top).unwrap().to_string_lossy();
            found.push((rel.into_owned(), is_dir));
            if is_dir {
                dirs.push(path);
            }
        }
    }
    found.sort();
    found
}

fn file_name(rel: &str) -> &str {
    rel.rsplit('/').next().unwrap_or(rel)
}

/// Staging directories of new mirrors (`.<repo>.git.<random>.tmp`).
fn staging_dirs(world: &World) -> Vec<PathBuf> {
    git_tree(world)
        .into_iter()
        .filter(|(rel, is_dir)| {
            let name = file_name(rel);
            *is_dir && name.starts_with('.') && name.contains(".git.") && name.ends_with(".tmp")
        })
        .map(|(rel, _)| world.cache_dir().join("git").join(rel))
        .collect()
}

/// Lock files of mirrors (`<repo>.git.lock`).
fn lock_files(world: &World) -> Vec<String> {
    git_tree(world)
        .into_iter()
        .filter(|(rel, is_dir)| !*is_dir && rel.ends_with(".git.lock"))
        .map(|(rel, _)| rel)
        .collect()
}

/// The names of the mirror's packs, sorted.
fn pack_names(mirror: &Path) -> Vec<String> {
    let mut names: Vec<_> = pack_dir_names(mirror)
        .into_iter()
        .filter(|n| n.starts_with("pack-") && n.ends_with(".pack"))
        .collect();
    names.sort();
    names
}

/// git's temporary pack files in the mirror: they exist only while
/// pack-objects and repack run, or after one was killed.
fn temp_packs(mirror: &Path) -> Vec<String> {
    pack_dir_names(mirror)
        .into_iter()
        .filter(|n| {
            ["tmp_pack_", "tmp_idx_", ".tmp-"]
                .iter()
                .any(|p| n.starts_with(p))
        })
        .collect()
}

/// Whether someone holds the mirror's lock (every fetch and repack of it
/// does); never blocks.
fn mirror_locked(mirror: &Path) -> bool {
    let mut path = mirror.as_os_str().to_owned();
    path.push(".lock");
    let Ok(file) = std::fs::OpenOptions::new().write(true).open(&path) else {
        return false;
    };
    file.try_lock().is_err()
}

/// The processes working in `dir` (their current directory), as
/// `(pid, command line)`: a `git repack` run by tfmirror, and the
/// `git pack-objects` it runs, work in the mirror.
fn processes_in(dir: &Path) -> Vec<(u32, String)> {
    let dir = dir.canonicalize().expect("canonical path");
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if std::fs::read_link(entry.path().join("cwd")).is_ok_and(|cwd| cwd == dir) {
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            found.push((pid, cmdline.trim().to_owned()));
        }
    }
    found
}

/// `tfmirror cache list --json`: what the cache counts as artifacts.
fn cache_list(world: &World) -> Vec<serde_json::Value> {
    let output = world
        .tfmirror(&["cache", "list", "--json"])
        .output()
        .expect("run tfmirror cache list");
    assert_success(&output, "tfmirror cache list --json");
    let list: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    list.as_array().expect("a JSON array").clone()
}

/// Nothing a killed fetch or repack leaves is counted as an artifact:
/// every row is a whole mirror.
fn assert_only_mirrors_listed(world: &World) -> Vec<serde_json::Value> {
    let rows = cache_list(world);
    for row in &rows {
        let path = row["path"].as_str().unwrap_or_default();
        assert_eq!(row["kind"], "git", "only mirrors are listed: {row}");
        assert!(
            path.ends_with(".git") && !file_name(path).starts_with('.'),
            "a whole mirror, not a leftover: {row}"
        );
    }
    rows
}

fn git_in(dir: &Path, args: &[&str]) -> String {
    let output = git_command(dir)
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .expect("run git");
    assert_success(&output, &format!("git {args:?} in {}", dir.display()));
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

/// `terraform init` through the server of `modules/vpc` at `main`; checks
/// the module's own file and a pushed file of the repository beside it.
fn init_and_check(world: &World, name: &str, file: &str, bytes: &[u8]) {
    let repo = world.registry.git_url(REPO);
    let dir = world.workdir_with(
        name,
        &format!("module \"vpc\" {{\n  source = \"git::{repo}//modules/vpc?ref=main\"\n}}\n"),
    );
    assert_success(&world.init(&dir), &format!("init {name}"));
    assert_eq!(
        installed_ids(&dir),
        [("vpc".to_owned(), "vpc v1.1.0".to_owned())],
        "{name}"
    );
    let root = dir.join(".terraform/modules/vpc");
    assert_eq!(
        std::fs::read_to_string(root.join("modules/vpc/main.tf")).unwrap(),
        module_main_tf("vpc", "v1.1.0")
    );
    assert!(
        std::fs::read(root.join(file)).unwrap() == bytes,
        "{name}: {file} has the pushed bytes"
    );
}

#[test]
fn a_mirror_killed_while_being_created_leaves_nothing_and_is_made_again() {
    let _turn = crate::file_turn(module_path!());
    let world = world();
    let upstream = world.registry.git_repo(REPO);
    let scratch = tempfile::tempdir().unwrap();
    let pusher = Pusher::new(upstream.bare_path(), &scratch.path().join("pusher"));
    let big = pusher.push_random_file("big.bin", 4 << 20);
    // About four seconds for the pack: the server dies part-way.
    world.registry.set_bandwidth(Some(1 << 20));
    let mut server = world.serve();
    let url = proxied_url(&world, &server);
    let home = scratch.path().join("client-home");
    std::fs::create_dir_all(&home).unwrap();
    let client = git_command(&home)
        .args(["clone", "-q", &url])
        .arg(scratch.path().join("clone"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start git clone");

    // The staging directory is there and the upstream is sending the pack,
    // paced over about four seconds: one second in, the clone is half-way.
    let took = wait_for(
        PATIENCE,
        "the pack's request, with a staging directory",
        || {
            !staging_dirs(&world).is_empty()
                && world
                    .registry
                    .requests()
                    .iter()
                    .any(|r| r.method == "POST" && r.path.ends_with("/git-upload-pack"))
        },
    );
    std::thread::sleep(Duration::from_secs(1));
    let staging = staging_dirs(&world);
    kill9(&mut server);
    eprintln!(
        "killed {:?} into the clone, staging: {staging:?}",
        took + Duration::from_secs(1)
    );
    reap(client, "the git clone through the killed server");
    assert!(
        !staging.is_empty() && staging.iter().all(|dir| dir.is_dir()),
        "kill -9 left the staging directory"
    );
    assert!(!lock_files(&world).is_empty(), "kill -9 left the lock file");
    assert!(
        world
            .cache_files()
            .iter()
            .all(|f| !f.ends_with("tfmirror-fetched")),
        "no mirror was made"
    );
    assert_only_mirrors_listed(&world);

    world.registry.set_bandwidth(None);
    let server = world.serve();
    assert_eq!(
        staging_dirs(&world),
        Vec::<PathBuf>::new(),
        "swept on start"
    );
    assert_eq!(lock_files(&world), Vec::<String>::new(), "swept on start");
    assert_eq!(
        assert_only_mirrors_listed(&world),
        Vec::<serde_json::Value>::new()
    );

    init_and_check(&world, "after-kill", "big.bin", &big);
    let mirror = mirror_dir(&world);
    git_in(&mirror, &["fsck", "--no-progress"]);
    assert_eq!(
        git_in(&mirror, &["rev-parse", "refs/heads/main"]),
        upstream.commit_id("main")
    );
    assert_eq!(staging_dirs(&world), Vec::<PathBuf>::new());
    assert_eq!(assert_only_mirrors_listed(&world).len(), 1);
    drop(server);
}

#[test]
fn a_mirror_killed_while_being_repacked_serves_and_repacks_again() {
    let _turn = crate::file_turn(module_path!());
    let world = world();
    let upstream = world.registry.git_repo(REPO);
    let scratch = tempfile::tempdir().unwrap();
    let pusher = Pusher::new(upstream.bare_path(), &scratch.path().join("pusher"));
    let mut server = world.serve();
    let url = proxied_url(&world, &server);
    advertise(&url);
    let mirror = mirror_dir(&world);
    assert_eq!(packs(&mirror), 1, "a new mirror has one pack");

    // Each fetch adds a pack; the eighth makes nine, and a repack of some
    // 24 MB of incompressible blobs starts in the background.
    let mut last = Vec::new();
    for round in 0..MAX_PACKS {
        let before = packs(&mirror);
        last = pusher.push_random_file(&format!("blob-{round}.bin"), 3 << 20);
        advertise(&url);
        if round + 1 < MAX_PACKS {
            assert_eq!(
                packs(&mirror),
                before + 1,
                "round {round}: one pack per fetch"
            );
        }
    }
    let last_file = format!("blob-{}.bin", MAX_PACKS - 1);
    let took = wait_for(PATIENCE, "the repack to write its pack", || {
        let writing = !temp_packs(&mirror).is_empty();
        assert!(
            writing || packs(&mirror) > 2,
            "the repack ended before it was seen at work"
        );
        writing
    });
    let old_packs = pack_names(&mirror);
    let working = processes_in(&mirror);
    kill9(&mut server);
    eprintln!("killed {took:?} after the fetch; at work in the mirror: {working:?}");
    assert!(
        working.iter().any(|(_, cmd)| cmd.contains(" repack ")),
        "git repack was running: {working:?}"
    );

    // Whatever the server ran must die with it: a repack left running
    // holds no lock, and would move its pack in and delete the old ones
    // under the next server's sweep, fetches and repacks. The
    // pack-objects it ran may finish its temporary pack, which git never
    // reads, and then ends on its own.
    let finished = wait_for(PATIENCE, "every git process in the mirror to end", || {
        processes_in(&mirror).is_empty()
    });
    eprintln!("the last git process in the mirror ended {finished:?} after the kill");
    assert_eq!(
        pack_names(&mirror),
        old_packs,
        "git repack outlived the server killed under it and replaced the packs"
    );
    assert!(
        !temp_packs(&mirror).is_empty(),
        "kill -9 left the repack's temporary files"
    );
    let killed_packs = packs(&mirror);
    assert_eq!(killed_packs, MAX_PACKS + 1);

    let server = world.serve();
    assert_eq!(temp_packs(&mirror), Vec::<String>::new(), "swept on start");
    assert_eq!(lock_files(&world), Vec::<String>::new(), "swept on start");
    assert_eq!(packs(&mirror), killed_packs);
    git_in(&mirror, &["fsck", "--no-progress"]);
    assert_eq!(assert_only_mirrors_listed(&world).len(), 1);

    // The killed repack's nine packs serve the init.
    init_and_check(&world, "after-kill", &last_file, &last);

    // The next fetch adds a tenth pack, and a repack of them all follows.
    let newest = pusher.push_random_file("after.bin", 1 << 10);
    advertise(&proxied_url(&world, &server));
    assert_eq!(
        git_in(&mirror, &["rev-parse", "refs/heads/main"]),
        upstream.commit_id("main")
    );
    let took = wait_for(PATIENCE, "the repack after the restart", || {
        packs(&mirror) <= 2 && temp_packs(&mirror).is_empty() && !mirror_locked(&mirror)
    });
    eprintln!("repacked {took:?} after the fetch that followed the restart");
    git_in(&mirror, &["fsck", "--no-progress"]);
    init_and_check(&world, "after-repack", "after.bin", &newest);
    assert_eq!(temp_packs(&mirror), Vec::<String>::new());
    assert_eq!(lock_files(&world).len(), 1, "the lock file of the mirror");
    assert_eq!(assert_only_mirrors_listed(&world).len(), 1);
    drop(server);
}
