//! Smoke tests of the fake registry's module half (`/v1/modules/`, `/archives/`), so that a
//! failing end-to-end module test points at the proxy and not at its fixture.

use std::io::{Cursor, Read};
use std::time::{Duration, Instant};

use crate::fixtures::http::{get, get_with, raw_request, RawResponse};
use crate::fixtures::module_archive::{
    readme, root_main_tf, sub_main_tf, ARCHIVE_MTIME, ESCAPE_ENTRY,
};
use crate::fixtures::{AnswerForm, ArchiveKind, FakeRegistry, ModuleFault, ModuleSpec};
use serde_json::Value;

fn registry() -> FakeRegistry {
    FakeRegistry::start_with(
        Vec::new(),
        vec![
            ModuleSpec::new("acme", "net", "aws", &["1.0.0", "1.1.0"]),
            ModuleSpec::new("acme", "zipped", "aws", &["2.0.0"])
                .with_answer(AnswerForm::Json200)
                .with_archive(ArchiveKind::Zip)
                .with_absolute_location(),
            ModuleSpec::new("acme", "query", "aws", &["3.0.0"])
                .with_archive(ArchiveKind::ZipByQuery)
                .with_subdir("modules/sub"),
            ModuleSpec::new("acme", "sub", "aws", &["4.0.0"]).with_subdir("modules/sub"),
        ],
    )
}

/// `GET /v1/modules/<module>/<version>/download`, the location from either answer form.
fn location(reg: &FakeRegistry, module: &str, version: &str) -> String {
    let answer = get(&format!(
        "{}v1/modules/{module}/{version}/download",
        reg.url()
    ));
    match answer.status {
        204 => {
            assert!(answer.body.is_empty());
            answer
                .header("x-terraform-get")
                .expect("X-Terraform-Get")
                .to_string()
        }
        200 => {
            assert_eq!(answer.header("content-type"), Some("application/json"));
            assert_eq!(answer.header("x-terraform-get"), None);
            answer.json()["location"]
                .as_str()
                .expect("location")
                .to_string()
        }
        status => panic!("download answer {status}: {}", answer.text()),
    }
}

/// GET of a path (and query) on the fake server.
fn fetch(reg: &FakeRegistry, path: &str) -> RawResponse {
    get(&format!("http://{}{path}", reg.addr()))
}

fn head(reg: &FakeRegistry, path: &str) -> RawResponse {
    raw_request(
        reg.addr(),
        &format!("HEAD {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
    )
}

/// `(name as raw bytes, 'd' or 'f', mode, mtime, contents)` in archive order.
fn tar_entries(tar_gz: &[u8]) -> Vec<(String, char, u32, u64, String)> {
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(tar_gz));
    archive
        .entries()
        .unwrap()
        .map(|entry| {
            let mut entry = entry.unwrap();
            let name = String::from_utf8(entry.path_bytes().into_owned()).unwrap();
            let header = entry.header();
            let kind = if header.entry_type().is_dir() {
                'd'
            } else {
                'f'
            };
            let (mode, mtime) = (header.mode().unwrap(), header.mtime().unwrap());
            let mut contents = String::new();
            entry.read_to_string(&mut contents).unwrap();
            (name, kind, mode, mtime, contents)
        })
        .collect()
}

/// `(name, mode, contents)` in archive order.
fn zip_entries(zip: &[u8]) -> Vec<(String, u32, String)> {
    let mut archive = zip::ZipArchive::new(Cursor::new(zip)).unwrap();
    (0..archive.len())
        .map(|i| {
            let mut entry = archive.by_index(i).unwrap();
            let mode = entry.unix_mode().unwrap() & 0o777;
            let mut contents = String::new();
            entry.read_to_string(&mut contents).unwrap();
            (entry.name().to_string(), mode, contents)
        })
        .collect()
}

fn names<T>(entries: &[T], name: impl Fn(&T) -> &str) -> Vec<&str> {
    entries.iter().map(name).collect()
}

#[test]
fn versions_list_and_publish() {
    let reg = registry();
    let versions = get(&format!("{}v1/modules/acme/net/aws/versions", reg.url()));
    assert_eq!(versions.status, 200);
    assert_eq!(versions.header("content-type"), Some("application/json"));
    let json = versions.json();
    assert_eq!(json["modules"].as_array().unwrap().len(), 1);
    assert_eq!(json["modules"][0]["source"], "acme/net/aws");
    let list = json["modules"][0]["versions"].as_array().unwrap();
    let numbers: Vec<&str> = list
        .iter()
        .map(|v| v["version"].as_str().unwrap())
        .collect();
    assert_eq!(numbers, ["1.0.0", "1.1.0"]);
    assert!(list[0]["root"].is_object());
    assert_eq!(list[0]["submodules"], Value::Array(Vec::new()));

    for missing in ["acme/net/gcp/versions", "nobody/net/aws/versions"] {
        let answer = get(&format!("{}v1/modules/{missing}", reg.url()));
        assert_eq!(answer.status, 404);
        assert_eq!(answer.json()["errors"][0], "Not Found");
    }

    reg.publish_module_version("acme", "net", "aws", "1.2.0");
    reg.publish_module_version("acme", "net", "aws", "1.2.0"); // idempotent
    reg.publish_module_version("fresh", "mod", "null", "0.1.0");
    let json = get(&format!("{}v1/modules/acme/net/aws/versions", reg.url())).json();
    let list = json["modules"][0]["versions"].as_array().unwrap();
    assert_eq!(list.len(), 3);
    assert_eq!(list[2]["version"], "1.2.0");
    let path = reg.module_archive_path("acme", "net", "aws", "1.2.0");
    assert_eq!(location(&reg, "acme/net/aws", "1.2.0"), path);
    let fresh = reg.module_archive_path("fresh", "mod", "null", "0.1.0");
    assert_eq!(location(&reg, "fresh/mod/null", "0.1.0"), fresh);
    assert!(fresh.ends_with(".tar.gz"), "{fresh}");
    assert_eq!(
        fetch(&reg, &fresh).body,
        reg.module_archive_bytes("fresh", "mod", "null", "0.1.0")
    );
}

#[test]
fn download_answers_in_both_forms_relative_and_absolute() {
    let reg = registry();
    let header = get(&format!(
        "{}v1/modules/acme/net/aws/1.0.0/download",
        reg.url()
    ));
    assert_eq!(header.status, 204);
    assert_eq!(header.header("content-length"), None);
    let path = reg.module_archive_path("acme", "net", "aws", "1.0.0");
    assert_eq!(
        path,
        "/archives/acme/net/aws/1.0.0/acme-net-aws-1.0.0.tar.gz"
    );
    assert_eq!(header.header("x-terraform-get"), Some(path.as_str()));

    let zip_path = reg.module_archive_path("acme", "zipped", "aws", "2.0.0");
    assert_eq!(
        zip_path,
        "/archives/acme/zipped/aws/2.0.0/acme-zipped-aws-2.0.0.zip"
    );
    let absolute = location(&reg, "acme/zipped/aws", "2.0.0");
    assert_eq!(absolute, format!("http://{}{zip_path}", reg.addr()));
    assert_eq!(
        get(&absolute).body,
        reg.module_archive_bytes("acme", "zipped", "aws", "2.0.0")
    );

    for missing in ["acme/net/aws/9.9.9", "acme/net/gcp/1.0.0"] {
        let answer = get(&format!("{}v1/modules/{missing}/download", reg.url()));
        assert_eq!(answer.status, 404);
        assert_eq!(answer.json()["errors"][0], "Not Found");
    }
    assert_eq!(
        fetch(&reg, "/archives/acme/net/aws/9.9.9/x.tar.gz").status,
        404
    );
    // The other extension, or a `//subdir` a client forgot to strip, is not the archive.
    assert_eq!(fetch(&reg, &path.replace(".tar.gz", ".zip")).status, 404);
    assert_eq!(fetch(&reg, &format!("{path}//modules/sub")).status, 404);

    assert_eq!(reg.module_location_requests(), 4);
    assert_eq!(reg.module_archive_requests(), 4);
}

#[test]
fn subdir_goes_before_the_archive_query() {
    let reg = registry();
    let path = reg.module_archive_path("acme", "sub", "aws", "4.0.0");
    assert_eq!(
        location(&reg, "acme/sub/aws", "4.0.0"),
        format!("{path}//modules/sub")
    );

    let query_path = reg.module_archive_path("acme", "query", "aws", "3.0.0");
    assert_eq!(
        query_path,
        "/archives/acme/query/aws/3.0.0/download?archive=zip"
    );
    assert_eq!(
        location(&reg, "acme/query/aws", "3.0.0"),
        "/archives/acme/query/aws/3.0.0/download//modules/sub?archive=zip"
    );

    reg.stop();
    let reg = FakeRegistry::start_with(
        Vec::new(),
        vec![ModuleSpec::new("acme", "query", "aws", &["3.0.0"])
            .with_answer(AnswerForm::Json200)
            .with_archive(ArchiveKind::ZipByQuery)
            .with_subdir("modules/sub")
            .with_absolute_location()],
    );
    assert_eq!(
        location(&reg, "acme/query/aws", "3.0.0"),
        format!(
            "http://{}/archives/acme/query/aws/3.0.0/download//modules/sub?archive=zip",
            reg.addr()
        )
    );

    // go-getter drops the magic `archive` parameter before fetching: both forms are served.
    let genuine = reg.module_archive_bytes("acme", "query", "aws", "3.0.0");
    let with_query = fetch(&reg, &query_path);
    assert_eq!(with_query.header("content-type"), Some("application/zip"));
    assert_eq!(with_query.body, genuine);
    let without = fetch(&reg, query_path.strip_suffix("?archive=zip").unwrap());
    assert_eq!(without.body, genuine);
    assert_eq!(zip_entries(&genuine).len(), 5);
}

#[test]
fn head_answers_the_headers_of_get() {
    let reg = registry();
    let path = reg.module_archive_path("acme", "net", "aws", "1.0.0");
    let genuine = reg.module_archive_bytes("acme", "net", "aws", "1.0.0");
    let length = genuine.len().to_string();

    let headers = head(&reg, &path);
    assert_eq!(headers.status, 200);
    assert_eq!(headers.header("content-type"), Some("application/gzip"));
    assert_eq!(headers.header("content-length"), Some(length.as_str()));
    let got = fetch(&reg, &path);
    assert_eq!(got.header("content-type"), Some("application/gzip"));
    assert_eq!(got.header("content-length"), Some(length.as_str()));
    assert_eq!(got.body, genuine);

    let zip_path = reg.module_archive_path("acme", "zipped", "aws", "2.0.0");
    assert_eq!(
        head(&reg, &zip_path).header("content-type"),
        Some("application/zip")
    );
    assert_eq!(
        head(&reg, "/archives/acme/net/aws/9.9.9/x.tar.gz").status,
        404
    );

    let methods: Vec<(String, String)> = reg
        .requests()
        .into_iter()
        .map(|r| (r.method, r.path))
        .collect();
    assert_eq!(methods[0], ("HEAD".to_string(), path.clone()));
    assert_eq!(methods[1], ("GET".to_string(), path));
    assert_eq!(reg.module_archive_requests(), 1);
}

#[test]
fn tar_gz_layout_is_fixed_and_deterministic() {
    let reg = registry();
    let path = reg.module_archive_path("acme", "net", "aws", "1.1.0");
    let first = fetch(&reg, &path).body;
    assert_eq!(first[..2], [0x1f, 0x8b], "gzip magic");
    assert_eq!(first, fetch(&reg, &path).body);
    assert_eq!(
        first,
        registry().module_archive_bytes("acme", "net", "aws", "1.1.0")
    );
    assert_ne!(
        first,
        reg.module_archive_bytes("acme", "net", "aws", "1.0.0")
    );

    let entries = tar_entries(&first);
    let v = ("acme", "net", "aws", "1.1.0");
    let expected = [
        ("README.md", 'f', 0o644, readme(v.0, v.1, v.2, v.3)),
        ("main.tf", 'f', 0o644, root_main_tf(v.0, v.1, v.2, v.3)),
        ("modules/", 'd', 0o755, String::new()),
        ("modules/sub/", 'd', 0o755, String::new()),
        (
            "modules/sub/main.tf",
            'f',
            0o644,
            sub_main_tf(v.0, v.1, v.2, v.3),
        ),
    ];
    assert_eq!(entries.len(), expected.len(), "{entries:?}");
    for (entry, (name, kind, mode, contents)) in entries.iter().zip(expected) {
        assert_eq!(
            (
                entry.0.as_str(),
                entry.1,
                entry.2,
                entry.3,
                entry.4.as_str()
            ),
            (name, kind, mode, ARCHIVE_MTIME, contents.as_str())
        );
    }
    assert_eq!(
        entries[1].4,
        "output \"id\" {\n  value = \"acme/net/aws 1.1.0 root\"\n}\n"
    );
    assert!(entries[4].4.contains("\"acme/net/aws 1.1.0 sub\""));
}

#[test]
fn zip_layout_is_fixed_and_deterministic() {
    let reg = registry();
    let path = reg.module_archive_path("acme", "zipped", "aws", "2.0.0");
    let first = fetch(&reg, &path).body;
    assert_eq!(first, fetch(&reg, &path).body);
    assert_eq!(
        first,
        registry().module_archive_bytes("acme", "zipped", "aws", "2.0.0")
    );
    let entries = zip_entries(&first);
    let listed: Vec<(&str, u32)> = entries.iter().map(|e| (e.0.as_str(), e.1)).collect();
    assert_eq!(
        listed,
        [
            ("README.md", 0o644),
            ("main.tf", 0o644),
            ("modules/", 0o755),
            ("modules/sub/", 0o755),
            ("modules/sub/main.tf", 0o644),
        ]
    );
    assert_eq!(entries[1].2, root_main_tf("acme", "zipped", "aws", "2.0.0"));
    assert_eq!(entries[4].2, sub_main_tf("acme", "zipped", "aws", "2.0.0"));
}

#[test]
fn faults_spoil_archives_but_not_the_api() {
    let reg = registry();
    let path = reg.module_archive_path("acme", "net", "aws", "1.0.0");
    let genuine = reg.module_archive_bytes("acme", "net", "aws", "1.0.0");
    let length = genuine.len().to_string();

    reg.set_module_fault("acme", "net", "aws", ModuleFault::TruncatedArchive);
    assert_eq!(location(&reg, "acme/net/aws", "1.0.0"), path);
    let headers = head(&reg, &path);
    assert_eq!(headers.status, 200);
    assert_eq!(headers.header("content-length"), Some(length.as_str()));
    let truncated = fetch(&reg, &path);
    assert_eq!(truncated.status, 200);
    assert_eq!(truncated.header("content-length"), Some(length.as_str()));
    assert_eq!(truncated.body, genuine[..genuine.len() / 2]);

    reg.set_module_fault("acme", "net", "aws", ModuleFault::InvalidArchive);
    let invalid = fetch(&reg, &path);
    assert_eq!(invalid.status, 200);
    assert_eq!(invalid.header("content-type"), Some("application/gzip"));
    let mut sink = Vec::new();
    assert!(flate2::read::GzDecoder::new(&invalid.body[..])
        .read_to_end(&mut sink)
        .is_err());
    reg.set_module_fault("acme", "zipped", "aws", ModuleFault::InvalidArchive);
    let zip_path = reg.module_archive_path("acme", "zipped", "aws", "2.0.0");
    let invalid_zip = fetch(&reg, &zip_path).body;
    assert!(zip::ZipArchive::new(Cursor::new(invalid_zip)).is_err());

    reg.set_module_fault("acme", "net", "aws", ModuleFault::DotDotEntry);
    let hostile = tar_entries(&fetch(&reg, &path).body);
    assert_eq!(
        names(&hostile, |e| e.0.as_str()),
        [
            ESCAPE_ENTRY,
            "README.md",
            "main.tf",
            "modules/",
            "modules/sub/",
            "modules/sub/main.tf"
        ]
    );
    assert_eq!(ESCAPE_ENTRY, "../escape.tf");
    reg.set_module_fault("acme", "zipped", "aws", ModuleFault::DotDotEntry);
    let hostile = zip_entries(&fetch(&reg, &zip_path).body);
    assert_eq!(hostile[0].0, ESCAPE_ENTRY);
    assert_eq!(hostile.len(), 6);
    assert_eq!(
        reg.module_archive_bytes("acme", "net", "aws", "1.0.0"),
        genuine
    );

    reg.set_module_fault("acme", "net", "aws", ModuleFault::None);
    assert_eq!(fetch(&reg, &path).body, genuine);
}

#[test]
fn module_api_honours_status_delay_and_stop() {
    let reg = registry();
    let versions = format!("{}v1/modules/acme/net/aws/versions", reg.url());
    let download = format!("{}v1/modules/acme/net/aws/1.0.0/download", reg.url());
    let path = reg.module_archive_path("acme", "net", "aws", "1.0.0");

    reg.set_api_status(Some(503));
    assert_eq!(get(&versions).status, 503);
    assert_eq!(get(&download).status, 503);
    assert_eq!(fetch(&reg, &path).status, 200);
    reg.set_api_status(None);

    reg.set_api_delay(Some(Duration::from_millis(300)));
    let started = Instant::now();
    assert_eq!(get(&download).status, 204);
    assert!(started.elapsed() >= Duration::from_millis(300));
    let started = Instant::now();
    assert_eq!(fetch(&reg, &path).status, 200);
    assert!(started.elapsed() < Duration::from_millis(300));
    reg.set_api_delay(None);

    reg.clear_requests();
    get_with(
        &versions,
        &[
            ("Authorization", "Bearer s3cret"),
            ("User-Agent", "Terraform/1.11.0"),
        ],
    );
    let recorded = &reg.requests()[0];
    assert_eq!(recorded.path, "/v1/modules/acme/net/aws/versions");
    assert_eq!(recorded.authorization.as_deref(), Some("Bearer s3cret"));
    assert_eq!(recorded.user_agent.as_deref(), Some("Terraform/1.11.0"));

    reg.stop();
    let refused = std::net::TcpStream::connect(reg.addr()).unwrap_err();
    assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
}
