//! The user's own `host` blocks, as upstream for the hosts they name.
//!
//! The generated CLI config replaces a user's `host "registry.terraform.io"`
//! block (pointing at Artifactory, say) with tfmirror's own, so tfmirror
//! must send that host's requests where the user's block did instead of
//! where discovery would. It learns those blocks twice: from the user's
//! config when the server starts (for the persistent config `tfmirror env`
//! names), and from each `exec` run, which may read another file
//! (`TF_CLI_CONFIG_FILE`, OpenTofu's `~/.tofurc`). A run's own routes are
//! used for its requests; requests of no known run use the start's.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use url::Url;

/// One host's services from a user's `host` block, e.g.
/// `registry.terraform.io` with `providers.v1` =
/// `https://artifactory.example.com/api/terraform/v1/providers/`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostRoute {
    pub host: String,
    /// Service name → absolute http(s) URL. A service not listed is found
    /// by discovery, as without the block.
    pub services: BTreeMap<String, String>,
}

/// Runs whose routes are kept at most: a run that never ends (its `exec`
/// was killed) must not grow the table for ever.
const MAX_RUNS: usize = 1024;

/// The table of routes, shared by the server's admin endpoints (which fill
/// it) and [`super::Discovery`] (which reads it).
#[derive(Clone, Default)]
pub struct UserRoutes(Arc<Mutex<Table>>);

#[derive(Default)]
struct Table {
    start: Routes,
    runs: HashMap<String, Routes>,
    /// Run ids, oldest first, to drop the oldest past [`MAX_RUNS`].
    order: VecDeque<String>,
}

/// `(host in lower case, service)` → base URL.
type Routes = HashMap<(String, String), Url>;

impl UserRoutes {
    /// The routes of the user's config as the server starts.
    pub fn set_start(&self, routes: &[HostRoute]) {
        self.lock().start = table(routes);
    }

    /// The routes of one `exec` run's config, for its requests only.
    pub fn begin_run(&self, run: &str, routes: &[HostRoute]) {
        let mut table = self.lock();
        if table
            .runs
            .insert(run.to_owned(), self::table(routes))
            .is_none()
        {
            table.order.push_back(run.to_owned());
        }
        while table.order.len() > MAX_RUNS {
            if let Some(oldest) = table.order.pop_front() {
                table.runs.remove(&oldest);
            }
        }
    }

    pub fn end_run(&self, run: &str) {
        let mut table = self.lock();
        table.runs.remove(run);
        table.order.retain(|known| known != run);
    }

    /// The base URL of `service` on `host` for a request of `run`: the
    /// run's own routes when it announced them, else the start's.
    pub fn service_url(&self, run: Option<&str>, host: &str, service: &str) -> Option<Url> {
        let table = self.lock();
        let routes = run
            .and_then(|run| table.runs.get(run))
            .unwrap_or(&table.start);
        routes
            .get(&(host.to_ascii_lowercase(), service.to_owned()))
            .cloned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        // The table is replaced whole under the lock; a panic elsewhere
        // cannot leave it half written.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The routes whose URLs are http(s); anything else is ignored, as
/// Terraform refuses it.
fn table(routes: &[HostRoute]) -> Routes {
    routes
        .iter()
        .flat_map(|route| {
            route.services.iter().filter_map(|(service, url)| {
                let url = Url::parse(url).ok()?;
                let base = super::discovery::service_base(url)?;
                Some(((route.host.to_ascii_lowercase(), service.clone()), base))
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(host: &str, providers: &str) -> HostRoute {
        HostRoute {
            host: host.into(),
            services: BTreeMap::from([("providers.v1".into(), providers.into())]),
        }
    }

    #[test]
    fn a_run_uses_its_own_routes_and_others_the_starts() {
        let routes = UserRoutes::default();
        let url = |run| {
            routes
                .service_url(run, "Registry.Terraform.io", "providers.v1")
                .map(|url| url.to_string())
        };
        assert_eq!(url(None), None);
        routes.set_start(&[route("registry.terraform.io", "https://start.example/p")]);
        routes.begin_run(
            "0123abcd",
            &[route("registry.terraform.io", "https://run.example/p/")],
        );
        routes.begin_run("4567abcd", &[]);
        assert_eq!(url(None).as_deref(), Some("https://start.example/p/"));
        assert_eq!(
            url(Some("89abcdef")).as_deref(),
            Some("https://start.example/p/")
        );
        assert_eq!(
            url(Some("0123abcd")).as_deref(),
            Some("https://run.example/p/")
        );
        assert_eq!(
            url(Some("4567abcd")),
            None,
            "a run without a block uses discovery"
        );
        routes.end_run("0123abcd");
        assert_eq!(
            url(Some("0123abcd")).as_deref(),
            Some("https://start.example/p/")
        );
        assert_eq!(
            routes.service_url(None, "registry.terraform.io", "modules.v1"),
            None
        );
    }

    #[test]
    fn only_http_urls_are_routes_and_old_runs_are_dropped() {
        let routes = UserRoutes::default();
        routes.set_start(&[route("h.example", "ftp://x/")]);
        assert_eq!(routes.service_url(None, "h.example", "providers.v1"), None);
        for n in 0..=MAX_RUNS {
            routes.begin_run(&format!("{n:08x}"), &[route("h.example", "https://r/")]);
        }
        assert!(routes
            .service_url(Some("00000000"), "h.example", "providers.v1")
            .is_none());
        assert!(routes
            .service_url(
                Some(&format!("{MAX_RUNS:08x}")),
                "h.example",
                "providers.v1"
            )
            .is_some());
    }
}
