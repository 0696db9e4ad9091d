//! End to end: `POST /_tfmirror/providers/prepare` makes the unpacked
//! `filesystem_mirror` tree from cached, verified zips, and the real
//! terraform installs from that tree by symlink, with a lock file holding
//! the `h1:` the server answered.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::fixtures::http::{raw_request, RawResponse};
use crate::fixtures::ProviderSpec;
use crate::harness::{assert_success, ServeProcess, World};

const ALPHA: [(&str, &str, &str); 1] = [("hashicorp", "alpha", "1.0.0")];
const ADDRESS: &str = "registry.terraform.io/hashicorp/alpha";
/// The one Linux platform the fake registry publishes.
const PLATFORM: &str = "linux_amd64";
const EXECUTABLE: &str = "terraform-provider-alpha_v1.0.0";

/// `tfmirror serve` logging at info level to a file, so the test can count
/// what the server did; the `exec` runs below find and use it.
fn serve_logging(world: &World) -> (ServeProcess, PathBuf) {
    let log = world.root.path().join("serve.log");
    let mut command = world.tfmirror(&["serve"]);
    command
        .env("TFMIRROR_LOG", "info")
        .stderr(std::fs::File::create(&log).unwrap());
    (world.serve_command(command), log)
}

/// A world whose server has cached alpha 1.0.0 through one real init;
/// returns the lock file's hashes for it.
fn alpha_cached(extra_config: &str) -> (World, ServeProcess, PathBuf, Vec<String>) {
    let world = World::with_config(
        vec![ProviderSpec::new("hashicorp", "alpha", &["1.0.0"])],
        extra_config,
    );
    let (server, log) = serve_logging(&world);
    let first = world.workdir("first", &ALPHA);
    assert_success(&world.init(&first), "first init");
    let hashes = crate::harness::locked_hashes(&first, "hashicorp", "alpha");
    (world, server, log, hashes)
}

/// POSTs `body` to the endpoint as the owner (secret in the path and as
/// a bearer token).
fn post_prepare(server: &ServeProcess, body: &str) -> RawResponse {
    let raw = format!(
        "POST /{}/_tfmirror/providers/prepare HTTP/1.1\r\nHost: {}\r\n\
         Authorization: Bearer {}\r\nContent-Type: application/json\r\n\
         Connection: close\r\nContent-Length: {}\r\n\r\n{body}",
        server.secret,
        server.addr(),
        server.secret,
        body.len()
    );
    raw_request(server.addr(), &raw)
}

fn prepare_body(providers: &[(&str, &[String])]) -> String {
    let providers: Vec<_> = providers
        .iter()
        .map(|(address, hashes)| {
            serde_json::json!({"address": address, "version": "1.0.0", "hashes": hashes})
        })
        .collect();
    serde_json::json!({"platform": PLATFORM, "providers": providers}).to_string()
}

fn prepare_alpha(server: &ServeProcess, hashes: &[String]) -> serde_json::Value {
    let answer = post_prepare(server, &prepare_body(&[(ADDRESS, hashes)]));
    assert_eq!(answer.status, 200, "{}", answer.text());
    answer.json()
}

fn entry_of(tree: &Path) -> PathBuf {
    tree.join(ADDRESS).join("1.0.0").join(PLATFORM)
}

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap()
        .permissions()
        .mode()
        & 0o7777
}

fn unpack_lines(log: &Path) -> usize {
    let text = std::fs::read_to_string(log).unwrap();
    let wanted = format!("unpacked {ADDRESS} 1.0.0 {PLATFORM} into");
    text.lines().filter(|l| l.contains(&wanted)).count()
}

#[test]
fn terraform_installs_a_prepared_provider_by_symlink() {
    let (world, server, log, hashes) = alpha_cached("");
    let requests_before = world.registry.requests().len();

    // Eight execs asking at once: one unpack, eight identical answers.
    let answers: Vec<serde_json::Value> = std::thread::scope(|scope| {
        let asking: Vec<_> = (0..8)
            .map(|_| scope.spawn(|| prepare_alpha(&server, &hashes)))
            .collect();
        asking.into_iter().map(|a| a.join().unwrap()).collect()
    });
    let first = &answers[0];
    assert!(answers.iter().all(|a| a == first), "{answers:?}");
    let prepared = &first["providers"][0];
    assert_eq!(prepared["ready"], true, "{first}");
    assert_eq!(prepared["address"], ADDRESS);
    let h1 = prepared["h1"].as_str().unwrap();
    let zh = prepared["zh"].as_str().unwrap();
    assert!(
        hashes.iter().any(|h| h == h1),
        "{h1} is terraform's own: {hashes:?}"
    );
    assert!(
        hashes.iter().any(|h| h == zh),
        "{zh} is in the lock: {hashes:?}"
    );
    assert_eq!(unpack_lines(&log), 1, "unpacked once for eight requests");
    assert_eq!(
        world.registry.requests().len(),
        requests_before,
        "a cached, verified zip needs nothing from upstream"
    );

    let tree = PathBuf::from(first["tree"].as_str().unwrap());
    assert!(tree.is_absolute(), "{}", tree.display());
    assert_eq!(tree, world.cache_dir().join("providers-unpacked"));
    let entry = entry_of(&tree);
    assert_eq!(mode(&entry), 0o555, "the entry is read-only");
    assert_eq!(
        mode(&entry.join(EXECUTABLE)),
        0o555,
        "executable, read-only"
    );
    let left: Vec<_> = std::fs::read_dir(entry.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, [PLATFORM], "no staging directory is left");

    // The real proof: terraform, told only about the tree and given a lock
    // file written by hand with the answered h1:, installs by symlink.
    let work = world.workdir("from-tree", &ALPHA);
    let lock = format!(
        "provider \"{ADDRESS}\" {{\n  version     = \"1.0.0\"\n  constraints = \"1.0.0\"\n  \
         hashes = [\n    \"{h1}\",\n  ]\n}}\n"
    );
    std::fs::write(work.join(".terraform.lock.hcl"), &lock).unwrap();
    let cli_config = world.root.path().join("tree.tfrc");
    let config = format!(
        "provider_installation {{\n  filesystem_mirror {{\n    path = \"{}\"\n  }}\n}}\n",
        tree.display()
    );
    std::fs::write(&cli_config, config).unwrap();
    let init = world
        .command(crate::harness::terraform())
        .args(["init", "-input=false", "-no-color"])
        .env("TF_CLI_CONFIG_FILE", &cli_config)
        .current_dir(&work)
        .output()
        .unwrap();
    assert_success(&init, "terraform init from the tree");
    let installed = work
        .join(".terraform/providers")
        .join(ADDRESS)
        .join("1.0.0")
        .join(PLATFORM);
    let link = std::fs::read_link(&installed).expect("installed as a symlink");
    assert_eq!(link, entry, "linked to the entry");
    assert_eq!(
        std::fs::read_to_string(work.join(".terraform.lock.hcl")).unwrap(),
        lock,
        "terraform accepted the lock file as it was"
    );
    // The fake provider is a shell script: running it through the link
    // shows the executable bit survived.
    let ran = std::process::Command::new(installed.join(EXECUTABLE))
        .output()
        .expect("the installed provider runs");
    assert_eq!(
        String::from_utf8_lossy(&ran.stdout).trim(),
        "fake provider hashicorp/alpha 1.0.0 linux_amd64"
    );
    let providers = world
        .command(crate::harness::terraform())
        .args(["providers", "-no-color"])
        .env("TF_CLI_CONFIG_FILE", &cli_config)
        .current_dir(&work)
        .output()
        .unwrap();
    assert_success(&providers, "terraform providers");
    assert!(String::from_utf8_lossy(&providers.stdout)
        .contains("provider[registry.terraform.io/hashicorp/alpha] 1.0.0"));
}

#[test]
fn each_provider_is_answered_in_order_and_the_lock_file_wins() {
    let (_world, server, log, hashes) = alpha_cached("");
    let other_bytes = vec![format!("zh:{}", "0".repeat(64))];
    let body = prepare_body(&[
        (ADDRESS, &other_bytes),
        ("registry.terraform.io/hashicorp/../etc", &hashes),
        (ADDRESS, &hashes),
        ("registry.terraform.io/hashicorp/missing", &hashes),
    ]);
    let answer = post_prepare(&server, &body);
    assert_eq!(answer.status, 200, "{}", answer.text());
    let answer = answer.json();
    let providers = answer["providers"].as_array().unwrap();
    let ready: Vec<bool> = providers.iter().map(|p| p["ready"] == true).collect();
    assert_eq!(ready, [false, false, true, false], "{answer}");
    let reasons: Vec<&str> = providers
        .iter()
        .map(|p| p["reason"].as_str().unwrap_or_default())
        .collect();
    assert!(
        reasons[0].contains("matches none of the lock file's hashes"),
        "{}",
        reasons[0]
    );
    assert!(providers[0].get("h1").is_none());
    assert!(reasons[1].contains("not a provider"), "{}", reasons[1]);
    assert!(reasons[3].contains("no verified zip"), "{}", reasons[3]);
    assert_eq!(
        providers[3]["address"],
        "registry.terraform.io/hashicorp/missing"
    );
    assert_eq!(unpack_lines(&log), 1, "only the matching one was unpacked");

    let bad = [
        "{not json".to_owned(),
        r#"{"platform": "linux", "providers": []}"#.to_owned(),
        prepare_body(&vec![(ADDRESS, &hashes[..]); 1001]),
    ];
    for body in bad {
        let answer = post_prepare(&server, &body);
        assert_eq!(answer.status, 400, "{}", answer.text());
    }
}

fn cache_json(world: &World, args: &[&str]) -> serde_json::Value {
    let output = world.tfmirror(args).output().unwrap();
    assert_success(&output, &args.join(" "));
    serde_json::from_slice(&output.stdout).unwrap()
}

#[test]
fn gc_removes_the_entry_first_and_prepare_makes_it_again() {
    let (world, server, log, hashes) = alpha_cached("gc_min_age = \"0s\"");
    let answer = prepare_alpha(&server, &hashes);
    let entry = entry_of(Path::new(answer["tree"].as_str().unwrap()));
    assert!(entry.is_dir());
    // A working directory installed from the entry, through exec.
    let linked = world.workdir("linked", &ALPHA);
    let lock = world.root.path().join("work/first/.terraform.lock.hcl");
    std::fs::copy(&lock, linked.join(".terraform.lock.hcl")).unwrap();
    assert_success(&world.init(&linked), "init from the tree");
    let installed = linked
        .join(".terraform/providers")
        .join(ADDRESS)
        .join("1.0.0")
        .join(PLATFORM);
    assert!(installed.symlink_metadata().unwrap().is_symlink());

    let listed = cache_json(&world, &["cache", "list", "--json"]);
    let listed = listed.as_array().unwrap();
    let tree_name = format!("{ADDRESS} 1.0.0 {PLATFORM} (unpacked)");
    let tree = listed
        .iter()
        .find(|a| a["name"] == tree_name.as_str())
        .unwrap_or_else(|| panic!("the entry is listed: {listed:?}"));
    assert_eq!(tree["kind"], "providers");
    let executable_size = std::fs::metadata(entry.join(EXECUTABLE)).unwrap().len();
    assert_eq!(tree["size"], executable_size);

    // One byte over the limit: removing the entry alone is enough, and it
    // goes first, although the zip was used as lately.
    let total: u64 = listed.iter().map(|a| a["size"].as_u64().unwrap()).sum();
    let limit = (total - 1).to_string();
    let removed = cache_json(&world, &["cache", "gc", "--max-size", &limit, "--json"]);
    let names: Vec<&str> = removed["removed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, [tree_name.as_str()]);
    assert!(!entry.exists());

    assert!(!installed.exists(), "the working directory's link dangles");

    // The next init through exec makes the entry again and repairs it.
    assert_success(&world.init(&linked), "init that repairs the link");
    assert!(entry.is_dir(), "made again on demand");
    assert!(
        installed.join(EXECUTABLE).is_file(),
        "the link resolves again"
    );
    assert_eq!(unpack_lines(&log), 2);
    let again = prepare_alpha(&server, &hashes);
    assert_eq!(again["providers"][0]["h1"], answer["providers"][0]["h1"]);

    // `cache delete` of the package takes its entry with it; the next
    // prepare downloads the zip again through the registry path.
    let package = format!("{ADDRESS} 1.0.0 {PLATFORM}");
    let deleted = cache_json(&world, &["cache", "delete", &package, "--json"]);
    let names: Vec<&str> = deleted["removed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, [tree_name.as_str(), package.as_str()]);
    assert!(!entry.exists());
    let downloads = world.registry.artifact_requests();
    let third = prepare_alpha(&server, &hashes);
    assert_eq!(third["providers"][0]["ready"], true, "{third}");
    assert_eq!(
        world.registry.artifact_requests(),
        downloads + 1,
        "the zip, once"
    );
    assert!(entry.is_dir());
}
