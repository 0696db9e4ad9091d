//! End to end: a mirror fetched many times is repacked in the background,
//! and clones through tfmirror stay correct before, during and after.

use std::path::Path;
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

/// Bounds every wait on the background repack.
const PATIENCE: Duration = Duration::from_secs(120);

fn world(extra_config: &str) -> World {
    World::with_git(Vec::new(), vec![GitRepoSpec::new(REPO)], extra_config)
}

/// The smart HTTP URL of the repository through the server.
fn proxied_url(world: &World, server: &ServeProcess) -> String {
    let upstream = world.registry.addr();
    format!("{}/git/http/{upstream}/git/{REPO}", server.url)
}

/// Whether a repack is writing its new pack right now: git's temporary
/// pack files exist only while pack-objects and repack run.
fn repack_writing(mirror: &Path) -> bool {
    pack_dir_names(mirror)
        .iter()
        .any(|n| n.starts_with("tmp_pack_") || n.starts_with(".tmp-"))
}

/// Blocks until no one holds the mirror's lock (the one every fetch and
/// repack of it holds), then lets go of it at once.
fn wait_for_mirror_lock(mirror: &Path) {
    let mut path = mirror.as_os_str().to_owned();
    path.push(".lock");
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .expect("open the mirror's lock file");
    file.lock().expect("lock the mirror");
}

/// `git clone` through the server into `into`; returns the checked-out commit.
fn clone(url: &str, into: &Path) -> String {
    let home = into.with_extension("home");
    std::fs::create_dir_all(&home).unwrap();
    let output = git_command(&home)
        .args(["-c", "http.lowSpeedLimit=1", "-c", "http.lowSpeedTime=60"])
        .args(["clone", "-q", url])
        .arg(into)
        .output()
        .expect("run git clone");
    assert_success(&output, &format!("git clone {url}"));
    rev_parse(into, "HEAD")
}

fn rev_parse(dir: &Path, rev: &str) -> String {
    let output = git_command(dir)
        .arg("-C")
        .arg(dir)
        .args(["rev-parse", rev])
        .output()
        .expect("run git rev-parse");
    assert_success(&output, "git rev-parse");
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

/// 20 fetches, each of one more upstream commit: the mirror never keeps
/// more than [`MAX_PACKS`] packs for long, each repack leaves one or two,
/// and every clone (git's and Terraform's) has the upstream's contents.
#[test]
fn twenty_fetches_are_repacked_and_clones_stay_correct() {
    let _turn = crate::file_turn(module_path!());
    let world = world("metadata_ttl = \"0s\"\nstale_while_revalidate = \"0s\"");
    let upstream = world.registry.git_repo(REPO);
    let server = world.serve();
    let url = proxied_url(&world, &server);
    let clones = tempfile::tempdir().unwrap();
    clone(&url, &clones.path().join("first"));
    let mirror = mirror_dir(&world);
    assert_eq!(packs(&mirror), 1, "a new mirror has one pack");

    let mut repacks = 0;
    for round in 0..20 {
        let before = packs(&mirror);
        let label = format!("round-{round}");
        let commit = upstream.advance_branch("main", &label);
        let into = clones.path().join(&label);
        assert_eq!(
            clone(&url, &into),
            commit,
            "{label}: the clone has the new commit"
        );
        assert_eq!(
            std::fs::read_to_string(into.join("modules/vpc/main.tf")).unwrap(),
            module_main_tf("vpc", &label),
            "{label}"
        );
        if before == MAX_PACKS {
            let took = wait_for(PATIENCE, "the repack", || packs(&mirror) <= 2);
            // The count drops while repack deletes the old packs one by
            // one; it has ended only once it lets go of the mirror's lock.
            wait_for_mirror_lock(&mirror);
            eprintln!(
                "{label}: repack of {} packs seen done after {took:?}",
                MAX_PACKS + 1
            );
            repacks += 1;
        } else {
            assert_eq!(packs(&mirror), before + 1, "{label}: one pack per fetch");
        }
    }
    assert!(repacks >= 2, "20 fetches make at least two repacks");

    // Terraform's own clone of the branch, after the repacks.
    let repo = world.registry.git_url(REPO);
    let dir = world.workdir_with(
        "after",
        &format!("module \"vpc\" {{\n  source = \"git::{repo}//modules/vpc?ref=main\"\n}}\n"),
    );
    assert_success(&world.init(&dir), "init after the repacks");
    assert_eq!(
        installed_ids(&dir),
        [("vpc".to_owned(), "vpc round-19".to_owned())]
    );
    let fsck = git_command(&mirror)
        .arg("-C")
        .arg(&mirror)
        .args(["fsck", "--no-progress"])
        .output()
        .unwrap();
    assert_success(&fsck, "git fsck of the repacked mirror");
}

/// Clones through the server while a repack of the mirror runs all
/// succeed. Four threads clone back to back from before the fetch that
/// starts the repack until after it is done, so the repack runs under
/// clones whatever its speed: no timing window to hit.
#[test]
fn clones_during_a_repack_succeed() {
    let _turn = crate::file_turn(module_path!());
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    // Refreshes run in the background, so a clone never waits for a fetch
    // (which would wait for the repack holding the mirror's lock).
    let world = world("metadata_ttl = \"0s\"\nstale_while_revalidate = \"1h\"");
    let upstream = world.registry.git_repo(REPO);
    let server = world.serve();
    let url = proxied_url(&world, &server);
    let scratch = tempfile::tempdir().unwrap();
    clone(&url, &scratch.path().join("first"));
    let mirror = mirror_dir(&world);
    let pusher = Pusher::new(upstream.bare_path(), &scratch.path().join("pusher"));
    // One pack short of a repack, each fetch adding one.
    for round in 0..MAX_PACKS - 1 {
        let before = packs(&mirror);
        pusher.push_random_file(&format!("blob-{round}.bin"), 2 << 20);
        let refs = get(&format!("{url}/info/refs?service=git-upload-pack"));
        assert_eq!(refs.status, 200, "{}", refs.text());
        wait_for(PATIENCE, "the background fetch", || {
            packs(&mirror) == before + 1
        });
    }
    let tips = [upstream.commit_id("main"), {
        pusher.push_random_file("last.bin", 2 << 20);
        upstream.commit_id("main")
    }];

    // From here the mirror is fetched (a ninth pack) and repacked (one or
    // two left): both happen within this window, which the clones fill.
    let window_start = Instant::now();
    let done = Arc::new(AtomicBool::new(false));
    let cloners: Vec<_> = (0..4)
        .map(|n| {
            let (url, root, done) = (url.clone(), scratch.path().to_owned(), done.clone());
            std::thread::spawn(move || {
                let mut clones = Vec::new();
                for round in 0.. {
                    if done.load(Ordering::SeqCst) {
                        break;
                    }
                    let into = root.join(format!("during-{n}-{round}"));
                    let started = Instant::now();
                    let head = clone(&url, &into);
                    clones.push((started, head));
                    std::fs::remove_dir_all(&into).unwrap();
                }
                clones
            })
        })
        .collect();
    let refs = get(&format!("{url}/info/refs?service=git-upload-pack"));
    assert_eq!(refs.status, 200, "{}", refs.text());
    wait_for(PATIENCE, "the repack", || {
        packs(&mirror) <= 2 && !repack_writing(&mirror)
    });
    let window = window_start.elapsed();
    let window_end = Instant::now();
    done.store(true, Ordering::SeqCst);

    let clones: Vec<_> = cloners
        .into_iter()
        .flat_map(|t| t.join().expect("every clone succeeds"))
        .collect();
    for (_, head) in &clones {
        assert!(tips.contains(head), "{head} is one of the tips {tips:?}");
    }
    let during = clones
        .iter()
        .filter(|(started, _)| *started < window_end)
        .count();
    eprintln!(
        "{} clones, {during} begun within the {window:?} of the fetch and repack",
        clones.len()
    );
    assert!(during >= 4, "every thread cloned within the window");
    let after = scratch.path().join("after");
    assert_eq!(clone(&url, &after), tips[1]);
    assert!(after.join("last.bin").is_file());
}
