//! The format's round trip, its determinism, and `verify` refusing each
//! kind of bad bundle, naming the entry.

use std::io::Read;

use sha2::{Digest, Sha256};

use super::format::{self, EntryKind, Manifest};
use super::read::{self, ReadError, ReadLimits};
use super::verify::{verify, VerifyError};
use super::write::{self, Content, Header, Source};
use crate::providers::signature::tests::{sign, SIGNING, SIGNING_PUB};
use crate::store::{encode_document_file, Document};

const LIMITS: ReadLimits = ReadLimits {
    entry_size: 1 << 30,
};
const METADATA: u64 = 1 << 20;
const ZIP: &str = "terraform-provider-demo_1.0.0_linux_amd64.zip";
const DOWNLOAD_KEY: &str = "providers/download/registry.example.com/acme/demo/1.0.0/linux/amd64";

fn sha(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn artifact(kind: EntryKind, key: &str, bytes: &[u8]) -> Source {
    Source {
        kind,
        name: key.to_owned(),
        path: format::artifact_path(key),
        content: Content::Bytes(bytes.to_vec()),
    }
}

/// A provider package whose SHA256SUMS says `listed` for its zip, signed,
/// with its download answer; and a module archive.
fn sources_listing(zip: &[u8], listed: &str) -> Vec<Source> {
    let sums = format!("{listed}  {ZIP}\n").into_bytes();
    let sig = sign(SIGNING, &sums);
    let answer = serde_json::json!({
        "protocols": ["5.0"],
        "os": "linux",
        "arch": "amd64",
        "filename": ZIP,
        "download_url": "https://dl.example.com/demo.zip",
        "shasums_url": "https://dl.example.com/SHA256SUMS",
        "shasums_signature_url": "https://dl.example.com/SHA256SUMS.sig",
        "shasum": listed,
        "signing_keys": {"gpg_public_keys": [{"key_id": "x", "ascii_armor": SIGNING_PUB}]},
    });
    let doc = Document::public(0, answer.to_string());
    let checksums = "provider-checksums/registry.example.com/acme/demo/1.0.0";
    vec![
        artifact(
            EntryKind::ProviderPackage,
            &format!("providers/registry.example.com/acme/demo/{ZIP}"),
            zip,
        ),
        artifact(
            EntryKind::ProviderChecksums,
            &format!("{checksums}/SHA256SUMS"),
            &sums,
        ),
        artifact(
            EntryKind::ProviderSignature,
            &format!("{checksums}/SHA256SUMS.sig"),
            &sig,
        ),
        Source {
            kind: EntryKind::DownloadAnswer,
            name: "registry.example.com/acme/demo 1.0.0 linux_amd64".to_owned(),
            path: format::document_path(DOWNLOAD_KEY).unwrap(),
            content: Content::Bytes(encode_document_file(DOWNLOAD_KEY, &doc)),
        },
        artifact(
            EntryKind::ModuleArchive,
            "modules/archives/ab12.tar.gz",
            b"module archive bytes",
        ),
    ]
}

fn sources() -> Vec<Source> {
    let zip = b"PK pretend zip".to_vec();
    sources_listing(&zip, &sha(&zip))
}

fn header() -> Header {
    Header {
        created: format::created(Some("1700000000")),
        platforms: vec!["linux_amd64".to_owned()],
    }
}

fn bundle_of(sources: Vec<Source>) -> Vec<u8> {
    let mut out = Vec::new();
    write::write(&mut out, header(), sources, &mut |_| {}).unwrap();
    out
}

fn verified(bytes: &[u8]) -> Result<Manifest, VerifyError> {
    verify(bytes, LIMITS, METADATA)
}

/// The files of a bundle, manifest first, as raw (path, bytes).
fn unpack(bundle: &[u8]) -> Vec<(String, Vec<u8>)> {
    let tar = zstd::decode_all(bundle).unwrap();
    let mut archive = tar::Archive::new(&tar[..]);
    archive
        .entries()
        .unwrap()
        .map(|entry| {
            let mut entry = entry.unwrap();
            let path = String::from_utf8(entry.path_bytes().into_owned()).unwrap();
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes).unwrap();
            (path, bytes)
        })
        .collect()
}

/// A bundle of exactly these files, whatever they say, as a hostile one
/// would be made; paths are written raw, unchecked.
fn pack(files: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    for (path, bytes) in files {
        let mut header = tar::Header::new_old();
        header.as_old_mut().name[..path.len()].copy_from_slice(path.as_bytes());
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_entry_type(tar::EntryType::Regular);
        header.set_cksum();
        tar.append(&header, &bytes[..]).unwrap();
    }
    zstd::encode_all(&tar.into_inner().unwrap()[..], 3).unwrap()
}

fn manifest_of(files: &[(String, Vec<u8>)]) -> Manifest {
    serde_json::from_slice(&files[0].1).unwrap()
}

fn with_manifest(files: &mut [(String, Vec<u8>)], manifest: &Manifest) {
    files[0].1 = serde_json::to_vec(manifest).unwrap();
}

fn refused_naming(bundle: &[u8], path: &str) {
    let error = verified(bundle).expect_err("verify refuses it").to_string();
    assert!(error.contains(path), "{error:?} does not name {path}");
}

#[test]
fn a_bundle_reads_back_as_written() {
    let mut progress = 0;
    let mut out = Vec::new();
    let written = write::write(&mut out, header(), sources(), &mut |n| progress += n).unwrap();
    assert_eq!(written.format, format::FORMAT);
    assert_eq!(written.created, "2023-11-14T22:13:20Z");
    assert_eq!(written.entries.len(), 5);
    let paths: Vec<&str> = written.entries.iter().map(|e| e.path.as_str()).collect();
    let mut sorted = paths.clone();
    sorted.sort();
    assert_eq!(paths, sorted, "entries are sorted by path");
    assert_eq!(
        progress,
        written.entries.iter().map(|e| e.size).sum::<u64>()
    );
    assert_eq!(verified(&out).unwrap(), written);
    assert_eq!(read::manifest(&out[..], LIMITS).unwrap(), written);
    let files = unpack(&out);
    assert_eq!(files[0].0, format::MANIFEST_PATH);
    for ((path, bytes), entry) in files[1..].iter().zip(&written.entries) {
        assert_eq!(path, &entry.path);
        assert_eq!(sha(bytes), entry.sha256);
    }
}

#[test]
fn the_same_entries_give_the_same_bytes() {
    let first = bundle_of(sources());
    let mut reversed = sources();
    reversed.reverse();
    let mut doubled = sources();
    doubled.extend(sources());
    assert_eq!(first, bundle_of(reversed));
    assert_eq!(first, bundle_of(doubled), "a path given twice is one entry");
    let tar = zstd::decode_all(&first[..]).unwrap();
    for entry in tar::Archive::new(&tar[..]).entries().unwrap() {
        let header = entry.unwrap().header().clone();
        assert_eq!(header.mtime().unwrap(), 0);
        assert_eq!((header.uid().unwrap(), header.gid().unwrap()), (0, 0));
        assert_eq!(header.mode().unwrap(), format::ENTRY_MODE);
        assert_eq!(header.username_bytes(), Some(&b""[..]));
    }
}

#[test]
fn one_altered_byte_in_any_entry_is_named() {
    let bundle = bundle_of(sources());
    let files = unpack(&bundle);
    for index in 1..files.len() {
        let mut altered = files.clone();
        let middle = altered[index].1.len() / 2;
        altered[index].1[middle] ^= 1;
        refused_naming(&pack(&altered), &files[index].0);
    }
    assert!(
        verified(&pack(&files)).is_ok(),
        "the repacked original is fine"
    );
}

#[test]
fn a_missing_or_extra_entry_is_named() {
    let files = unpack(&bundle_of(sources()));
    let mut missing = files.clone();
    let gone = missing.remove(2);
    refused_naming(&pack(&missing), &gone.0);
    let mut last_missing = files.clone();
    let gone = last_missing.pop().unwrap();
    refused_naming(&pack(&last_missing), &gone.0);
    let mut extra = files.clone();
    extra.push((
        "artifacts/modules/archives/zz.zip".to_owned(),
        b"x".to_vec(),
    ));
    refused_naming(&pack(&extra), "artifacts/modules/archives/zz.zip");
    let mut twice = files.clone();
    twice.insert(2, files[1].clone());
    refused_naming(&pack(&twice), &files[1].0);
}

#[test]
fn a_manifest_hash_that_does_not_match_is_named() {
    let mut files = unpack(&bundle_of(sources()));
    let mut manifest = manifest_of(&files);
    manifest.entries[3].sha256 = sha(b"something else");
    let path = manifest.entries[3].path.clone();
    with_manifest(&mut files, &manifest);
    refused_naming(&pack(&files), &path);
}

#[test]
fn paths_with_tricks_are_refused() {
    let files = unpack(&bundle_of(sources()));
    // In the manifest.
    let mut listed = files.clone();
    let mut manifest = manifest_of(&listed);
    manifest.entries[0].path = "artifacts/../../etc/passwd".to_owned();
    with_manifest(&mut listed, &manifest);
    assert!(matches!(
        verified(&pack(&listed)),
        Err(VerifyError::Read(ReadError::Path(_)))
    ));
    // In the tar alone.
    let mut stored = files.clone();
    stored[1].0 = "artifacts/../x".to_owned();
    assert!(matches!(
        verified(&pack(&stored)),
        Err(VerifyError::Read(ReadError::Path(_)))
    ));
    // A link where a file should be.
    let mut tar = tar::Builder::new(Vec::new());
    let (manifest_path, manifest_bytes) = &files[0];
    let mut header = tar::Header::new_ustar();
    header.set_size(manifest_bytes.len() as u64);
    tar.append_data(&mut header, manifest_path, &manifest_bytes[..])
        .unwrap();
    let mut link = tar::Header::new_ustar();
    link.set_entry_type(tar::EntryType::Symlink);
    link.set_size(0);
    tar.append_link(&mut link, &files[1].0, "/etc/passwd")
        .unwrap();
    let bundle = zstd::encode_all(&tar.into_inner().unwrap()[..], 3).unwrap();
    refused_naming(&bundle, &files[1].0);
}

#[test]
fn a_zip_the_signed_checksums_do_not_list_is_named() {
    let zip = b"PK pretend zip".to_vec();
    let bundle = bundle_of(sources_listing(&zip, &sha(b"another zip")));
    let error = verified(&bundle).unwrap_err();
    assert!(matches!(error, VerifyError::Provider { .. }), "{error}");
    assert!(error.to_string().contains(ZIP), "{error}");
}

#[test]
fn a_package_without_its_signature_is_named() {
    let sources: Vec<Source> = sources()
        .into_iter()
        .filter(|s| s.kind != EntryKind::ProviderSignature)
        .collect();
    let error = verified(&bundle_of(sources)).unwrap_err().to_string();
    assert!(
        error.contains(ZIP) && error.contains("signature"),
        "{error}"
    );
}

#[test]
fn a_bundle_over_the_entry_cap_is_refused_before_reading() {
    let bundle = bundle_of(sources());
    let tiny = ReadLimits { entry_size: 4 };
    assert!(matches!(
        read::manifest(&bundle[..], tiny),
        Err(ReadError::EntryTooLarge { .. })
    ));
    assert!(matches!(
        verify(&bundle[..], LIMITS, 4),
        Err(VerifyError::Read(ReadError::Rejected { .. }))
    ));
}

#[test]
fn not_a_bundle_is_said_so() {
    assert!(matches!(
        verified(b"plain text"),
        Err(VerifyError::Read(
            ReadError::NotABundle(_) | ReadError::Io(_)
        ))
    ));
}
