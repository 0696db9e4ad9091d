//! `tfmirror serve` driven over plain HTTP: path validation, metadata
//! freshness, the answers Terraform reads, and a clean shutdown.

use std::time::{Duration, Instant};

use crate::fixtures::http::{get, raw_request};
use crate::fixtures::ProviderSpec;
use crate::harness::World;

const VERSIONS: &str = "/v1/providers/registry.terraform.io/hashicorp/alpha/versions";

fn alpha() -> Vec<ProviderSpec> {
    vec![ProviderSpec::new("hashicorp", "alpha", &["1.2.0"])]
}

#[test]
fn path_tricks_get_400_and_touch_nothing() {
    let world = World::new(alpha());
    let server = world.serve();
    let before = world.cache_files();
    let long = "a".repeat(300);
    let tricks = [
        "/v1/providers/registry.terraform.io/../../../etc/versions".to_owned(),
        "/v1/providers/registry.terraform.io/hashicorp/../versions".to_owned(),
        "/v1/providers/registry.terraform.io/%2e%2e/alpha/versions".to_owned(),
        "/v1/providers/registry.terraform.io/hashicorp/%2E%2E%2F%2E%2E/versions".to_owned(),
        "/v1/providers/registry.terraform.io/hashi%2fcorp/alpha/versions".to_owned(),
        "/v1/providers/registry.terraform.io/hashicorp/alpha%00/versions".to_owned(),
        "/v1/providers/registry.terraform.io/hashicorp/alpha/1.2.0%00/download/linux/amd64"
            .to_owned(),
        "/v1/providers/registry.terraform.io/hashicorp/alpha/1.2.0/package/..%2f..%2f/amd64"
            .to_owned(),
        format!("/v1/providers/registry.terraform.io/hashicorp/{long}/versions"),
        format!("/v1/providers/registry.terraform.io/hashicorp/alpha/1.2.0/download/linux/{long}"),
    ];
    for path in &tricks {
        let response = raw_request(
            server.addr(),
            &format!(
                "GET /{}{path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
                server.secret,
                server.addr()
            ),
        );
        assert_eq!(response.status, 400, "{path}: {}", response.text());
    }
    assert_eq!(
        world.cache_files(),
        before,
        "no file was created or touched"
    );
    assert!(
        world.registry.requests().is_empty(),
        "{:?}",
        world.registry.requests()
    );
}

#[test]
fn serve_announces_itself_and_cleans_up_on_sigterm() {
    let world = World::new(alpha());
    let mut server = world.serve();
    let info: serde_json::Value =
        serde_json::from_slice(&std::fs::read(world.cache_dir().join("server.json")).unwrap())
            .unwrap();
    assert_eq!(info["url"], server.address.as_str());
    assert_eq!(info["secret"], server.secret.as_str());
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(world.cache_dir().join("server.json"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "only the owner reads the secret");
    assert_eq!(info["pid"], server.child.id());
    let health = get(&format!("{}/_tfmirror/health", server.url)).json();
    assert_eq!(health["status"], "ok");
    assert!(server.stop(), "serve exits cleanly on SIGTERM");
    assert!(!world.cache_dir().join("server.json").exists());
}

#[test]
fn unknown_providers_pass_through_as_404() {
    let world = World::new(alpha());
    let server = world.serve();
    let response = get(&format!(
        "{}/v1/providers/registry.terraform.io/hashicorp/nope/versions",
        server.url
    ));
    assert_eq!(response.status, 404);
    let response = get(&format!(
        "{}/v1/providers/example.com/hashicorp/alpha/versions",
        server.url
    ));
    assert_eq!(
        response.status, 404,
        "hosts that are not proxied are not fetched"
    );
}

#[test]
fn version_lists_are_fresh_then_stale_then_served_through_failures() {
    let world = World::with_config(
        alpha(),
        "metadata_ttl = \"1s\"\nstale_while_revalidate = \"1s\"",
    );
    let server = world.serve();
    let url = format!("{}{VERSIONS}", server.url);
    let upstream_lists = || world.registry.count(|r| r.path.ends_with("/versions"));

    assert_eq!(get(&url).status, 200);
    assert_eq!(get(&url).status, 200);
    assert_eq!(upstream_lists(), 1, "a fresh list is served from the cache");

    // Stale within the window: served at once, refreshed in the background.
    std::thread::sleep(Duration::from_millis(1100));
    world
        .registry
        .publish_version("hashicorp", "alpha", "1.3.0");
    let stale = get(&url).json();
    assert!(
        !stale.to_string().contains("1.3.0"),
        "the stale copy is served first"
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(upstream_lists(), 2, "one background refresh");
    assert!(
        get(&url).json().to_string().contains("1.3.0"),
        "the refresh was stored"
    );

    // Past the window, with the upstream failing: stale, whatever the age.
    std::thread::sleep(Duration::from_millis(2100));
    world.registry.set_api_status(Some(503));
    let response = get(&url);
    assert_eq!(response.status, 200);
    assert!(
        response
            .header("Warning")
            .is_some_and(|w| w.starts_with("111")),
        "{:?}",
        response.headers
    );
    assert!(response.text().contains("1.3.0"));

    // A slow upstream does not hold a cached answer past Terraform's timeout.
    world.registry.set_api_status(None);
    world.registry.set_api_delay(Some(Duration::from_secs(8)));
    std::thread::sleep(Duration::from_millis(2100));
    let started = Instant::now();
    let response = get(&url);
    assert_eq!(response.status, 200);
    assert!(
        started.elapsed() < Duration::from_secs(7),
        "answered in {:?}",
        started.elapsed()
    );
}

#[test]
fn download_answer_points_at_tfmirror() {
    let world = World::new(alpha());
    let server = world.serve();
    let response = get(&format!(
        "{}/v1/providers/registry.terraform.io/hashicorp/alpha/1.2.0/download/linux/amd64",
        server.url
    ));
    assert_eq!(response.status, 200);
    assert_eq!(response.header("Content-Type"), Some("application/json"));
    let mut answer = response.json();
    // The key block and the zip's hash are checked here rather than
    // snapshotted: they change with the fixture, not with tfmirror.
    let keys = answer["signing_keys"]["gpg_public_keys"][0]["ascii_armor"].take();
    assert!(keys
        .as_str()
        .unwrap()
        .starts_with("-----BEGIN PGP PUBLIC KEY BLOCK-----"));
    let zip = world
        .registry
        .zip_bytes("hashicorp", "alpha", "1.2.0", "linux", "amd64");
    assert_eq!(
        answer["shasum"].take(),
        crate::fixtures::provider_zip::sha256_hex(&zip).as_str()
    );
    let text = serde_json::to_string_pretty(&answer)
        .unwrap()
        .replace(&server.url, "http://127.0.0.1:PORT");
    insta::assert_snapshot!("download_answer", text);
}

#[test]
fn rc_prints_the_cli_config_for_the_running_server() {
    let world = World::new(alpha());
    let output = world.tfmirror(&["rc"]).output().unwrap();
    assert_eq!(output.status.code(), Some(1), "no server runs yet");
    assert!(String::from_utf8_lossy(&output.stderr).contains("no server is running"));

    let server = world.serve();
    let output = world.tfmirror(&["rc"]).output().unwrap();
    assert!(output.status.success());
    let text = String::from_utf8(output.stdout)
        .unwrap()
        .replace(&server.url, "http://127.0.0.1:PORT");
    insta::assert_snapshot!("rc", text);
}
