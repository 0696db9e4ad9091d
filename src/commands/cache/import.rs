//! `tfmirror cache import DIR`: provider zips from a directory written by
//! `terraform providers mirror` (or any packed `filesystem_mirror`), handed
//! to the cache's server, which is the one process that writes the cache.
//!
//! Such a directory carries `<version>.json` files with the packages'
//! hashes; a zip that does not match them is refused. The zips themselves
//! came through Terraform, which checked their signatures when it wrote
//! the directory.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use reqwest::StatusCode;

use crate::commands::launch::Launch;
use crate::providers::hashes;

/// One zip found in the directory: its path and its place in the layout.
struct Found {
    path: PathBuf,
    /// `host/namespace/type/terraform-provider-..._os_arch.zip`
    rel: String,
    /// The hashes its `<version>.json` lists for its platform, if any.
    listed: Option<Vec<String>>,
}

pub async fn run(launch: Launch<'_>, dir: &Path) -> anyhow::Result<i32> {
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
    for zip in &found {
        match import(&client, &server.url, zip).await {
            Ok(Outcome::Imported) => {
                imported += 1;
                println!("imported {}", zip.rel);
            }
            Ok(Outcome::AlreadyCached) => cached += 1,
            Err(e) => {
                failed += 1;
                eprintln!("tfmirror: {}: {e}", zip.path.display());
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

async fn import(client: &reqwest::Client, url: &str, zip: &Found) -> anyhow::Result<Outcome> {
    check_listed_hashes(zip)?;
    let file = tokio::fs::File::open(&zip.path).await?;
    let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::new(file));
    let response = client
        .put(format!("{url}/providers/{}", zip.rel))
        .body(body)
        .send()
        .await
        .map_err(reqwest::Error::without_url)?;
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    match status {
        StatusCode::CREATED => Ok(Outcome::Imported),
        StatusCode::OK => Ok(Outcome::AlreadyCached),
        _ => anyhow::bail!("{}", text.trim().trim_start_matches("tfmirror: ")),
    }
}

/// A zip must match one of the hashes its `<version>.json` lists; one the
/// directory lists no hashes for is imported on the server's own checks.
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
