//! End to end: the small things a new user meets first. Commands that only
//! read leave no cache and no server behind, a cache no server owns is
//! listed from its files as its server lists it, and `--listen` takes a
//! host name.

use std::path::Path;
use std::process::Output;

use crate::fixtures::{ModuleSpec, ProviderSpec};
use crate::harness::{assert_success, World};

/// Processes whose command line names `needle` (the test's own temporary
/// cache directory, which no other process knows).
fn processes_naming(needle: &Path) -> Vec<String> {
    let needle = needle.to_string_lossy().into_owned();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            cmdline.contains(&needle).then_some(cmdline)
        })
        .collect()
}

/// A command's exit code and output, stdout then stderr, with the cache's
/// path as `[CACHE]`.
fn shown(output: &Output, cache: &Path) -> String {
    let text = format!(
        "exit {}\n{}{}",
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    text.replace(&*cache.to_string_lossy(), "[CACHE]")
}

#[test]
fn read_only_commands_leave_no_cache_and_no_server() {
    let world = World::new(Vec::new());
    let shared = world.root.path().join("bucket");
    std::fs::create_dir_all(&shared).unwrap();
    world.append_config(&format!(
        "[shared]\nurl = \"file://{}\"\n",
        shared.display()
    ));
    let cache = world.cache_dir();
    assert!(!cache.exists());
    let commands: [&[&str]; 6] = [
        &["status"],
        &["cache", "list"],
        &["cache", "list", "--json"],
        &["cache", "stats"],
        &["cache", "stats", "--json"],
        &["cache", "push", "--dry-run"],
    ];
    let mut transcript = String::new();
    for args in commands {
        let output = world.tfmirror(args).output().unwrap();
        transcript.push_str(&format!(
            "$ tfmirror {}\n{}\n",
            args.join(" "),
            shown(&output, &cache)
        ));
        assert_eq!(output.status.code(), Some(1), "{}", shown(&output, &cache));
        assert!(
            !cache.exists(),
            "`{}` made the cache directory",
            args.join(" ")
        );
        let running = processes_naming(&cache);
        assert!(
            running.is_empty(),
            "`{}` started {running:?}",
            args.join(" ")
        );
    }
    insta::assert_snapshot!("read_only_without_a_cache", transcript);
}

#[test]
fn a_cache_no_server_owns_is_listed_as_its_server_lists_it() {
    let world = World::start(
        vec![ProviderSpec::new("hashicorp", "alpha", &["1.0.0"])],
        vec![ModuleSpec::new("acme", "net", "aws", &["1.0.0"])],
        "",
    );
    let main_tf = format!(
        "{}\nmodule \"net\" {{\n  source  = \"acme/net/aws\"\n  version = \"1.0.0\"\n}}\n",
        crate::harness::main_tf(&[("hashicorp", "alpha", "1.0.0")]),
    );
    for name in ["first", "second"] {
        assert_success(&world.init(&world.workdir_with(name, &main_tf)), name);
    }
    let list = |what: &str| -> serde_json::Value {
        let output = world
            .tfmirror(&["cache", "list", "--json"])
            .output()
            .unwrap();
        assert_success(&output, what);
        serde_json::from_slice(&output.stdout).unwrap()
    };
    let served = list("list from the running server");
    let server = world.server_info().expect("exec left its server running");
    world.stop_server();
    let cache = world.cache_dir();
    assert!(processes_naming(&cache).is_empty());

    let read = list("list from the files");
    assert_eq!(read, served, "the same rows, uses and times included");
    assert!(world.server_info().is_none(), "no server was started");
    assert!(processes_naming(&cache).is_empty(), "no server was started");

    let rows = read.as_array().unwrap();
    let zip = rows
        .iter()
        .find(|r| r["name"] == "registry.terraform.io/hashicorp/alpha 1.0.0 linux_amd64")
        .expect("the zip is listed");
    assert!(zip["uses"].as_u64().unwrap() >= 1, "{zip}");
    let archives: Vec<&serde_json::Value> = rows
        .iter()
        .filter(|r| r["path"].as_str().unwrap().starts_with("modules/archives/"))
        .collect();
    assert!(!archives.is_empty(), "{read:#}");
    let upstream = server["url"].as_str().unwrap().to_owned();
    for archive in &archives {
        let name = archive["name"].as_str().unwrap();
        assert!(
            name.starts_with("http://127.0.0.1:") && !name.starts_with(&upstream),
            "named by its upstream URL: {name}"
        );
    }
    // The name shown is one `cache delete` takes, and says back.
    let name = archives[0]["name"].as_str().unwrap();
    let delete = world
        .tfmirror(&["cache", "delete", "--dry-run", name])
        .output()
        .unwrap();
    assert_success(&delete, "delete --dry-run by the listed name");
    let said = String::from_utf8_lossy(&delete.stdout);
    assert!(said.contains(&format!("would remove {name} (")), "{said}");
    world.stop_server();

    let table = world
        .tfmirror(&["cache", "list", "--kind", "modules"])
        .output()
        .unwrap();
    assert_success(&table, "the modules table from the files");
    let registry = world.registry.url();
    let registry = registry.trim_end_matches('/');
    let table = String::from_utf8_lossy(&table.stdout).replace(registry, "http://127.0.0.1:PORT");
    insta::assert_snapshot!("module_archives_by_url", table);

    let stats = world.tfmirror(&["cache", "stats"]).output().unwrap();
    assert_success(&stats, "stats from the files");
    assert!(world.server_info().is_none());
}

#[test]
fn listen_takes_a_host_name() {
    let world = World::new(Vec::new());
    let mut server = world.serve_with(&["--listen", "localhost:0"]);
    assert!(
        server.address.starts_with("http://127.0.0.1:"),
        "localhost binds its IPv4 address first: {}",
        server.address
    );
    let status = world.tfmirror(&["status"]).output().unwrap();
    assert_success(&status, "status of a server on localhost");
    assert!(server.stop());

    let configured = World::with_config(Vec::new(), "listen = \"LocalHost:0\"");
    let mut server = configured.serve();
    assert!(
        server.address.starts_with("http://127.0.0.1:"),
        "{}",
        server.address
    );
    assert!(server.stop());

    let refused = world
        .tfmirror(&["serve", "--listen", "localhost"])
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(2), "a usage error");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("invalid value 'localhost' for '--listen <HOST:PORT>'"),
        "{stderr}"
    );
}

#[test]
fn a_config_refusal_names_the_file_line_and_column() {
    let world = World::with_config(Vec::new(), "# team defaults\nmetadata_ttl = \"soon\"");
    let config = world.config_path();
    let output = world.tfmirror(&["status"]).output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr =
        String::from_utf8_lossy(&output.stderr).replace(&*config.to_string_lossy(), "[CONFIG]");
    insta::assert_snapshot!("config_refusal", stderr);
}
