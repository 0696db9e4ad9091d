//! End to end: `tfmirror cache list` and `cache stats` against the files a
//! few real inits left in the cache.

use std::path::Path;

use crate::fixtures::{GitRepoSpec, ModuleSpec, ProviderSpec};
use crate::harness::{assert_success, World};

const REPO: &str = "org/infra.git";

fn filled_world() -> World {
    let world = World::start_all(
        vec![ProviderSpec::new("hashicorp", "alpha", &["1.0.0"]).with_extra_bytes(50_000)],
        vec![ModuleSpec::new("acme", "net", "aws", &["1.0.0"])],
        vec![GitRepoSpec::new(REPO)],
        "",
    );
    let main_tf = crate::harness::mixed_main_tf(&world, &[("hashicorp", "alpha", "1.0.0")], REPO);
    for name in ["first", "second"] {
        assert_success(&world.init(&world.workdir_with(name, &main_tf)), name);
    }
    world
}

const ALPHA: [(&str, &str, &str); 1] = [("hashicorp", "alpha", "1.0.0")];

/// One provider, installed once through tfmirror, so it is cached.
fn alpha_cached() -> World {
    let world = World::new(vec![ProviderSpec::new("hashicorp", "alpha", &["1.0.0"])]);
    assert_success(&world.init(&world.workdir("first", &ALPHA)), "first init");
    world
}

fn json(world: &World, args: &[&str]) -> serde_json::Value {
    let output = world.tfmirror(args).output().unwrap();
    assert_success(&output, &args.join(" "));
    serde_json::from_slice(&output.stdout).unwrap()
}

/// Bytes of the files below `dir`, counted without tfmirror.
fn du(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| {
            let metadata = entry.metadata().unwrap();
            if metadata.is_dir() {
                du(&entry.path())
            } else {
                metadata.len()
            }
        })
        .sum()
}

#[test]
fn list_and_stats_agree_with_the_files() {
    let world = filled_world();
    let cache = world.cache_dir();
    let list = json(&world, &["cache", "list", "--json"]);
    let rows = list.as_array().unwrap();
    for row in rows {
        let path = cache.join(row["path"].as_str().unwrap());
        assert_eq!(row["size"].as_u64().unwrap(), du_or_len(&path), "{row}");
    }
    let kinds: Vec<&str> = rows.iter().map(|r| r["kind"].as_str().unwrap()).collect();
    for kind in ["providers", "modules", "git"] {
        assert!(kinds.contains(&kind), "{kind} in {kinds:?}");
    }
    let zip = rows
        .iter()
        .find(|r| r["name"] == "registry.terraform.io/hashicorp/alpha 1.0.0 linux_amd64")
        .expect("the provider zip is listed by name");
    assert!(
        zip["uses"].as_u64().unwrap() >= 1,
        "the second init was a hit: {zip}"
    );

    let stats = json(&world, &["cache", "stats", "--json"]);
    let on_disk: u64 = [
        "providers",
        "provider-checksums",
        "modules",
        "git",
        "git-archives",
    ]
    .iter()
    .map(|dir| du(&cache.join(dir)))
    .sum();
    assert_eq!(stats["total_bytes"].as_u64().unwrap(), on_disk, "{stats:#}");
    assert_eq!(stats["artifacts"].as_u64().unwrap() as usize, rows.len());
    assert_eq!(
        stats["largest"][0]["path"], zip["path"],
        "the padded zip is the largest"
    );
    assert!(stats["metadata_entries"].as_u64().unwrap() > 0);

    let filtered = json(
        &world,
        &["cache", "list", "--json", "--filter", "*hashicorp/alpha*"],
    );
    assert!(
        filtered
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["kind"] == "providers"),
        "{filtered:#}"
    );
    let git = json(&world, &["cache", "list", "--json", "--kind", "git"]);
    assert!(!git.as_array().unwrap().is_empty());
    assert!(git.as_array().unwrap().iter().all(|r| r["kind"] == "git"));
}

fn du_or_len(path: &Path) -> u64 {
    if path.is_dir() {
        du(path)
    } else {
        path.metadata().unwrap().len()
    }
}

#[test]
fn delete_of_a_provider_version_makes_the_next_init_fetch_it_once() {
    let world = alpha_cached();

    let dry = world
        .tfmirror(&[
            "cache",
            "delete",
            "--dry-run",
            "*hashicorp/alpha 1.0.0 linux_amd64",
        ])
        .output()
        .unwrap();
    assert_success(&dry, "delete --dry-run");
    assert!(String::from_utf8_lossy(&dry.stdout)
        .contains("would remove registry.terraform.io/hashicorp/alpha 1.0.0 linux_amd64"));
    let zip = world.cache_dir().join(
        "providers/registry.terraform.io/hashicorp/alpha/terraform-provider-alpha_1.0.0_linux_amd64.zip",
    );
    assert!(zip.is_file(), "a dry run removes nothing");

    let deleted = world
        .tfmirror(&["cache", "delete", "*hashicorp/alpha 1.0.0 linux_amd64"])
        .output()
        .unwrap();
    assert_success(&deleted, "delete");
    assert!(!zip.exists());
    let none = world
        .tfmirror(&["cache", "delete", "nothing-like-this"])
        .output()
        .unwrap();
    assert_eq!(none.status.code(), Some(1), "nothing matched");

    world.registry.clear_requests();
    assert_success(
        &world.init(&world.workdir("again", &ALPHA)),
        "init after delete",
    );
    let zip_downloads = world
        .registry
        .count(|r| r.method == "GET" && r.path.ends_with("linux_amd64.zip"));
    assert_eq!(zip_downloads, 1, "{:#?}", world.registry.requests());
    assert!(zip.is_file());
}

#[test]
fn gc_over_the_size_limit_keeps_what_was_just_used() {
    let world = World::with_config(
        vec![
            ProviderSpec::new("acme", "small", &["1.0.0"]).with_extra_bytes(10_000),
            ProviderSpec::new("acme", "large", &["1.0.0"]).with_extra_bytes(200_000),
            ProviderSpec::new("acme", "recent", &["1.0.0"]).with_extra_bytes(100_000),
        ],
        "gc_min_age = \"1s\"",
    );
    let all = [
        ("acme", "small", "1.0.0"),
        ("acme", "large", "1.0.0"),
        ("acme", "recent", "1.0.0"),
    ];
    assert_success(&world.init(&world.workdir("all", &all)), "init");
    std::thread::sleep(std::time::Duration::from_millis(1500));
    assert_success(
        &world.init(&world.workdir("recent", &[("acme", "recent", "1.0.0")])),
        "a use of one provider",
    );

    let plan = json(
        &world,
        &["cache", "gc", "--max-size", "1", "--dry-run", "--json"],
    );
    let planned: Vec<&str> = plan["removed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert!(
        planned.iter().all(|name| !name.contains("acme/recent")),
        "used a moment ago, kept although over the limit: {planned:?}"
    );
    assert!(
        planned
            .iter()
            .any(|name| name.contains("acme/large 1.0.0 linux_amd64"))
            && planned
                .iter()
                .any(|name| name.contains("acme/small 1.0.0 linux_amd64")),
        "{planned:?}"
    );
    let removed = json(&world, &["cache", "gc", "--max-size", "1", "--json"]);
    assert_eq!(
        removed["removed"], plan["removed"],
        "the dry run showed the plan"
    );
    let left = json(&world, &["cache", "list", "--json", "--kind", "providers"]);
    let names: Vec<&str> = left
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert!(
        names
            .iter()
            .any(|n| n.contains("acme/recent 1.0.0 linux_amd64")),
        "{names:?}"
    );
    assert!(
        !names.iter().any(|n| n.contains("acme/large 1.0.0 linux")),
        "{names:?}"
    );
}

#[test]
fn prune_drops_version_lists_but_keeps_what_cannot_change() {
    let world = alpha_cached();
    let dry = json(
        &world,
        &[
            "cache",
            "prune",
            "--older-than",
            "0s",
            "--dry-run",
            "--json",
        ],
    );
    assert!(dry["pruned"].as_u64().unwrap() >= 2, "{dry}");
    let pruned = json(&world, &["cache", "prune", "--older-than", "0s", "--json"]);
    assert_eq!(pruned["pruned"], dry["pruned"]);

    world.registry.clear_requests();
    assert_success(
        &world.init(&world.workdir("second", &ALPHA)),
        "init after prune",
    );
    let versions = world.registry.count(|r| r.path.ends_with("/versions"));
    let answers = world.registry.count(|r| r.path.contains("/download/"));
    assert_eq!(
        (versions, answers),
        (1, 0),
        "{:#?}",
        world.registry.requests()
    );
    assert_eq!(world.registry.artifact_requests(), 0);
}

#[test]
fn a_server_with_gc_max_size_collects_when_it_starts() {
    let world = World::with_config(
        vec![ProviderSpec::new("hashicorp", "alpha", &["1.0.0"])],
        "gc_max_size = \"1\"\ngc_min_age = \"0s\"",
    );
    assert_success(&world.init(&world.workdir("first", &ALPHA)), "init");
    assert!(!world.artifact_files().is_empty());
    world.stop_server();

    let server = world.serve();
    let started = std::time::Instant::now();
    while !world.artifact_files().is_empty() && started.elapsed().as_secs() < 10 {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(
        world.artifact_files(),
        Vec::<String>::new(),
        "collected at start"
    );
    let metrics = crate::fixtures::http::get(&format!("{}/_tfmirror/metrics", server.url)).text();
    assert!(metrics.contains("tfmirror_gc_runs_total 1"), "{metrics}");
}

/// Sets the modification time of every file below `dir` to `age` ago: a
/// mirror made that long ago, as far as the files tell.
fn age_files(dir: &Path, age: std::time::Duration) {
    let then = std::time::SystemTime::now() - age;
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        if entry.file_type().unwrap().is_dir() {
            age_files(&entry.path(), age);
        } else {
            let file = std::fs::File::options()
                .write(true)
                .open(entry.path())
                .unwrap();
            file.set_modified(then).unwrap();
        }
    }
}

fn now_ms() -> u64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    since.unwrap().as_millis() as u64
}

/// The `cache list --json` row of the artifact at `path` (below the cache).
fn row_of(world: &World, path: &str) -> Option<serde_json::Value> {
    let list = json(world, &["cache", "list", "--json"]);
    list.as_array()
        .unwrap()
        .iter()
        .find(|row| row["path"] == path)
        .cloned()
}

/// The key of the one git mirror in the cache.
fn mirror_key(world: &World) -> String {
    let git = json(world, &["cache", "list", "--json", "--kind", "git"]);
    let mirrors: Vec<&str> = git
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row["path"].as_str().unwrap())
        .filter(|path| path.starts_with("git/") && path.ends_with(REPO))
        .collect();
    assert_eq!(mirrors.len(), 1, "{git:#}");
    mirrors[0].to_owned()
}

fn git_module_tf(world: &World) -> String {
    format!(
        "module \"vpc\" {{\n  source = \"git::{}//modules/vpc?ref=v1.0.0\"\n}}\n",
        world.registry.git_url(REPO)
    )
}

#[test]
fn gc_keeps_a_git_mirror_that_clones_just_used() {
    let world = World::with_git(
        Vec::new(),
        vec![GitRepoSpec::new(REPO)],
        "gc_min_age = \"0s\"",
    );
    let main_tf = git_module_tf(&world);
    assert_success(&world.init(&world.workdir_with("first", &main_tf)), "first");
    let mirror = mirror_key(&world);
    // As if the mirror had been made two hours ago, and a mirror beside it
    // too, which nothing has used since.
    let two_hours = std::time::Duration::from_secs(2 * 3600);
    let mirror_dir = world.cache_dir().join(&mirror);
    age_files(&mirror_dir, two_hours);
    let stale_dir = mirror_dir.with_file_name("stale.git");
    std::fs::create_dir_all(&stale_dir).unwrap();
    std::fs::write(stale_dir.join("HEAD"), "ref: refs/heads/main\n").unwrap();
    age_files(&stale_dir, two_hours);
    let started = now_ms();
    assert_success(
        &world.init(&world.workdir_with("second", &main_tf)),
        "second",
    );

    let row = row_of(&world, &mirror).expect("the mirror is listed");
    assert!(row["uses"].as_u64().unwrap() >= 2, "two clones: {row}");
    assert!(
        row["last_used_ms"].as_u64().unwrap() >= started,
        "used by the second init: {row}"
    );

    let removed = json(&world, &["cache", "gc", "--unused-for", "5m", "--json"]);
    let paths: Vec<&str> = removed["removed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["path"].as_str().unwrap())
        .collect();
    let stale = format!("{}/stale.git", mirror.rsplit_once('/').unwrap().0);
    assert_eq!(paths, [stale.as_str()], "only the unused mirror goes");
    assert!(mirror_dir.join("HEAD").is_file());
    assert!(!stale_dir.exists());
}

#[test]
fn a_killed_fetch_leaves_nothing_listed_and_nothing_after_a_restart() {
    let world = World::with_git(Vec::new(), vec![GitRepoSpec::new(REPO)], "");
    let main_tf = git_module_tf(&world);
    assert_success(&world.init(&world.workdir_with("first", &main_tf)), "first");
    let mirror_dir = world.cache_dir().join(mirror_key(&world));
    let beside = mirror_dir.parent().unwrap();
    // What a fetch killed half way leaves: its lock file, and the staging
    // directory of a clone that never finished.
    let lock = beside.join("x.git.lock");
    std::fs::write(&lock, "").unwrap();
    let staging = beside.join(".x.git.abcd.tmp");
    std::fs::create_dir_all(staging.join("objects/pack")).unwrap();
    std::fs::write(staging.join("HEAD"), "ref: refs/heads/main\n").unwrap();
    std::fs::write(staging.join("objects/pack/tmp_pack_1"), vec![7; 4096]).unwrap();

    let listed = |world: &World| -> Vec<String> {
        let list = json(world, &["cache", "list", "--json"]);
        list.as_array()
            .unwrap()
            .iter()
            .map(|row| row["path"].as_str().unwrap().to_owned())
            .collect()
    };
    let leftovers = |paths: &[String]| -> Vec<String> {
        paths
            .iter()
            .filter(|p| p.contains(".tmp") || p.ends_with(".lock"))
            .cloned()
            .collect()
    };
    let before = listed(&world);
    assert_eq!(leftovers(&before), Vec::<String>::new(), "{before:#?}");
    assert_eq!(before.len(), 1, "the mirror alone: {before:#?}");

    world.stop_server();
    let mut server = world.serve();
    assert!(!lock.exists(), "the lock file is swept at start");
    assert!(!staging.exists(), "the unfinished clone is swept at start");
    assert!(mirror_dir.join("HEAD").is_file(), "the mirror stays");
    assert_eq!(listed(&world), before);
    assert_success(
        &world.init(&world.workdir_with("second", &main_tf)),
        "second",
    );
    assert!(server.stop());
}

/// `text` with each size (`12.3 kB`, `900 B`) as `SIZE`: a signature's
/// size changes with the fixture's keys, not with tfmirror.
fn sizes_hidden(text: &str) -> String {
    const UNITS: [&str; 4] = ["B", "kB", "MB", "GB"];
    let mut out = String::new();
    for line in text.lines() {
        let words: Vec<&str> = line.split(' ').collect();
        let mut kept: Vec<&str> = Vec::new();
        let mut i = 0;
        while i < words.len() {
            let number = words[i].trim_start_matches('(');
            let unit = words.get(i + 1).map(|w| w.trim_end_matches(')'));
            if number.parse::<f64>().is_ok() && unit.is_some_and(|u| UNITS.contains(&u)) {
                kept.push(if words[i].starts_with('(') {
                    "(SIZE)"
                } else {
                    "SIZE"
                });
                i += 2;
            } else {
                kept.push(words[i]);
                i += 1;
            }
        }
        out.push_str(&kept.join(" "));
        out.push('\n');
    }
    out
}

fn stdout(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// `cache delete` reads a provider address as all its versions, more
/// words as one version, and says in one line when nothing matches.
#[test]
fn delete_takes_a_provider_by_address_and_version() {
    let world = World::new(vec![ProviderSpec::new(
        "hashicorp",
        "alpha",
        &["1.0.0", "2.0.0"],
    )]);
    for version in ["1.0.0", "2.0.0"] {
        let dir = world.workdir(version, &[("hashicorp", "alpha", version)]);
        assert_success(&world.init(&dir), version);
    }

    let one_version = world
        .tfmirror(&["cache", "delete", "--dry-run", "hashicorp/alpha 1.0.0"])
        .output()
        .unwrap();
    assert_success(&one_version, "delete --dry-run of one version");
    insta::assert_snapshot!("delete_one_version", sizes_hidden(&stdout(&one_version)));

    let none = world
        .tfmirror(&["cache", "delete", "hashicorp/nope"])
        .output()
        .unwrap();
    assert_eq!(none.status.code(), Some(1), "nothing matched");
    assert_eq!(stdout(&none), "", "no total of nothing");
    insta::assert_snapshot!("delete_no_match", String::from_utf8_lossy(&none.stderr));

    let files = world.artifact_files();
    assert_eq!(
        files.len(),
        6,
        "zip, SHA256SUMS, signature of each: {files:#?}"
    );
    let all = world
        .tfmirror(&["cache", "delete", "registry.terraform.io/hashicorp/alpha"])
        .output()
        .unwrap();
    assert_success(&all, "delete of the provider");
    assert!(
        stdout(&all).contains(" in 6 artifacts\n"),
        "{}",
        stdout(&all)
    );
    assert_eq!(world.artifact_files(), Vec::<String>::new());
}

/// A gc that removes nothing because everything is new says so, and
/// `--min-age` lets it go for one run.
#[test]
fn gc_says_what_min_age_kept_and_min_age_overrides_it() {
    let world = alpha_cached();
    let kept = world
        .tfmirror(&["cache", "gc", "--unused-for", "0s"])
        .output()
        .unwrap();
    assert_success(&kept, "gc within gc_min_age");
    let flag = world
        .tfmirror(&["cache", "gc", "--unused-for", "0s", "--min-age", "1h"])
        .output()
        .unwrap();
    assert_success(&flag, "gc with --min-age 1h");
    insta::assert_snapshot!(
        "gc_kept_young",
        sizes_hidden(&(stdout(&kept) + &stdout(&flag)))
    );
    assert_eq!(
        world.artifact_files().len(),
        3,
        "zip, SHA256SUMS, signature"
    );

    let plan = json(
        &world,
        &[
            "cache",
            "gc",
            "--unused-for",
            "0s",
            "--min-age",
            "0s",
            "--dry-run",
            "--json",
        ],
    );
    assert_eq!(plan["removed"].as_array().unwrap().len(), 3, "{plan:#}");
    assert_eq!(plan["kept_young"]["entries"], 0, "{plan:#}");
    let removed = world
        .tfmirror(&["cache", "gc", "--unused-for", "0s", "--min-age", "0s"])
        .output()
        .unwrap();
    assert_success(&removed, "gc with --min-age 0s");
    assert!(stdout(&removed).contains("freed "), "{}", stdout(&removed));
    assert_eq!(world.artifact_files(), Vec::<String>::new());
}
