//! A second cache tier on a real object store (Garage): caches on other
//! machines (here, other cache directories) that share one bucket fetch each
//! artifact from the upstream once between them; what comes from the bucket
//! is verified like what comes from the upstream; and the bucket failing
//! never fails an init.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use crate::fixtures::garage::Garage;
use crate::fixtures::{GitRepoSpec, ModuleSpec, ProviderSpec};
use crate::harness::{assert_success, installed_ids, World};

pub(crate) const REPO: &str = "org/infra.git";
pub(crate) const PROVIDERS: [(&str, &str, &str); 2] =
    [("acme", "alpha", "1.0.0"), ("acme", "beta", "2.0.0")];

fn team_world(garage: &Garage) -> World {
    let world = team_root_world(&[("linux", "amd64")], "");
    world.append_config(&garage.config_toml("team"));
    world
}

/// Providers built for `platforms`, an HTTP-archive module, registry
/// modules in a git mono-repo, and (with [`team_main_tf`]) a direct `git::`
/// source into the same repository; `extra` goes at the top of the config.
/// The offline and bundle tests use it too.
pub(crate) fn team_root_world(platforms: &[(&str, &str)], extra: &str) -> World {
    let providers = PROVIDERS
        .iter()
        .map(|(ns, name, version)| {
            ProviderSpec::new(ns, name, &[version]).with_platforms(platforms)
        })
        .collect();
    let modules = vec![
        ModuleSpec::new("acme", "net", "aws", &["1.0.0"]),
        ModuleSpec::new("acme", "vpc", "git", &["1.1.0"]).with_git_location(
            REPO,
            "modules/vpc",
            "v1.1.0",
        ),
        ModuleSpec::new("acme", "dns", "git", &["1.0.0"]).with_git_location(
            REPO,
            "modules/dns",
            "v1.0.0",
        ),
    ];
    World::start_all(providers, modules, vec![GitRepoSpec::new(REPO)], extra)
}

pub(crate) fn team_main_tf(world: &World) -> String {
    let mut text = crate::harness::main_tf(&PROVIDERS);
    let repo = world.registry.git_url(REPO);
    text.push_str(&format!(
        "module \"direct\" {{\n  source = \"git::{repo}//modules/vpc?ref=v1.0.0\"\n}}\n"
    ));
    for (name, module, version) in [
        ("net", "acme/net/aws", "1.0.0"),
        ("vpc", "acme/vpc/git", "1.1.0"),
        ("dns", "acme/dns/git", "1.0.0"),
    ] {
        text.push_str(&format!(
            "module \"{name}\" {{\n  source  = \"{module}\"\n  version = \"{version}\"\n}}\n"
        ));
    }
    text
}

/// One machine of the team: its own cache directory and working copy.
struct Runner {
    cache: PathBuf,
    dir: PathBuf,
}

impl Runner {
    fn new(world: &World, name: &str) -> Runner {
        let cache = world.root.path().join(format!("cache-{name}"));
        let dir = world.workdir_with(name, &team_main_tf(world));
        Runner { cache, dir }
    }

    fn env<'a>(&'a self, garage: &'a [(String, String)]) -> Vec<(&'a str, &'a str)> {
        let mut env: Vec<(&str, &str)> = garage
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        env.push(("TFMIRROR_CACHE_DIR", self.cache.to_str().unwrap()));
        env
    }

    fn init(&self, world: &World, garage: &[(String, String)]) -> Output {
        world.init_with_env(&self.dir, &self.env(garage))
    }

    fn stop(&self, world: &World, garage: &[(String, String)]) {
        let output = world
            .tfmirror(&["stop"])
            .envs(self.env(garage))
            .output()
            .unwrap();
        assert_success(&output, "tfmirror stop");
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.cache.join("server.log")).unwrap_or_default()
    }
}

/// Waits (boundedly) until the bucket's keys satisfy `done`; its keys.
fn wait_for_bucket(garage: &Garage, what: &str, done: impl Fn(&[String]) -> bool) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let keys = garage.list();
        if done(&keys) {
            return keys;
        }
        assert!(
            Instant::now() < deadline,
            "the bucket never held {what}: {keys:#?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn count(keys: &[String], suffix: &str) -> usize {
    keys.iter().filter(|k| k.ends_with(suffix)).count()
}

/// Everything the first runner fetched is in the bucket: both zips, their
/// checksums and signatures, the HTTP archive, and the mono-repo's bundle.
fn wait_until_shared(garage: &Garage) -> Vec<String> {
    wait_for_bucket(garage, "every artifact of the first init", |keys| {
        count(keys, ".zip") == 2
            && count(keys, "/SHA256SUMS") == 2
            && count(keys, "/SHA256SUMS.sig") == 2
            && count(keys, ".tar.gz") == 1
            && count(keys, ".bundle") == 1
    })
}

/// The team's first runner, after its cold init, and the bucket's keys once
/// everything it fetched is shared.
fn first_runner(world: &World, garage: &Garage, env: &[(String, String)]) -> (Runner, Vec<String>) {
    let first = Runner::new(world, "first");
    assert_success(&first.init(world, env), "the first runner's cold init");
    (first, wait_until_shared(garage))
}

/// What a cold init asks of the upstream's artifact hosts: zips and
/// checksums, archives, git packs.
fn artifact_fetches(world: &World) -> (usize, usize, usize) {
    let registry = &world.registry;
    (
        registry.artifact_requests(),
        registry.module_archive_requests(),
        registry.git_pack_fetches(),
    )
}

#[test]
fn a_second_cache_fetches_no_artifact_the_first_one_shared() {
    let Some(garage) = Garage::start() else {
        return;
    };
    let env = garage.env();
    let world = team_world(&garage);
    let (first, keys) = first_runner(&world, &garage, &env);
    let (zips, archives, packs) = artifact_fetches(&world);
    assert!(zips > 0 && archives > 0 && packs > 0, "it fetched upstream");
    assert!(
        keys.iter().all(|k| k.starts_with("team/v1/")),
        "under the prefix, with the layout's version: {keys:#?}"
    );

    world.registry.clear_requests();
    let second = Runner::new(&world, "second");
    assert_success(&second.init(&world, &env), "the second runner's cold init");
    assert_eq!(
        artifact_fetches(&world),
        (0, 0, 0),
        "no zip, checksum, archive or pack came from the upstream: {:#?}",
        world.registry.requests()
    );
    assert!(world.registry.git_info_refs() > 0, "refs are still checked");
    assert_eq!(installed_ids(&second.dir), installed_ids(&first.dir));
    assert_eq!(
        std::fs::read(second.dir.join(".terraform.lock.hcl")).unwrap(),
        std::fs::read(first.dir.join(".terraform.lock.hcl")).unwrap()
    );
    first.stop(&world, &env);
    second.stop(&world, &env);
}

/// The bucket goes down between two runners: the second one's cold init
/// takes everything from the upstream, with one warning.
#[test]
fn a_stopped_bucket_costs_one_warning_and_no_init() {
    let Some(mut garage) = Garage::start() else {
        return;
    };
    let env = garage.env();
    let world = team_world(&garage);
    let (first, _) = first_runner(&world, &garage, &env);
    first.stop(&world, &env);
    garage.stop();
    world.registry.clear_requests();
    let runner = Runner::new(&world, "alone");
    let output = runner.init(&world, &env);
    assert_success(&output, "an init with the bucket down");
    assert_eq!(
        world
            .registry
            .count(|r| r.method == "GET" && r.path.ends_with(".zip")),
        PROVIDERS.len(),
        "every zip came from the upstream"
    );
    runner.stop(&world, &env);
    let log = runner.log();
    let warnings: Vec<_> = log
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("shared tier"))
        .collect();
    assert_eq!(warnings.len(), 1, "one warning per run:\n{log}");
}

#[test]
fn a_tampered_zip_in_the_bucket_is_neither_served_nor_stored() {
    let Some(garage) = Garage::start() else {
        return;
    };
    let env = garage.env();
    let world = team_world(&garage);
    let (first, keys) = first_runner(&world, &garage, &env);
    let zip = keys.iter().find(|k| k.ends_with(".zip")).unwrap();
    let mut bytes = garage.get(zip).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    garage.put(zip, bytes);

    world.registry.clear_requests();
    let second = Runner::new(&world, "second");
    assert_success(&second.init(&world, &env), "an init with a tampered zip");
    let zip_gets = world
        .registry
        .count(|r| r.method == "GET" && r.path.ends_with(".zip"));
    assert_eq!(
        zip_gets, 1,
        "the tampered zip came from the upstream instead"
    );
    let name = Path::new(zip).file_name().unwrap();
    let stored = walk_find(&second.cache.join("providers"), name).expect("stored");
    let upstream = world.registry.count(|_| true);
    assert!(upstream > 0);
    let (ns, kind, version) = zip_parts(name.to_str().unwrap());
    assert_eq!(
        std::fs::read(stored).unwrap(),
        world
            .registry
            .zip_bytes(ns, &kind, &version, "linux", "amd64"),
        "the upstream's bytes were stored"
    );
    assert!(second.log().contains("not using"), "{}", second.log());
    first.stop(&world, &env);
    second.stop(&world, &env);
}

/// `terraform-provider-<type>_<version>_linux_amd64.zip` → ("acme", type, version).
fn zip_parts(name: &str) -> (&'static str, String, String) {
    let rest = name.strip_prefix("terraform-provider-").unwrap();
    let mut parts = rest.split('_');
    let kind = parts.next().unwrap().to_owned();
    let version = parts.next().unwrap().to_owned();
    ("acme", kind, version)
}

fn walk_find(dir: &Path, name: &std::ffi::OsStr) -> Option<PathBuf> {
    for entry in std::fs::read_dir(dir).ok()? {
        let path = entry.ok()?.path();
        if path.is_dir() {
            if let Some(found) = walk_find(&path, name) {
                return Some(found);
            }
        } else if path.file_name() == Some(name) {
            return Some(path);
        }
    }
    None
}

#[test]
fn eight_cold_caches_at_once_share_one_correct_copy() {
    let Some(garage) = Garage::start() else {
        return;
    };
    let env = garage.env();
    let world = team_world(&garage);
    let runners: Vec<Runner> = (0..8)
        .map(|i| Runner::new(&world, &format!("r{i}")))
        .collect();
    std::thread::scope(|scope| {
        let inits: Vec<_> = runners
            .iter()
            .map(|runner| scope.spawn(|| runner.init(&world, &env)))
            .collect();
        for init in inits {
            assert_success(&init.join().unwrap(), "a concurrent cold init");
        }
    });
    let keys = wait_until_shared(&garage);
    for (ns, name, version) in PROVIDERS {
        let zip = format!("terraform-provider-{name}_{version}_linux_amd64.zip");
        let key = keys.iter().find(|k| k.ends_with(&zip)).unwrap();
        assert_eq!(
            garage.get(key).unwrap(),
            world
                .registry
                .zip_bytes(ns, name, version, "linux", "amd64")
        );
    }
    let archive = keys.iter().find(|k| k.ends_with(".tar.gz")).unwrap();
    assert_eq!(
        garage.get(archive).unwrap(),
        world
            .registry
            .module_archive_bytes("acme", "net", "aws", "1.0.0")
    );
    for runner in &runners {
        runner.stop(&world, &env);
    }
}
