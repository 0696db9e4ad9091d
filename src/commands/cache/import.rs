//! `tfmirror cache import DIR [--lock-file FILE]...`: provider zips from a
//! directory written by `terraform providers mirror` (or any packed
//! `filesystem_mirror`), handed to the cache's server, which is the one
//! process that writes the cache.
//!
//! The server decides what is stored (see `providers/import.rs`): a zip
//! the registry's signed SHA256SUMS lists, or, when the registry cannot
//! answer, one whose hash is in a lock file the user named here. This
//! command sends each zip with the hashes those lock files hold for its
//! provider and version. A `<version>.json` beside the zips vouches for
//! nothing (it travels with the zips it would vouch for); a zip that
//! contradicts it is still refused here, as a sign the directory was
//! damaged.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use reqwest::StatusCode;

use crate::commands::launch::Launch;
use crate::lockfile::LockFile;
use crate::protocol::LOCK_FILE_HEADER;
use crate::provider_address::ZipName;
use crate::providers::{hashes, LockHashes};

/// One zip found in the directory: its path and its place in the layout.
struct Found {
    path: PathBuf,
    /// `host/namespace/type/terraform-provider-..._os_arch.zip`
    rel: String,
    /// `host/namespace/type` and version, read from the path; `None` for a
    /// name the layout does not use, which the server refuses anyway.
    provider: Option<(String, String)>,
    /// The hashes its `<version>.json` lists for its platform, if any.
    listed: Option<Vec<String>>,
}

pub async fn run(launch: Launch<'_>, dir: &Path, lock_files: &[PathBuf]) -> anyhow::Result<i32> {
    let locks = lock_files
        .iter()
        .map(|path| LockFile::read(path))
        .collect::<Result<Vec<_>, _>>()?;
    let found = find_zips(dir)?;
    if found.is_empty() {
        anyhow::bail!(
            "no provider zips in {} (expected HOST/NAMESPACE/TYPE/terraform-provider-TYPE_VERSION_OS_ARCH.zip, \
             as `terraform providers mirror` writes)",
            dir.display()
        );
    }
    let server = launch.connect().await?;
    let client = server.client(None)?;
    let (mut imported, mut cached, mut failed) = (0, 0, 0);
    for zip in found {
        let path = zip.path.clone();
        match import(&client, &server.url, zip, &locks).await {
            Ok((Outcome::Imported, rel)) => {
                imported += 1;
                println!("imported {rel}");
            }
            Ok((Outcome::AlreadyCached, _)) => cached += 1,
            Err(e) => {
                failed += 1;
                eprintln!("tfmirror: {}: {e}", path.display());
            }
        }
    }
    println!("{imported} imported, {cached} already cached, {failed} refused");
    Ok(if failed > 0 { 1 } else { 0 })
}

enum Outcome {
    Imported,
    AlreadyCached,
}

async fn import(
    client: &reqwest::Client,
    url: &str,
    zip: Found,
    locks: &[LockFile],
) -> anyhow::Result<(Outcome, String)> {
    let zip =
        tokio::task::spawn_blocking(move || check_listed_hashes(&zip).map(|()| zip)).await??;
    let file = tokio::fs::File::open(&zip.path).await?;
    let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::new(file));
    let mut request = client.put(format!("{url}/providers/{}", zip.rel));
    for lock in locks {
        request = request.header(LOCK_FILE_HEADER, lock_hashes(lock, &zip).header_value());
    }
    let response = request
        .body(body)
        .send()
        .await
        .map_err(reqwest::Error::without_url)?;
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    match status {
        StatusCode::CREATED => Ok((Outcome::Imported, zip.rel)),
        StatusCode::OK => Ok((Outcome::AlreadyCached, zip.rel)),
        _ => anyhow::bail!("{}", text.trim().trim_start_matches("tfmirror: ")),
    }
}

/// What `lock` holds for the zip's provider and version: nothing when it
/// locks another version, or not that provider.
fn lock_hashes(lock: &LockFile, zip: &Found) -> LockHashes {
    let hashes = zip
        .provider
        .as_ref()
        .and_then(|(address, version)| {
            lock.providers
                .iter()
                .find(|p| p.address.to_string() == *address && p.version == *version)
        })
        .map(|locked| locked.hashes.clone())
        .unwrap_or_default();
    let file = std::path::absolute(&lock.path).unwrap_or_else(|_| lock.path.clone());
    LockHashes {
        file: file.display().to_string(),
        hashes,
    }
}

/// A consistency check, not a source of trust: a zip must match one of
/// the hashes its `<version>.json` lists, if it has one.
fn check_listed_hashes(zip: &Found) -> anyhow::Result<()> {
    let Some(listed) = &zip.listed else {
        return Ok(());
    };
    let mut own = hashes::zip_h1(&zip.path)?.values();
    own.push(hashes::zh_of_file(&zip.path)?);
    if own.iter().any(|hash| listed.contains(hash)) {
        return Ok(());
    }
    anyhow::bail!(
        "does not match the hashes its version file lists ({}); not imported",
        listed.join(", ")
    )
}

/// The zips at depth four (`host/ns/type/file.zip`), in a stable order.
fn find_zips(dir: &Path) -> anyhow::Result<Vec<Found>> {
    let mut found = Vec::new();
    for host in sorted_dirs(dir)? {
        for namespace in sorted_dirs(&host)? {
            for kind in sorted_dirs(&namespace)? {
                let listed = listed_hashes(&kind)?;
                for entry in std::fs::read_dir(&kind)? {
                    let path = entry?.path();
                    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                        continue;
                    };
                    if !name.ends_with(".zip") || !path.is_file() {
                        continue;
                    }
                    let rel = path
                        .strip_prefix(dir)
                        .expect("found below dir")
                        .to_string_lossy()
                        .into_owned();
                    found.push(Found {
                        listed: listed.get(name).cloned(),
                        provider: provider_of(&rel),
                        path,
                        rel,
                    });
                }
            }
        }
    }
    found.sort_by(|a, b| a.rel.cmp(&b.rel));
    Ok(found)
}

/// `host/namespace/type` and the version of
/// `host/namespace/type/terraform-provider-<type>_<version>_<os>_<arch>.zip`.
fn provider_of(rel: &str) -> Option<(String, String)> {
    let (address, file) = rel.rsplit_once('/')?;
    let kind = address.rsplit('/').next()?;
    let version = ZipName::parse(kind, file)?.version;
    Some((address.to_lowercase(), version.to_owned()))
}

fn sorted_dirs(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", dir.display()))?;
    let mut dirs: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.is_dir())
        .collect();
    dirs.sort();
    Ok(dirs)
}

/// Zip file name → hashes, from every `<version>.json` of a provider
/// directory: `{"archives":{"linux_amd64":{"url":"...zip","hashes":[...]}}}`.
fn listed_hashes(dir: &Path) -> anyhow::Result<BTreeMap<String, Vec<String>>> {
    #[derive(serde::Deserialize)]
    struct VersionFile {
        archives: BTreeMap<String, Archive>,
    }
    #[derive(serde::Deserialize)]
    struct Archive {
        url: String,
        #[serde(default)]
        hashes: Vec<String>,
    }
    let mut listed = BTreeMap::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let is_version_file = path.extension().is_some_and(|e| e == "json")
            && path.file_name().is_some_and(|n| n != "index.json");
        if !is_version_file {
            continue;
        }
        let text = std::fs::read_to_string(&path)?;
        let file: VersionFile = serde_json::from_str(&text)
            .map_err(|e| anyhow::anyhow!("{} is not a mirror version file: {e}", path.display()))?;
        for archive in file.archives.into_values() {
            let name = archive
                .url
                .rsplit('/')
                .next()
                .unwrap_or_default()
                .to_owned();
            listed.insert(name, archive.hashes);
        }
    }
    Ok(listed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_provider_and_version_from_the_layout() {
        assert_eq!(
            provider_of(
                "registry.terraform.io/hashicorp/aws/terraform-provider-aws_5.1.0_linux_amd64.zip"
            ),
            Some((
                "registry.terraform.io/hashicorp/aws".to_owned(),
                "5.1.0".to_owned()
            ))
        );
        assert_eq!(
            provider_of(
                "registry.terraform.io/hashicorp/aws/terraform-provider-gcp_5.1.0_linux_amd64.zip"
            ),
            None
        );
    }
}
