//! End to end against a real Garage: `tfmirror cache push` seeds the
//! shared tier from a warm cache, and `tfmirror status` shows the tier.

use std::process::Output;
use std::time::{Duration, Instant};

use crate::fixtures::garage::Garage;
use crate::fixtures::{GitRepoSpec, ProviderSpec};
use crate::harness::{assert_success, World};

const ZIP: &str = "providers/registry.terraform.io/hashicorp/alpha/\
                   terraform-provider-alpha_1.2.0_linux_amd64.zip";

/// Big enough that the zip goes up in three parts (8 MiB each at most),
/// as a real provider's 200 MB would.
const ZIP_PADDING: usize = 20 << 20;

/// One provider warmed by a real `terraform init` with no shared tier
/// (which would have shared it already), then a config that shares
/// `garage`'s bucket below `prefix`, for the next server.
fn warm_world(garage: &Garage, prefix: &str) -> World {
    let provider = ProviderSpec::new("hashicorp", "alpha", &["1.2.0"])
        .with_platforms(&[("linux", "amd64")])
        .with_extra_bytes(ZIP_PADDING);
    let world = World::new(vec![provider]);
    let dir = world.workdir("warm", &[("hashicorp", "alpha", "1.2.0")]);
    assert_success(&world.init(&dir), "init through tfmirror");
    world.stop_server();
    world.append_config(&garage.config_toml(prefix));
    world
}

fn run(world: &World, garage: &Garage, args: &[&str]) -> Output {
    world
        .tfmirror(args)
        .envs(garage.env())
        .output()
        .expect("run tfmirror")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn push_uploads_the_cached_packages_once_and_status_shows_the_tier() {
    let Some(garage) = Garage::start() else {
        return;
    };
    eprintln!("garage ready in {:?}", garage.start_time);
    let world = warm_world(&garage, "team");

    let first = run(&world, &garage, &["cache", "push"]);
    assert_success(&first, "first push");
    let summary = stdout(&first);
    // The zip, its SHA256SUMS and signature.
    assert!(summary.starts_with("pushed 3 objects ("), "{summary}");
    assert!(summary.contains(", 0 already there"), "{summary}");
    let key = format!("team/v1/{ZIP}");
    let keys = garage.list();
    assert!(keys.contains(&key), "{keys:#?}");
    assert!(
        keys.iter()
            .all(|k| k.starts_with("team/v1/providers/")
                || k.starts_with("team/v1/provider-checksums/")),
        "only shared buckets are pushed: {keys:#?}"
    );
    let expected = world
        .registry
        .zip_bytes("hashicorp", "alpha", "1.2.0", "linux", "amd64");
    assert!(expected.len() > ZIP_PADDING);
    assert!(
        garage.get(&key).unwrap() == expected,
        "the zip's bytes, whole"
    );

    let second = run(&world, &garage, &["cache", "push"]);
    assert_success(&second, "second push");
    assert!(
        stdout(&second).starts_with("pushed 0 objects (0 B), 3 already there"),
        "{}",
        stdout(&second)
    );
    assert_eq!(garage.list(), keys);

    let text = status_once_known(&world, &garage);
    assert!(text.contains("shared:    s3://tfmirror/team"), "{text}");
    assert!(text.contains("state:   ok"), "{text}");
}

#[test]
fn a_stopped_bucket_fails_the_push_and_warns_once() {
    let Some(mut garage) = Garage::start() else {
        return;
    };
    garage.stop();
    let world = warm_world(&garage, "down");
    let push = run(&world, &garage, &["cache", "push"]);
    assert_eq!(push.status.code(), Some(1), "{}", stdout(&push));
    assert!(stdout(&push).contains("3 failed"), "{}", stdout(&push));

    let status = status_once_known(&world, &garage);
    assert!(status.contains("state:   failing"), "{status}");
    let log = std::fs::read_to_string(world.cache_dir().join("server.log")).unwrap();
    let warnings: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("shared tier"))
        .collect();
    assert_eq!(warnings.len(), 1, "{log}");
    assert!(warnings[0].contains("using the upstream"), "{log}");

    // Back up, the same directories and ports answer again.
    garage.start_again();
    let push = run(&world, &garage, &["cache", "push"]);
    assert_success(&push, "push once garage is back");
    assert!(
        stdout(&push).starts_with("pushed 3 objects"),
        "{}",
        stdout(&push)
    );
}

#[test]
fn a_bucket_that_does_not_exist_shows_as_failing() {
    let Some(garage) = Garage::start() else {
        return;
    };
    let world = World::new(Vec::new());
    let config = garage.config_toml("p");
    world.append_config(&config.replace("s3://tfmirror/", "s3://no-such-bucket/"));
    // Starts the server (for the listing) and pushes nothing.
    let push = run(&world, &garage, &["cache", "push"]);
    assert_success(&push, "push of an empty cache");
    assert!(
        stdout(&push).starts_with("pushed 0 objects"),
        "{}",
        stdout(&push)
    );
    let status = status_once_known(&world, &garage);
    assert!(status.contains("state:   failing"), "{status}");
    assert!(status.contains("NoSuchBucket"), "{status}");
}

/// `tfmirror status` once the server's probe of the bucket has answered:
/// it runs in the background from the server's start.
fn status_once_known(world: &World, garage: &Garage) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status = run(world, garage, &["status"]);
        assert_success(&status, "status");
        let text = stdout(&status);
        if !text.contains("state:   unknown") {
            return text;
        }
        assert!(Instant::now() < deadline, "the tier stayed unknown: {text}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A git mirror made before the tier existed goes up as a bundle, and a
/// new cache seeds its mirror from it: no pack from the upstream.
#[test]
fn push_bundles_git_mirrors_for_new_caches_to_seed_from() {
    let Some(garage) = Garage::start() else {
        return;
    };
    const REPO: &str = "org/infra.git";
    let world = World::with_git(Vec::new(), vec![GitRepoSpec::new(REPO)], "");
    let main_tf = format!(
        "module \"vpc\" {{\n  source = \"git::{}//modules/vpc?ref=v1.0.0\"\n}}\n",
        world.registry.git_url(REPO)
    );
    let first = world.workdir_with("first", &main_tf);
    assert_success(&world.init(&first), "init without a tier");
    world.stop_server();
    world.append_config(&garage.config_toml("team"));

    let push = run(&world, &garage, &["cache", "push"]);
    assert_success(&push, "push");
    assert!(
        stdout(&push).starts_with("pushed 1 objects"),
        "{}",
        stdout(&push)
    );
    let keys = garage.list();
    assert!(
        keys.iter()
            .any(|k| k.starts_with("team/v1/git/") && k.ends_with("/org/infra.git.bundle")),
        "{keys:#?}"
    );
    world.stop_server();

    world.registry.clear_requests();
    let cache = world.root.path().join("cache-new");
    let second = world.workdir_with("second", &main_tf);
    let mut env = garage.env();
    env.push(("TFMIRROR_CACHE_DIR".into(), cache.to_str().unwrap().into()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_success(&world.init_with_env(&second, &env), "init of a new cache");
    assert_eq!(
        world.registry.git_pack_fetches(),
        0,
        "seeded from the bundle: {:#?}",
        world.registry.requests()
    );
    let stop = world
        .tfmirror(&["stop"])
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert_success(&stop, "stop the new cache's server");
}
