//! End to end: the real terraform binary installs providers through
//! tfmirror from a fake upstream registry.

use crate::fixtures::{Fault, ProviderSpec};
use crate::harness::{assert_failure, assert_success, locked_hashes, World};

const PROVIDERS: [(&str, &str, &str); 3] = [
    ("hashicorp", "alpha", "1.2.0"),
    ("acme", "beta", "~> 2.0"),
    ("subkeyns", "gamma", "0.1.0"),
];

fn three_providers() -> Vec<ProviderSpec> {
    vec![
        ProviderSpec::new("hashicorp", "alpha", &["1.1.0", "1.2.0"]),
        ProviderSpec::new("acme", "beta", &["2.0.0", "2.1.0"]),
        ProviderSpec::new("subkeyns", "gamma", &["0.1.0"]),
    ]
}

fn is_zip_download(path: &str) -> bool {
    path.starts_with("/files/") && path.ends_with(".zip")
}

#[test]
fn cold_then_warm_then_offline_init() {
    let world = World::new(three_providers());

    // 1. Cold: everything comes from upstream, through tfmirror.
    let cold = world.workdir("cold", &PROVIDERS);
    assert_success(&world.init(&cold), "cold init");
    for (namespace, name, _) in PROVIDERS {
        let hashes = locked_hashes(&cold, namespace, name);
        let zh = hashes.iter().filter(|h| h.starts_with("zh:")).count();
        assert_eq!(
            zh, 3,
            "{namespace}/{name}: one zh: per platform upstream offers: {hashes:?}"
        );
        assert!(hashes.iter().any(|h| h.starts_with("h1:")), "{hashes:?}");
    }
    let zips: Vec<_> = world
        .artifact_files()
        .into_iter()
        .filter(|f| f.starts_with("providers/"))
        .collect();
    assert_eq!(
        zips,
        [
            "providers/registry.terraform.io/acme/beta/terraform-provider-beta_2.1.0_linux_amd64.zip",
            "providers/registry.terraform.io/hashicorp/alpha/terraform-provider-alpha_1.2.0_linux_amd64.zip",
            "providers/registry.terraform.io/subkeyns/gamma/terraform-provider-gamma_0.1.0_linux_amd64.zip",
        ],
        "zips stored in the packed filesystem_mirror layout"
    );
    let cached = std::fs::read(world.cache_dir().join(&zips[1])).unwrap();
    assert_eq!(
        cached,
        world
            .registry
            .zip_bytes("hashicorp", "alpha", "1.2.0", "linux", "amd64")
    );
    assert_eq!(
        world.registry.count(|r| is_zip_download(&r.path)),
        3,
        "{:#?}",
        world.registry.requests()
    );

    // 2. Warm, in a fresh working directory: no artifact bytes from upstream.
    world.registry.clear_requests();
    let warm = world.workdir("warm", &PROVIDERS);
    assert_success(&world.init(&warm), "warm init");
    assert_eq!(
        world.registry.artifact_requests(),
        0,
        "zips, SHA256SUMS and signatures all came from the cache: {:?}",
        world.registry.requests()
    );
    assert_eq!(
        std::fs::read_to_string(warm.join(".terraform.lock.hcl")).unwrap(),
        std::fs::read_to_string(cold.join(".terraform.lock.hcl")).unwrap(),
        "the warm init records the same hashes"
    );

    // 3. Upstream switched off: still works from the cache alone.
    world.registry.stop();
    let offline = world.workdir("offline", &PROVIDERS);
    assert_success(&world.init(&offline), "offline init");
}

/// Each broken artifact fails the init with a message that says what was
/// wrong, and leaves nothing of that provider in the cache.
#[test]
fn broken_artifacts_fail_init_and_cache_nothing() {
    let world = World::new(vec![
        ProviderSpec::new("acme", "tampered", &["1.0.0"]),
        ProviderSpec::new("acme", "badsig", &["1.0.0"]),
        ProviderSpec::new("acme", "truncated", &["1.0.0"]).with_extra_bytes(3 << 20),
    ]);
    world
        .registry
        .set_fault("acme", "tampered", Fault::TamperedZip);
    world
        .registry
        .set_fault("acme", "badsig", Fault::BadSignature);
    world
        .registry
        .set_fault("acme", "truncated", Fault::TruncatedZip);
    let cases = [
        ("tampered", "does not match"),
        ("badsig", "signature"),
        ("truncated", "broke off"),
    ];
    for (name, reason) in cases {
        let dir = world.workdir(name, &[("acme", name, "1.0.0")]);
        let output = world.init(&dir);
        let text = assert_failure(&output, &format!("init with a {name} provider"));
        assert!(
            text.contains(&format!("refusing registry.terraform.io/acme/{name} 1.0.0"))
                && text.contains(reason),
            "{name}: tfmirror says why it refused ({reason:?}):\n{text}"
        );
        let left: Vec<_> = world
            .cache_files()
            .into_iter()
            .filter(|f| {
                f.contains(&format!("/{name}/")) && f.ends_with(".zip") || f.contains(".tmp-")
            })
            .collect();
        assert!(
            left.is_empty(),
            "{name}: nothing cached, yet found {left:?}"
        );
    }
    assert!(
        !world.cache_files().iter().any(|f| f.contains("/badsig/")),
        "unverified checksums are not stored: {:?}",
        world.cache_files()
    );
}

#[test]
fn registry_token_reaches_upstream_and_never_the_disk() {
    let world = World::new(vec![ProviderSpec::new("hashicorp", "alpha", &["1.2.0"])]);
    let dir = world.workdir("token", &[("hashicorp", "alpha", "1.2.0")]);
    let token = "s3cr3t-t0ken-for-tests";
    let output = world.init_with_env(&dir, &[("TF_TOKEN_registry_terraform_io", token)]);
    assert_success(&output, "init with a token");
    let requests = world.registry.requests();
    let api: Vec<_> = requests
        .iter()
        .filter(|r| r.path.starts_with("/v1/providers/"))
        .collect();
    assert!(!api.is_empty());
    for request in &api {
        assert_eq!(
            request.authorization.as_deref(),
            Some(&*format!("Bearer {token}")),
            "{request:?}"
        );
    }
    for request in requests.iter().filter(|r| r.path.starts_with("/files/")) {
        assert_eq!(
            request.authorization, None,
            "downloads carry no registry token: {request:?}"
        );
    }
    assert!(
        requests.iter().any(|r| r
            .user_agent
            .as_deref()
            .is_some_and(|ua| ua.starts_with("Terraform/"))),
        "Terraform's User-Agent is forwarded"
    );
    for file in world.cache_files() {
        let bytes = std::fs::read(world.cache_dir().join(&file)).unwrap_or_default();
        assert!(
            !bytes.windows(token.len()).any(|w| w == token.as_bytes()),
            "the token was written to {file}"
        );
    }
}

#[test]
fn losing_the_index_costs_no_zip_download() {
    let world = World::new(vec![ProviderSpec::new("hashicorp", "alpha", &["1.2.0"])]);
    let providers = [("hashicorp", "alpha", "1.2.0")];
    assert_success(
        &world.init(&world.workdir("first", &providers)),
        "first init",
    );
    let index = world.cache_dir().join("index");

    world.stop_server();
    std::fs::remove_dir_all(&index).unwrap();
    world.registry.clear_requests();
    assert_success(
        &world.init(&world.workdir("deleted", &providers)),
        "init after deleting the index",
    );
    assert_eq!(
        world.registry.count(|r| is_zip_download(&r.path)),
        0,
        "{:?}",
        world.registry.requests()
    );

    world.stop_server();
    for entry in std::fs::read_dir(&index).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            std::fs::write(&path, b"\x00\xffthis is not a sled database\xfe").unwrap();
        }
    }
    world.registry.clear_requests();
    let output = world.init(&world.workdir("garbage", &providers));
    assert_success(&output, "init after overwriting the index with garbage");
    assert_eq!(
        world.registry.count(|r| is_zip_download(&r.path)),
        0,
        "{:?}",
        world.registry.requests()
    );
    assert!(
        world.cache_dir().join("index.broken").is_dir(),
        "the broken index was moved aside"
    );
}

/// The user's own CLI config keeps working under `exec`: its credentials
/// reach the upstream, and its host block for the proxied registry is
/// replaced with a one-line notice.
#[test]
fn user_cli_config_is_kept_and_its_overrides_announced() {
    let world = World::new(vec![ProviderSpec::new("hashicorp", "alpha", &["1.2.0"])]);
    std::fs::write(
        world.home().join(".terraformrc"),
        r#"
credentials "registry.terraform.io" {
  token = "token-from-terraformrc"
}
host "registry.terraform.io" {
  services = {
    "providers.v1" = "http://127.0.0.1:1/nowhere/"
  }
}
disable_checkpoint = true
"#,
    )
    .unwrap();
    let dir = world.workdir("rc", &[("hashicorp", "alpha", "1.2.0")]);
    let output = world.init(&dir);
    assert_success(&output, "init with a user CLI config");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let notices: Vec<_> = stderr
        .lines()
        .filter(|l| l.contains("registry.terraform.io"))
        .collect();
    assert_eq!(
        notices.len(),
        1,
        "one line names the overridden host block:\n{stderr}"
    );
    let versions = world.registry.requests();
    let versions = versions
        .iter()
        .find(|r| r.path.ends_with("/versions"))
        .unwrap();
    assert_eq!(
        versions.authorization.as_deref(),
        Some("Bearer token-from-terraformrc")
    );
}
