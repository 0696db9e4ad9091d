//! Where each of tfmirror's own endpoints lives, spelled once for the
//! router (which parses a path into an [`Endpoint`]) and the client (which
//! turns one into a path).

/// The first path segment of every tfmirror endpoint, after the server's
/// secret.
pub const OWN_PREFIX: &str = "_tfmirror";

/// One header per lock file the user named, on a provider zip uploaded by
/// `tfmirror cache import`: `X-Tfmirror-Lock-File: <percent-encoded path>
/// <hash> <hash>...`, the hashes being that file's `zh:` and `h1:` hashes
/// for the uploaded package's provider and version (none when it does not
/// lock that version).
pub const LOCK_FILE_HEADER: &str = "x-tfmirror-lock-file";

/// One of the server's own endpoints. Which methods each takes is the
/// router's business; the client's calls say it with
/// `get`/`post`/`delete`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint<'a> {
    /// `GET`: [`HealthAnswer`](super::HealthAnswer); needs no secret.
    Health,
    /// `GET`: Prometheus text.
    Metrics,
    /// `GET`: [`Artifacts`](super::admin::Artifacts).
    Artifacts,
    /// `POST` [`RunStart`](super::RunStart) → [`Ack`](super::Ack);
    /// `GET` and `DELETE` → [`RunCounters`](super::RunCounters).
    Run(&'a str),
    /// `GET` → [`Closure`](super::closure::Closure): what the run was
    /// served, kept a while after it ends.
    RunClosure(&'a str),
    /// `POST` [`BundleRequest`](super::closure::BundleRequest) → the
    /// bundle file.
    Bundle,
    /// `POST` a bundle file as the body →
    /// [`ImportAnswer`](super::closure::ImportAnswer): stored only if
    /// every entry verifies.
    BundleImport,
    /// `POST` [`GcRequest`](super::admin::GcRequest) →
    /// [`Removed`](super::admin::Removed).
    Gc,
    /// `POST` [`DeleteRequest`](super::admin::DeleteRequest) →
    /// [`Removed`](super::admin::Removed).
    Delete,
    /// `POST` [`PruneRequest`](super::admin::PruneRequest) →
    /// [`Pruned`](super::admin::Pruned).
    Prune,
    /// `POST` [`PrepareRequest`](super::prepare::PrepareRequest) →
    /// [`PrepareAnswer`](super::prepare::PrepareAnswer).
    PrepareProviders,
    /// `POST` [`LocalRequest`](super::git_local::LocalRequest) →
    /// [`LocalAnswer`](super::git_local::LocalAnswer).
    LocalClones,
}

impl<'a> Endpoint<'a> {
    /// The path after the server's secret, without a leading `/`:
    /// `_tfmirror/runs/<id>`.
    pub fn path(&self) -> String {
        let rest = match self {
            Endpoint::Health => "health".to_owned(),
            Endpoint::Metrics => "metrics".to_owned(),
            Endpoint::Artifacts => "artifacts".to_owned(),
            Endpoint::Run(id) => format!("runs/{id}"),
            Endpoint::RunClosure(id) => format!("runs/{id}/closure"),
            Endpoint::Bundle => "bundle".to_owned(),
            Endpoint::BundleImport => "bundle/import".to_owned(),
            Endpoint::Gc => "gc".to_owned(),
            Endpoint::Delete => "delete".to_owned(),
            Endpoint::Prune => "prune".to_owned(),
            Endpoint::PrepareProviders => "providers/prepare".to_owned(),
            Endpoint::LocalClones => "git/local".to_owned(),
        };
        format!("{OWN_PREFIX}/{rest}")
    }

    /// The endpoint a request's decoded path segments name, if any.
    pub fn parse(segments: &[&'a str]) -> Option<Endpoint<'a>> {
        let [OWN_PREFIX, rest @ ..] = segments else {
            return None;
        };
        Some(match rest {
            ["health"] => Endpoint::Health,
            ["metrics"] => Endpoint::Metrics,
            ["artifacts"] => Endpoint::Artifacts,
            ["runs", id] => Endpoint::Run(id),
            ["runs", id, "closure"] => Endpoint::RunClosure(id),
            ["bundle"] => Endpoint::Bundle,
            ["bundle", "import"] => Endpoint::BundleImport,
            ["gc"] => Endpoint::Gc,
            ["delete"] => Endpoint::Delete,
            ["prune"] => Endpoint::Prune,
            ["providers", "prepare"] => Endpoint::PrepareProviders,
            ["git", "local"] => Endpoint::LocalClones,
            _ => return None,
        })
    }

    /// Whether a raw request path asks for the health check, with or
    /// without a secret in front.
    pub fn is_health_path(path: &str) -> bool {
        path.strip_suffix(&Endpoint::Health.path())
            .is_some_and(|front| front.ends_with('/'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Endpoint<'static>; 12] = [
        Endpoint::Health,
        Endpoint::Metrics,
        Endpoint::Artifacts,
        Endpoint::Run("0123456789abcdef"),
        Endpoint::RunClosure("0123456789abcdef"),
        Endpoint::Bundle,
        Endpoint::BundleImport,
        Endpoint::Gc,
        Endpoint::Delete,
        Endpoint::Prune,
        Endpoint::PrepareProviders,
        Endpoint::LocalClones,
    ];

    #[test]
    fn every_path_parses_back() {
        for endpoint in ALL {
            let path = endpoint.path();
            let segments: Vec<&str> = path.split('/').collect();
            assert_eq!(Endpoint::parse(&segments), Some(endpoint), "{path}");
        }
    }

    #[test]
    fn the_paths_are_the_documented_ones() {
        let paths: Vec<String> = ALL.iter().map(Endpoint::path).collect();
        assert_eq!(
            paths,
            [
                "_tfmirror/health",
                "_tfmirror/metrics",
                "_tfmirror/artifacts",
                "_tfmirror/runs/0123456789abcdef",
                "_tfmirror/runs/0123456789abcdef/closure",
                "_tfmirror/bundle",
                "_tfmirror/bundle/import",
                "_tfmirror/gc",
                "_tfmirror/delete",
                "_tfmirror/prune",
                "_tfmirror/providers/prepare",
                "_tfmirror/git/local",
            ]
        );
    }

    #[test]
    fn other_paths_are_no_endpoint() {
        for path in [
            "_tfmirror",
            "_tfmirror/runs",
            "_tfmirror/gc/x",
            "v1/health",
            "_tfmirror/git",
        ] {
            let segments: Vec<&str> = path.split('/').collect();
            assert_eq!(Endpoint::parse(&segments), None, "{path}");
        }
    }

    #[test]
    fn health_is_found_behind_a_secret() {
        assert!(Endpoint::is_health_path("/_tfmirror/health"));
        assert!(Endpoint::is_health_path("/0af3/_tfmirror/health"));
        assert!(!Endpoint::is_health_path("/_tfmirror/metrics"));
    }
}
