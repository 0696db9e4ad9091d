//! `POST /_tfmirror/providers/prepare`: before `terraform init`, `exec`
//! asks for every provider its lock file pins; each is made ready in the
//! unpacked tree (see [`super::unpacked`]) so Terraform can install it by
//! symlink. The wire types are in [`crate::protocol::prepare`].
//!
//! For each provider: the verified zip for the platform is made sure of
//! (cached and verified: used as it is, with no request upstream;
//! otherwise downloaded through the registry path exactly as Terraform's
//! own download would be), checked against the lock file's hashes (none
//! matching: refused, the lock file wins), and unpacked or found.
//!
//! Terraform then installs these providers without asking the server for
//! their zips, so the answer also says, for the server's savings count of
//! the run that asked, which zips were used and how each was had
//! ([`PreparedZip`]); that part never goes on the wire.

use std::fmt;
use std::time::Instant;

use futures_util::{stream, StreamExt};
use http_body_util::BodyExt;
use hyper::StatusCode;

use super::package::zip_path;
use super::route::{Package, ProviderAddress};
use super::unpacked::EntryError;
use super::verified;
use super::{AnswerError, Providers};
use crate::policy::{self, Artifact};
use crate::protocol::closure::ClosureItem;
use crate::protocol::prepare::{
    PrepareAnswer, PrepareItem, PrepareRequest, Prepared, MAX_PREPARE_PROVIDERS,
};
use crate::request::RequestContext;
use crate::response::Origin;
use crate::store::Segment;
use crate::upstream::Forwarded;

/// Providers prepared at once, as `tfmirror warm` fetches them: enough to
/// keep a registry busy without hammering it.
const PREPARE_CONCURRENCY: usize = 8;

/// A request that cannot be answered at all: a 400.
#[derive(Debug, thiserror::Error)]
pub enum BadPrepare {
    #[error("platform {0:?} is not <os>_<arch>")]
    Platform(String),
    #[error("{0} providers in one request; at most {MAX_PREPARE_PROVIDERS}")]
    TooMany(usize),
}

impl BadPrepare {
    pub fn status(&self) -> StatusCode {
        StatusCode::BAD_REQUEST
    }
}

/// What a prepare request did: the answer for the client, and the zips
/// it used, for the savings of the run that asked.
#[derive(Debug)]
pub struct Preparation {
    pub answer: PrepareAnswer,
    pub zips: Vec<PreparedZip>,
}

/// One verified zip a prepare request used: the zip of every provider it
/// made ready, and one it downloaded even if the provider then was not
/// ready (the run still waited for that download).
#[derive(Debug, Clone, PartialEq)]
pub struct PreparedZip {
    /// The zip's cache key (`providers/<host>/.../<name>.zip`).
    pub key: String,
    /// What the zip needs beside it (see [`super::package_closure`]), the
    /// zip first: what a response serving it names.
    pub items: Vec<ClosureItem>,
    /// The zip's size.
    pub bytes: u64,
    /// `Upstream` if this request downloaded it; `Cache` if it was on
    /// disk, or another request's download it waited for put it there.
    pub origin: Origin,
    /// How long the download took, when this request made one.
    pub secs: f64,
}

/// Why one provider is not ready: the `reason` of its answer.
#[derive(Debug)]
enum NotReady {
    BadName(String),
    Unproxied(String),
    /// Outside `[policy]`: Terraform is refused too, by the registry route.
    Refused(policy::Refusal),
    /// Cached, but never verified: not unpacked, whatever the lock says.
    Unverified,
    /// No verified zip could be had; the message says why.
    NoZip(String),
    NotLocked {
        zh: String,
        h1: Vec<String>,
    },
    Entry(EntryError),
}

impl fmt::Display for NotReady {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotReady::BadName(why) => write!(f, "not a provider tfmirror can name: {why}"),
            NotReady::Unproxied(host) => {
                write!(f, "{host} is not one of the registries tfmirror proxies")
            }
            NotReady::Refused(refusal) => refusal.fmt(f),
            NotReady::Unverified => write!(
                f,
                "the cached zip was never verified against the registry's signature or a \
                 lock file; delete it (`tfmirror cache delete`) to fetch it again"
            ),
            NotReady::NoZip(why) => write!(f, "no verified zip: {why}"),
            NotReady::NotLocked { zh, h1 } => write!(
                f,
                "the verified zip ({zh}, {}) matches none of the lock file's hashes for it",
                h1.join(", ")
            ),
            NotReady::Entry(e) => e.fmt(f),
        }
    }
}

impl Providers {
    /// Prepares every provider of the request, [`PREPARE_CONCURRENCY`] at
    /// a time, and answers in the request's order.
    pub async fn prepare(
        &self,
        request: PrepareRequest,
        forwarded: &Forwarded,
    ) -> Result<Preparation, BadPrepare> {
        if request.providers.len() > MAX_PREPARE_PROVIDERS {
            return Err(BadPrepare::TooMany(request.providers.len()));
        }
        let (os, arch) = parse_platform(&request.platform)
            .ok_or_else(|| BadPrepare::Platform(request.platform.clone()))?;
        // Each future owns what it uses (the handles are cheap clones): a
        // stream of futures borrowing from here is not `Send` to the
        // compiler's satisfaction.
        let preparing = request.providers.into_iter().enumerate().map(|(at, item)| {
            let (providers, forwarded) = (self.clone(), forwarded.clone());
            let (os, arch) = (os.clone(), arch.clone());
            async move {
                let prepared = providers.prepare_one(&item, &os, &arch, &forwarded).await;
                (at, prepared)
            }
        });
        let mut answers: Vec<(usize, (Prepared, Option<PreparedZip>))> = stream::iter(preparing)
            .buffer_unordered(PREPARE_CONCURRENCY)
            .collect()
            .await;
        answers.sort_by_key(|(at, _)| *at);
        let (providers, zips): (Vec<Prepared>, Vec<Option<PreparedZip>>) =
            answers.into_iter().map(|(_, answer)| answer).unzip();
        Ok(Preparation {
            answer: PrepareAnswer {
                tree: self.tree_root(),
                providers,
            },
            zips: zips.into_iter().flatten().collect(),
        })
    }

    async fn prepare_one(
        &self,
        item: &PrepareItem,
        os: &Segment,
        arch: &Segment,
        forwarded: &Forwarded,
    ) -> (Prepared, Option<PreparedZip>) {
        let mut zip = None;
        match self.ready(item, os, arch, forwarded, &mut zip).await {
            Ok((h1, zh)) => (Prepared::ready(item, h1, zh), zip),
            Err(why) => {
                // A refusal was logged where the policy refused it.
                if !matches!(why, NotReady::Refused(_)) {
                    tracing::warn!(
                        "cannot prepare {} {} {os}_{arch}: {why}",
                        item.address,
                        item.version
                    );
                }
                let downloaded = zip.filter(|zip| zip.origin == Origin::Upstream);
                (Prepared::not_ready(item, why.to_string()), downloaded)
            }
        }
    }

    /// The entry's `h1:` and the zip's `zh:`; `zip` says which zip was
    /// used, as soon as one was (a later check may still refuse it).
    async fn ready(
        &self,
        item: &PrepareItem,
        os: &Segment,
        arch: &Segment,
        forwarded: &Forwarded,
        zip: &mut Option<PreparedZip>,
    ) -> Result<(String, String), NotReady> {
        let package = parse_package(item, os, arch)?;
        if !self.config.is_proxied(package.address.host.as_str()) {
            return Err(NotReady::Unproxied(package.address.host.to_string()));
        }
        let artifact = Artifact::provider(&package.address, Some(package.version.as_str()));
        policy::check::enforce(&self.policy, artifact).map_err(NotReady::Refused)?;
        let (origin, secs) = self.verified_zip(&package, forwarded).await?;
        let rel = zip_path(&package);
        let sha256 = self
            .store
            .sha256(&rel)
            .await
            .ok_or_else(|| NotReady::NoZip("the cached zip vanished".to_owned()))?;
        let size = tokio::fs::metadata(self.store.path(&rel))
            .await
            .map_or(0, |m| m.len());
        // The zip is in use as long as its entry is: gc takes the entry first.
        self.store.record_use(&rel, size);
        *zip = Some(PreparedZip {
            key: rel.key(),
            items: super::package_closure(&package).into(),
            bytes: size,
            origin,
            secs,
        });
        let zh = format!("zh:{sha256}");
        let zip_h1 = if item.hashes.contains(&zh) {
            None
        } else {
            let h1 = self.h1(&package, &rel).await;
            if !h1.iter().any(|h| item.hashes.contains(h)) {
                return Err(NotReady::NotLocked { zh, h1 });
            }
            h1.into_iter().next()
        };
        let h1 = self
            .tree_entry(&package, &rel, &sha256, zip_h1)
            .await
            .map_err(NotReady::Entry)?;
        Ok((h1, zh))
    }

    /// Makes sure the zip of `package` is cached and verified: a verified
    /// cached zip is used as it is (no request upstream, so this works
    /// offline); a missing one is downloaded through the registry path,
    /// as Terraform's own download would be, and verified on the way.
    ///
    /// Answers where the zip came from, as a response serving it would
    /// say, and the seconds its download took (0 when none was made).
    async fn verified_zip(
        &self,
        package: &Package,
        forwarded: &Forwarded,
    ) -> Result<(Origin, f64), NotReady> {
        if verified::verification(&self.store, package).await.is_some() {
            return Ok((Origin::Cache, 0.0));
        }
        let started = Instant::now();
        let rel = zip_path(package);
        if self.store.has_file(&rel).await {
            return Err(NotReady::Unverified);
        }
        let answer = self
            .fetch_download_answer(package, forwarded, None)
            .await
            .map_err(|e| {
                NotReady::NoZip(match e {
                    AnswerError::Fetch(e) => format!("the registry's download answer: {e}"),
                    AnswerError::Unreadable(message) => message,
                })
            })?;
        let ctx = RequestContext {
            base_url: String::new(),
            forwarded: forwarded.clone(),
            head: false,
            run: None,
        };
        let response = self.serve_zip(package, &answer, &ctx).await;
        if !response.status().is_success() {
            let body = http_body_util::Limited::new(response.into_body(), 64 * 1024);
            let message = match body.collect().await {
                Ok(body) => String::from_utf8_lossy(&body.to_bytes()).trim().to_owned(),
                Err(e) => e.to_string(),
            };
            return Err(NotReady::NoZip(message));
        }
        let origin = response
            .extensions()
            .get::<Origin>()
            .copied()
            .unwrap_or(Origin::Cache);
        // The download goes on without a reader, and holds the zip's lock
        // until it has checked and stored the zip (or refused it).
        drop(response);
        drop(self.store.locks().lock(&rel.key()).await);
        match verified::verification(&self.store, package).await {
            Some(_) => Ok((origin, started.elapsed().as_secs_f64())),
            None => Err(NotReady::NoZip(
                "the download failed its check (the server log says why)".to_owned(),
            )),
        }
    }
}

/// `linux_amd64` → (`linux`, `amd64`).
fn parse_platform(platform: &str) -> Option<(Segment, Segment)> {
    let (os, arch) = platform.split_once('_')?;
    Some((Segment::new(os).ok()?, Segment::new(arch).ok()?))
}

/// The package an item names, every part validated before it becomes a
/// path.
fn parse_package(item: &PrepareItem, os: &Segment, arch: &Segment) -> Result<Package, NotReady> {
    let segment = |part: &str| {
        Segment::new(part).map_err(|e| NotReady::BadName(format!("{:?}: {e}", item.address)))
    };
    let parts: Vec<&str> = item.address.split('/').collect();
    let [host, namespace, kind] = parts.as_slice() else {
        let why = format!("{:?} is not <host>/<namespace>/<type>", item.address);
        return Err(NotReady::BadName(why));
    };
    Ok(Package {
        address: ProviderAddress {
            host: segment(host)?,
            namespace: segment(namespace)?,
            kind: segment(kind)?,
        },
        version: Segment::new(&item.version)
            .map_err(|e| NotReady::BadName(format!("version {:?}: {e}", item.version)))?,
        os: os.clone(),
        arch: arch.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(address: &str, version: &str) -> PrepareItem {
        PrepareItem {
            address: address.to_owned(),
            version: version.to_owned(),
            hashes: vec![],
        }
    }

    #[test]
    fn names_are_validated_before_they_become_paths() {
        let (os, arch) = parse_platform("linux_amd64").unwrap();
        assert_eq!((os.as_str(), arch.as_str()), ("linux", "amd64"));
        for bad in ["linux", "linux_", "_amd64", "../x_amd64", "linux_amd64/.."] {
            assert!(parse_platform(bad).is_none(), "{bad}");
        }
        let ok = parse_package(
            &item("registry.terraform.io/hashicorp/aws", "5.1.0"),
            &os,
            &arch,
        );
        assert_eq!(
            ok.unwrap().to_string(),
            "registry.terraform.io/hashicorp/aws 5.1.0 linux_amd64"
        );
        for (address, version) in [
            ("hashicorp/aws", "5.1.0"),
            ("registry.terraform.io/hashicorp/../aws", "5.1.0"),
            ("registry.terraform.io/hashicorp/..", "5.1.0"),
            ("registry.terraform.io/hashicorp/aws", ".."),
            ("registry.terraform.io/hashicorp/aws", "5.1.0/x"),
        ] {
            let result = parse_package(&item(address, version), &os, &arch);
            assert!(
                matches!(result, Err(NotReady::BadName(_))),
                "{address} {version}"
            );
        }
    }
}
