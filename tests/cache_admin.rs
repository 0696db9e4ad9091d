//! End to end: `tfmirror cache list` and `cache stats` against the files a
//! few real inits left in the cache.

mod fixtures;
mod harness;

use std::path::Path;

use fixtures::{GitRepoSpec, ModuleSpec, ProviderSpec};
use harness::{assert_success, World};

const REPO: &str = "org/infra.git";

fn filled_world() -> World {
    let world = World::start_all(
        vec![ProviderSpec::new("hashicorp", "alpha", &["1.0.0"]).with_extra_bytes(50_000)],
        vec![ModuleSpec::new("acme", "net", "aws", &["1.0.0"])],
        vec![GitRepoSpec::new(REPO)],
        "",
    );
    let main_tf = format!(
        "{}\nmodule \"net\" {{\n  source  = \"acme/net/aws\"\n  version = \"1.0.0\"\n}}\n\
         module \"vpc\" {{\n  source = \"git::{}//modules/vpc?ref=v1.0.0\"\n}}\n",
        harness::main_tf(&[("hashicorp", "alpha", "1.0.0")]),
        world.registry.git_url(REPO)
    );
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
    let metrics = fixtures::http::get(&format!("{}/_tfmirror/metrics", server.url)).text();
    assert!(metrics.contains("tfmirror_gc_runs_total 1"), "{metrics}");
}
