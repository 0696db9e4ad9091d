//! End to end: the audit log. A cold `terraform init` through tfmirror
//! (a provider, a registry module's archive, a git module), with a
//! registry token set, leaves exactly one line per request the fake
//! upstream received, with the sha256 of the bytes it sent; a warm init
//! adds a line only for what it still fetches (a module's version list,
//! revalidated at every run by design), none for providers, archives or
//! git; no line holds the token; `tfmirror audit` prints the log.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::fixtures::provider_zip::sha256_hex;
use crate::fixtures::{GitRepoSpec, ModuleSpec, ProviderSpec};
use crate::harness::{assert_success, World};

const REPO: &str = "org/infra.git";
const TOKEN: &str = "audit-secret-token-5e1f";
const ENV: [(&str, &str); 1] = [("TF_TOKEN_registry_terraform_io", TOKEN)];

fn world() -> (World, String) {
    let world = World::start_all(
        vec![ProviderSpec::new("hashicorp", "alpha", &["1.0.0"])],
        vec![ModuleSpec::new("acme", "net", "aws", &["1.0.0"])],
        vec![GitRepoSpec::new(REPO)],
        "",
    );
    let main_tf = crate::harness::mixed_main_tf(&world, &[("hashicorp", "alpha", "1.0.0")], REPO);
    (world, main_tf)
}

/// The log's text once it no longer changes: lines are written by the
/// server's writer thread a moment after each fetch.
fn settled_log(world: &World) -> String {
    let path = world.cache_dir().join("audit.jsonl");
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last = std::fs::read_to_string(&path).unwrap_or_default();
    loop {
        std::thread::sleep(Duration::from_millis(200));
        let now = std::fs::read_to_string(&path).unwrap_or_default();
        if now == last || Instant::now() > deadline {
            return now;
        }
        last = now;
    }
}

fn records(log: &str) -> Vec<serde_json::Value> {
    log.lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect()
}

#[test]
fn every_upstream_fetch_has_one_line_and_a_warm_init_none() {
    let (world, main_tf) = world();
    let cold = world.workdir_with("cold", &main_tf);
    assert_success(&world.init_with_env(&cold, &ENV), "cold init");
    let log = settled_log(&world);
    let bearer = format!("Bearer {TOKEN}");
    let sent_token = world
        .registry
        .count(|r| r.authorization.as_deref() == Some(bearer.as_str()));
    assert!(
        sent_token > 0,
        "the token went upstream with the API requests"
    );
    assert!(!log.contains(TOKEN), "a line holds the token:\n{log}");
    let lines = records(&log);

    assert_one_line_per_request(&world, &lines);

    let kinds: Vec<&str> = lines.iter().map(|l| l["kind"].as_str().unwrap()).collect();
    for kind in [
        "discovery",
        "version_list",
        "download_answer",
        "checksums",
        "checksums_signature",
        "provider_package",
        "module_archive",
        "git_fetch",
    ] {
        assert!(kinds.contains(&kind), "{kind} in {kinds:?}");
    }
    for line in &lines {
        assert_eq!(line["outcome"], "stored", "{line}");
        assert!(humantime::parse_rfc3339(line["time"].as_str().unwrap()).is_ok());
    }
    let one = |kind: &str| {
        let found: Vec<_> = lines.iter().filter(|l| l["kind"] == kind).collect();
        assert_eq!(found.len(), 1, "one {kind} line: {found:?}");
        found[0].clone()
    };

    let zip = one("provider_package");
    let bytes = world
        .registry
        .zip_bytes("hashicorp", "alpha", "1.0.0", "linux", "amd64");
    assert_eq!(zip["sha256"], sha256_hex(&bytes).as_str());
    assert_eq!(zip["bytes"], bytes.len() as u64);
    assert_eq!(zip["verified"], "sha256 from SHA256SUMS");
    assert_eq!(
        zip["name"],
        "registry.terraform.io/hashicorp/alpha 1.0.0 linux_amd64"
    );
    assert!(
        zip["client"].as_str().unwrap().starts_with("Terraform/"),
        "{zip}"
    );
    assert!(zip["run"].is_string(), "the run of exec: {zip}");

    let sums = one("checksums");
    let key_id = sums["verified"].as_str().unwrap();
    assert!(key_id.starts_with("signature key "), "{sums}");
    assert_eq!(one("checksums_signature")["verified"], key_id);

    let archive = one("module_archive");
    let bytes = world
        .registry
        .module_archive_bytes("acme", "net", "aws", "1.0.0");
    assert_eq!(archive["sha256"], sha256_hex(&bytes).as_str());
    assert_eq!(archive["name"], "registry.terraform.io/acme/net/aws");
    assert!(archive["verified"]
        .as_str()
        .unwrap()
        .starts_with("archive check ("));

    let git = one("git_fetch");
    assert_eq!(git["name"], world.registry.git_url(REPO).as_str());
    assert_eq!(
        git["run"], zip["run"],
        "the run whose request made the clone"
    );
    let tag = world.registry.git_repo(REPO).commit_id("v1.0.0");
    let verified = git["verified"].as_str().unwrap();
    assert!(verified.contains("refs/heads/main="), "{verified}");
    assert!(
        verified.contains(&tag) || verified.contains("refs/tags/v1.0.0="),
        "{verified}"
    );

    // A warm init records what it still fetches and nothing else: the
    // module's version list, which tfmirror revalidates at every run as
    // it cannot see Terraform's version constraint.
    world.registry.clear_requests();
    let warm = world.workdir_with("warm", &main_tf);
    assert_success(&world.init_with_env(&warm, &ENV), "warm init");
    let after_warm = settled_log(&world);
    let added = after_warm
        .strip_prefix(log.as_str())
        .expect("lines are only appended");
    let added = records(added);
    assert_one_line_per_request(&world, &added);
    for line in &added {
        assert_eq!(line["kind"], "version_list", "{line}");
        assert_eq!(line["name"], "registry.terraform.io/acme/net/aws", "{line}");
    }
    assert!(!after_warm.contains(TOKEN));
    let log = after_warm;
    let lines = records(&log);

    // `audit --json` prints the lines as stored, `audit` a table, with no
    // server running; stopping it flushes the log.
    world.stop_server();
    assert_eq!(settled_log(&world), log);
    let output = world
        .tfmirror(&["audit", "--json", "--since", "1h"])
        .output()
        .unwrap();
    assert_success(&output, "tfmirror audit --json");
    assert_eq!(String::from_utf8(output.stdout).unwrap(), log);
    let output = world.tfmirror(&["audit"]).output().unwrap();
    assert_success(&output, "tfmirror audit");
    insta::assert_snapshot!("audit_table", stable_table(&output.stdout, &lines, &world));
}

/// `lines` hold exactly one line per GET the upstream received since its
/// requests were last cleared, by URL; git's own requests aside (a clone
/// is several HTTP requests and one fetch, checked by the caller).
fn assert_one_line_per_request(world: &World, lines: &[serde_json::Value]) {
    let base = world.registry.url();
    let mut fetched: BTreeMap<String, usize> = BTreeMap::new();
    for request in world.registry.requests() {
        if request.method == "GET" && !request.path.starts_with("/git/") {
            *fetched
                .entry(format!("{base}{}", &request.path[1..]))
                .or_default() += 1;
        }
    }
    let mut recorded: BTreeMap<String, usize> = BTreeMap::new();
    for line in lines.iter().filter(|l| l["kind"] != "git_fetch") {
        let url = line["url"]
            .as_str()
            .unwrap_or_else(|| panic!("no url: {line}"));
        *recorded.entry(url.to_owned()).or_default() += 1;
    }
    assert_eq!(
        recorded, fetched,
        "one line per upstream request: {lines:#?}"
    );
}

/// The table with what changes from run to run replaced: times, run
/// ids, the fake upstream's port, Terraform's version; its rows sorted,
/// since concurrent fetches finish in any order, and columns joined by
/// two spaces, since widths follow the replaced values.
fn stable_table(stdout: &[u8], lines: &[serde_json::Value], world: &World) -> String {
    let mut text = String::from_utf8(stdout.to_vec()).unwrap();
    for run in lines.iter().filter_map(|l| l["run"].as_str()) {
        text = text.replace(run, "[run]");
    }
    for client in lines.iter().filter_map(|l| l["client"].as_str()) {
        text = text.replace(client, "[client]");
    }
    text = text.replace(&world.registry.url(), "http://[upstream]/");
    let mut rows: Vec<String> = text
        .lines()
        .map(|row| {
            let (time, rest) = row.split_at(row.find("  ").unwrap());
            let time = if time == "TIME" { time } else { "[time]" };
            let cells: Vec<&str> = rest
                .split("  ")
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .collect();
            format!("{time}  {}", cells.join("  "))
        })
        .collect();
    rows[1..].sort();
    rows.join("\n")
}
