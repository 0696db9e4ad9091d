//! `bundle list` and `bundle verify`: reading a bundle file, without a
//! server.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use crate::bundle::format::Manifest;
use crate::bundle::read::ReadLimits;
use crate::bundle::{read, verify};
use crate::config::Limits;
use crate::human_size::human_bytes;

#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    #[error("cannot open {path}: {source}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Read {
        path: PathBuf,
        source: read::ReadError,
    },
}

pub async fn list(file: &Path, limits: &Limits, json: bool) -> anyhow::Result<i32> {
    let path = file.to_path_buf();
    let limits = ReadLimits::from(limits);
    let manifest = tokio::task::spawn_blocking(move || {
        let input = open(&path)?;
        read::manifest(input, limits).map_err(|source| InspectError::Read { path, source })
    })
    .await??;
    if json {
        println!("{}", serde_json::to_string_pretty(&manifest)?);
    } else {
        print!("{}", table(&manifest));
    }
    Ok(0)
}

/// Exit 0 when every check passes, 1 naming the first bad entry.
pub async fn verify(file: &Path, limits: &Limits) -> anyhow::Result<i32> {
    let path = file.to_path_buf();
    let metadata_size = limits.metadata_size;
    let limits = ReadLimits::from(limits);
    let checked = tokio::task::spawn_blocking(move || {
        let input = open(&path)?;
        Ok::<_, InspectError>(verify::verify(input, limits, metadata_size))
    })
    .await??;
    match checked {
        Ok(manifest) => {
            let bytes = manifest.entries.iter().map(|e| e.size).sum();
            println!(
                "{}: {} entries, {}, all verified",
                file.display(),
                manifest.entries.len(),
                human_bytes(bytes)
            );
            Ok(0)
        }
        Err(e) => {
            eprintln!("tfmirror: {}: {e}", file.display());
            Ok(1)
        }
    }
}

fn open(path: &Path) -> Result<BufReader<File>, InspectError> {
    File::open(path)
        .map(BufReader::new)
        .map_err(|source| InspectError::Open {
            path: path.to_owned(),
            source,
        })
}

/// One row per entry: kind, size, name; the header says what and when.
fn table(manifest: &Manifest) -> String {
    let mut out = format!(
        "tfmirror {} bundle, created {}, platforms: {}\n",
        manifest.tfmirror_version,
        manifest.created,
        if manifest.platforms.is_empty() {
            "-".to_owned()
        } else {
            manifest.platforms.join(", ")
        }
    );
    let width = manifest
        .entries
        .iter()
        .map(|e| e.kind.as_str().len())
        .max()
        .unwrap_or(4)
        .max(4);
    out.push_str(&format!("{:width$}  {:>10}  NAME\n", "KIND", "SIZE"));
    for entry in &manifest.entries {
        out.push_str(&format!(
            "{:width$}  {:>10}  {}\n",
            entry.kind.as_str(),
            human_bytes(entry.size),
            entry.name
        ));
    }
    out
}
