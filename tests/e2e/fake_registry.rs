//! Smoke tests of the fake upstream registry itself, so that a failing end-to-end test points at
//! the proxy and not at its fixture.

use std::io::{BufReader, Cursor, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::fixtures::http::{get, get_with, raw_request, read_response};
use crate::fixtures::provider_zip::sha256_hex;
use crate::fixtures::signing::{verifies, TestKey};
use crate::fixtures::{FakeRegistry, Fault, ProviderSpec};
use serde_json::Value;

fn registry() -> FakeRegistry {
    FakeRegistry::start(vec![
        ProviderSpec::new("hashicorp", "demo", &["1.0.0", "1.1.0"]),
        ProviderSpec::new("subkeyns", "sub", &["2.0.0"]),
    ])
}

/// The registry hands out relative and absolute URLs; resolve like Terraform does.
fn absolute(reg: &FakeRegistry, url: &str) -> String {
    if url.starts_with("http://") {
        url.to_string()
    } else {
        format!("http://{}{url}", reg.addr())
    }
}

fn download(reg: &FakeRegistry, provider: &str, version: &str, platform: &str) -> Value {
    let platform = platform.replace('_', "/");
    let url = format!(
        "{}v1/providers/{provider}/{version}/download/{platform}",
        reg.url()
    );
    let answer = get(&url);
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.header("content-type"), Some("application/json"));
    answer.json()
}

fn fetch(reg: &FakeRegistry, url: &Value) -> Vec<u8> {
    let answer = get(&absolute(reg, url.as_str().expect("URL string")));
    assert_eq!(answer.status, 200, "{url}");
    answer.body
}

#[test]
fn discovery_and_versions() {
    let reg = registry();
    let discovery = get(&format!("{}.well-known/terraform.json", reg.url()));
    assert_eq!(discovery.header("content-type"), Some("application/json"));
    assert_eq!(discovery.json()["providers.v1"], "/v1/providers/");
    assert_eq!(discovery.json()["modules.v1"], "/v1/modules/");

    let versions = get(&format!(
        "{}v1/providers/hashicorp/demo/versions",
        reg.url()
    ))
    .json();
    assert_eq!(versions["id"], "hashicorp/demo");
    assert_eq!(versions["warnings"], Value::Null);
    let list = versions["versions"].as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0]["version"], "1.0.0");
    assert_eq!(list[0]["protocols"][0], "5.0");
    assert_eq!(list[0]["platforms"].as_array().unwrap().len(), 3);
    assert_eq!(list[0]["platforms"][0]["os"], "linux");

    let missing = get(&format!(
        "{}v1/providers/nobody/nothing/versions",
        reg.url()
    ));
    assert_eq!(missing.status, 404);
    assert_eq!(missing.json()["errors"][0], "Not Found");

    reg.publish_version("hashicorp", "demo", "1.2.0");
    let versions = get(&format!(
        "{}v1/providers/hashicorp/demo/versions",
        reg.url()
    ))
    .json();
    assert_eq!(versions["versions"][2]["version"], "1.2.0");
    download(&reg, "hashicorp/demo", "1.2.0", "linux_amd64");
}

#[test]
fn download_answer_sums_signature_and_zip_agree() {
    let reg = registry();
    for (provider, version, key) in [
        ("hashicorp/demo", "1.0.0", TestKey::Signing),
        ("subkeyns/sub", "2.0.0", TestKey::Subkey),
    ] {
        let (ns, name) = provider.split_once('/').unwrap();
        let answer = download(&reg, provider, version, "darwin_arm64");
        let filename = format!("terraform-provider-{name}_{version}_darwin_arm64.zip");
        assert_eq!(answer["filename"], filename.as_str());
        assert_eq!(answer["os"], "darwin");
        assert_eq!(answer["arch"], "arm64");
        assert_eq!(answer["protocols"][0], "5.0");
        assert!(answer["download_url"]
            .as_str()
            .unwrap()
            .starts_with("/files/"));
        assert!(answer["shasums_signature_url"]
            .as_str()
            .unwrap()
            .starts_with("/files/"));
        assert!(answer["shasums_url"]
            .as_str()
            .unwrap()
            .starts_with(&reg.url()));
        let gpg = &answer["signing_keys"]["gpg_public_keys"][0];
        assert_eq!(gpg["key_id"], key.key_id().as_str());
        assert_eq!(gpg["key_id"].as_str().unwrap().len(), 16);
        assert_eq!(gpg["ascii_armor"], key.public_armor());

        let zip = fetch(&reg, &answer["download_url"]);
        let sums = fetch(&reg, &answer["shasums_url"]);
        let sig = fetch(&reg, &answer["shasums_signature_url"]);
        assert_eq!(zip, reg.zip_bytes(ns, name, version, "darwin", "arm64"));
        assert_eq!(sha256_hex(&zip), answer["shasum"].as_str().unwrap());

        let sums = String::from_utf8(sums).unwrap();
        let lines: Vec<&str> = sums.lines().collect();
        assert_eq!(lines.len(), 3, "{sums}");
        assert!(lines.is_sorted(), "{sums}");
        assert!(sums.ends_with(".zip\n") && !sums.contains("\n\n"));
        assert!(lines.contains(&format!("{}  {filename}", sha256_hex(&zip)).as_str()));

        let armor = gpg["ascii_armor"].as_str().unwrap();
        assert!(verifies(armor, sums.as_bytes(), &sig), "{provider}");
        assert!(!verifies(
            TestKey::Other.public_armor(),
            sums.as_bytes(),
            &sig
        ));

        let mut archive = zip::ZipArchive::new(Cursor::new(&zip)).unwrap();
        assert_eq!(archive.len(), 1);
        let mut entry = archive.by_index(0).unwrap();
        assert_eq!(
            entry.name(),
            format!("terraform-provider-{name}_v{version}")
        );
        assert_eq!(entry.unix_mode().map(|m| m & 0o777), Some(0o755));
        let mut script = String::new();
        entry.read_to_string(&mut script).unwrap();
        let expected = format!("#!/bin/sh\necho fake provider {provider} {version} darwin_arm64\n");
        assert_eq!(script, expected);
    }
    // Deterministic: another registry builds the very same bytes.
    let other = registry();
    let zip = reg.zip_bytes("hashicorp", "demo", "1.0.0", "linux", "amd64");
    assert_eq!(
        zip,
        other.zip_bytes("hashicorp", "demo", "1.0.0", "linux", "amd64")
    );
}

#[test]
fn extra_bytes_pad_the_zip_incompressibly() {
    const EXTRA: usize = 4 << 20;
    let spec = ProviderSpec::new("big", "fat", &["1.0.0"])
        .with_platforms(&[("linux", "amd64")])
        .with_extra_bytes(EXTRA);
    let reg = FakeRegistry::start(vec![spec]);
    let answer = download(&reg, "big/fat", "1.0.0", "linux_amd64");
    let zip = fetch(&reg, &answer["download_url"]);
    assert!(zip.len() > EXTRA, "{}", zip.len());
    assert_eq!(answer["shasum"].as_str().unwrap(), sha256_hex(&zip));
    let archive = zip::ZipArchive::new(Cursor::new(&zip)).unwrap();
    assert_eq!(archive.len(), 2);

    // A big truncated body still delivers exactly its first half before the connection drops.
    reg.set_fault("big", "fat", Fault::TruncatedZip);
    let truncated = get(&absolute(&reg, answer["download_url"].as_str().unwrap()));
    assert_eq!(truncated.body, zip[..zip.len() / 2]);
}

#[test]
fn faults_spoil_artifacts_but_not_the_api() {
    let reg = registry();
    let genuine = reg.zip_bytes("hashicorp", "demo", "1.0.0", "linux", "amd64");
    let answer = download(&reg, "hashicorp/demo", "1.0.0", "linux_amd64");
    let armor = answer["signing_keys"]["gpg_public_keys"][0]["ascii_armor"]
        .as_str()
        .unwrap();

    reg.set_fault("hashicorp", "demo", Fault::TamperedZip);
    let tampered = fetch(&reg, &answer["download_url"]);
    assert_eq!(tampered.len(), genuine.len());
    let differing = tampered
        .iter()
        .zip(&genuine)
        .filter(|(a, b)| a != b)
        .count();
    assert_eq!(differing, 1);
    let again = download(&reg, "hashicorp/demo", "1.0.0", "linux_amd64");
    assert_eq!(again["shasum"].as_str().unwrap(), sha256_hex(&genuine));

    reg.set_fault("hashicorp", "demo", Fault::BadSignature);
    let sums = fetch(&reg, &answer["shasums_url"]);
    let sig = fetch(&reg, &answer["shasums_signature_url"]);
    assert!(!verifies(armor, &sums, &sig));
    assert!(verifies(TestKey::Other.public_armor(), &sums, &sig));
    assert_eq!(fetch(&reg, &answer["download_url"]), genuine);

    reg.set_fault("hashicorp", "demo", Fault::TruncatedZip);
    let truncated = get(&absolute(&reg, answer["download_url"].as_str().unwrap()));
    assert_eq!(truncated.status, 200);
    assert_eq!(
        truncated.header("content-length"),
        Some(genuine.len().to_string().as_str())
    );
    assert_eq!(truncated.body, genuine[..genuine.len() / 2]);

    reg.set_fault("hashicorp", "demo", Fault::None);
    assert_eq!(fetch(&reg, &answer["download_url"]), genuine);
    let sig = fetch(&reg, &answer["shasums_signature_url"]);
    assert!(verifies(armor, &sums, &sig));
}

#[test]
fn api_status_and_delay_apply_to_v1_only() {
    let reg = registry();
    let versions = format!("{}v1/providers/hashicorp/demo/versions", reg.url());
    let answer = download(&reg, "hashicorp/demo", "1.0.0", "linux_amd64");

    reg.set_api_status(Some(503));
    assert_eq!(get(&versions).status, 503);
    assert_eq!(
        get(&format!("{}.well-known/terraform.json", reg.url())).status,
        200
    );
    fetch(&reg, &answer["download_url"]);
    reg.set_api_status(None);
    assert_eq!(get(&versions).status, 200);

    reg.set_api_delay(Some(Duration::from_millis(300)));
    let started = Instant::now();
    assert_eq!(get(&versions).status, 200);
    assert!(started.elapsed() >= Duration::from_millis(300));
    let started = Instant::now();
    fetch(&reg, &answer["download_url"]);
    assert!(started.elapsed() < Duration::from_millis(300));
}

#[test]
fn requests_are_recorded_as_received() {
    let reg = registry();
    let versions = format!("{}v1/providers/hashicorp/demo/versions", reg.url());
    get_with(
        &versions,
        &[
            ("Authorization", "Bearer s3cret"),
            ("User-Agent", "Terraform/1.11.0"),
        ],
    );
    let raw = raw_request(
        reg.addr(),
        "GET /v1/../x?a=%00 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(raw.status, 404);
    let answer = download(&reg, "hashicorp/demo", "1.0.0", "linux_amd64");
    fetch(&reg, &answer["download_url"]);
    fetch(&reg, &answer["shasums_url"]);

    let requests = reg.requests();
    assert_eq!(requests.len(), 5);
    assert_eq!(requests[0].method, "GET");
    assert_eq!(requests[0].path, "/v1/providers/hashicorp/demo/versions");
    assert_eq!(requests[0].authorization.as_deref(), Some("Bearer s3cret"));
    assert_eq!(requests[0].user_agent.as_deref(), Some("Terraform/1.11.0"));
    assert_eq!(requests[1].path, "/v1/../x?a=%00");
    assert_eq!(requests[1].authorization, None);
    assert_eq!(reg.artifact_requests(), 2);
    assert_eq!(reg.count(|r| r.path.contains("/download/")), 1);
    reg.clear_requests();
    assert!(reg.requests().is_empty());
}

#[test]
fn stop_refuses_new_connections_and_drops_open_ones() {
    let reg = registry();
    let mut kept_alive = TcpStream::connect(reg.addr()).unwrap();
    kept_alive
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    kept_alive
        .write_all(b"GET /.well-known/terraform.json HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut reader = BufReader::new(kept_alive);
    assert_eq!(read_response(&mut reader, false).status, 200);

    reg.stop();
    let err = TcpStream::connect(reg.addr()).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
    assert!(
        std::net::TcpListener::bind(reg.addr()).is_err(),
        "no other server is given the stopped upstream's port"
    );
    let mut rest = Vec::new();
    match reader.read_to_end(&mut rest) {
        Ok(n) => assert_eq!(n, 0, "the kept-alive connection is closed"),
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
    }
    reg.stop(); // idempotent, and Drop will call it again
}

#[test]
fn a_private_namespace_needs_its_token_for_the_api_only() {
    let reg = registry();
    reg.require_token("hashicorp", "t0ken");
    let versions = format!("{}v1/providers/hashicorp/demo/versions", reg.url());
    assert_eq!(get(&versions).status, 401);
    let wrong = get_with(&versions, &[("Authorization", "Bearer other")]);
    assert_eq!(wrong.status, 403);
    let right = get_with(&versions, &[("Authorization", "Bearer t0ken")]);
    assert_eq!(right.status, 200);
    let public = format!("{}v1/providers/subkeyns/sub/versions", reg.url());
    assert_eq!(get(&public).status, 200, "other namespaces stay public");
    let sums = format!(
        "{}files/hashicorp/demo/1.0.0/terraform-provider-demo_1.0.0_SHA256SUMS",
        reg.url()
    );
    assert_eq!(get(&sums).status, 200, "artifacts need no token");
}
