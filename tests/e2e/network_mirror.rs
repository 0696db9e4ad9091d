//! End to end: Terraform installs providers from tfmirror's network mirror
//! over HTTPS (`provider_installation { network_mirror { ... } }`), with a
//! test CA it is told to trust through `SSL_CERT_FILE`.

use std::path::Path;
use std::process::Output;

use crate::fixtures::http::get;
use crate::fixtures::ProviderSpec;
use crate::harness::{assert_success, terraform, World};

const PROVIDERS: [(&str, &str, &str); 2] =
    [("hashicorp", "alpha", "1.2.0"), ("acme", "beta", "0.3.0")];

fn world() -> World {
    World::new(vec![
        ProviderSpec::new("hashicorp", "alpha", &["1.0.0", "1.2.0"]),
        ProviderSpec::new("acme", "beta", &["0.3.0"]),
    ])
}

/// Plain `terraform init` with the given CLI config and trusted CA.
fn init(world: &World, dir: &Path, cli_config: &Path, ca: &Path) -> Output {
    world
        .command(terraform())
        .args(["init", "-input=false", "-no-color"])
        .current_dir(dir)
        .env("TF_CLI_CONFIG_FILE", cli_config)
        .env("SSL_CERT_FILE", ca)
        .output()
        .unwrap()
}

#[test]
fn terraform_installs_from_the_network_mirror_over_tls() {
    let world = world();
    let (server, ca) = world.serve_tls(&[]);
    assert!(
        server.url.starts_with("https://127.0.0.1:"),
        "{}",
        server.url
    );

    let rc = world
        .tfmirror(&["rc", "--network-mirror"])
        .output()
        .unwrap();
    assert_success(&rc, "tfmirror rc --network-mirror");
    let text = String::from_utf8(rc.stdout).unwrap();
    assert!(
        text.contains(&format!("url = \"{}/providers/\"", server.url)),
        "{text}"
    );
    assert!(!text.contains("host \""), "{text}");
    let cli_config = world.root.path().join("mirror.tfrc");
    std::fs::write(&cli_config, text).unwrap();

    let first = world.workdir("first", &PROVIDERS);
    assert_success(
        &init(&world, &first, &cli_config, &ca),
        "cold init from the mirror",
    );
    assert!(world.registry.artifact_requests() > 0);
    let hashes = crate::harness::locked_hashes(&first, "hashicorp", "alpha");

    world.registry.clear_requests();
    let second = world.workdir("second", &PROVIDERS);
    assert_success(
        &init(&world, &second, &cli_config, &ca),
        "warm init from the mirror",
    );
    assert_eq!(
        world.registry.artifact_requests(),
        0,
        "{:#?}",
        world.registry.requests()
    );
    assert_eq!(
        crate::harness::locked_hashes(&second, "hashicorp", "alpha"),
        hashes,
        "the same hashes from the cache"
    );

    // Terraform records the h1: it computes itself; the mirror lists the
    // same value for the cached zip.
    drop(server);
    let plain = world.serve();
    let version = get(&format!(
        "{}/providers/registry.terraform.io/hashicorp/alpha/1.2.0.json",
        plain.url
    ));
    let listed = version.json()["archives"]["linux_amd64"]["hashes"].clone();
    assert_eq!(
        listed[0].as_str(),
        Some(hashes[0].as_str()),
        "{listed} vs {hashes:?}"
    );
}

#[test]
fn the_mirror_answers_from_disk_when_the_upstream_is_down() {
    let world = world();
    let server = world.serve();
    let base = format!(
        "{}/providers/registry.terraform.io/hashicorp/alpha",
        server.url
    );
    let version = get(&format!("{base}/1.2.0.json"));
    assert_eq!(version.status, 200, "{}", version.text());
    assert_eq!(version.header("content-type"), Some("application/json"));
    let archives = version.json()["archives"].clone();
    assert_eq!(
        archives.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["darwin_arm64", "linux_amd64", "windows_amd64"]
    );
    let linux = &archives["linux_amd64"];
    let url = linux["url"].as_str().unwrap();
    assert_eq!(
        url,
        format!("{base}/terraform-provider-alpha_1.2.0_linux_amd64.zip")
    );
    let hashes: Vec<_> = linux["hashes"].as_array().unwrap().iter().collect();
    assert_eq!(
        hashes.len(),
        1,
        "only zh: until the zip is cached: {hashes:?}"
    );

    let zip = get(url);
    assert_eq!(zip.status, 200);
    assert!(
        zip.body
            == world
                .registry
                .zip_bytes("hashicorp", "alpha", "1.2.0", "linux", "amd64")
    );

    world.registry.stop();
    let index = get(&format!("{base}/index.json"));
    assert_eq!(index.status, 200, "{}", index.text());
    assert!(
        index.json()["versions"]["1.2.0"].is_object(),
        "{}",
        index.text()
    );
    let version = get(&format!("{base}/1.2.0.json"));
    assert_eq!(version.status, 200, "{}", version.text());
    let hashes = version.json()["archives"]["linux_amd64"]["hashes"].clone();
    let hashes: Vec<&str> = hashes
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h.as_str().unwrap())
        .collect();
    assert!(
        hashes[0].starts_with("h1:") && hashes.last().unwrap().starts_with("zh:"),
        "{hashes:?}"
    );

    for bad in [
        "/providers/registry.terraform.io/hashicorp/alpha/..%2f..%2fx.json",
        "/providers/registry.terraform.io/hashicorp/alpha/terraform-provider-alpha_1.2.0_linux.zip",
    ] {
        let response = get(&format!("{}{bad}", server.url));
        assert!(
            matches!(response.status, 400 | 404),
            "{bad}: {}",
            response.status
        );
    }
}

/// `terraform providers mirror` output, imported into another cache whose
/// upstream is down (so with the lock file's hashes), then installed from
/// by Terraform twice: with the cache's `providers/` as a
/// `filesystem_mirror`, and through the network mirror over TLS.
#[test]
fn an_imported_mirror_directory_serves_inits_without_the_upstream() {
    let source = world();
    let mirror = source.root.path().join("mirror");
    let workdir = source.workdir("source", &PROVIDERS);
    assert_success(&source.init(&workdir), "init that writes the lock file");
    let lock_file = workdir.join(".terraform.lock.hcl");
    let output = source
        .tfmirror(&["exec", "--"])
        .arg(terraform())
        .args(["providers", "mirror", "-platform=linux_amd64"])
        .arg(&mirror)
        .current_dir(&workdir)
        .output()
        .unwrap();
    assert_success(&output, "terraform providers mirror");

    let world = world();
    world.registry.stop();
    let import = |dir: &Path| {
        world
            .tfmirror(&["cache", "import", dir.to_str().unwrap(), "--lock-file"])
            .arg(&lock_file)
            .output()
            .unwrap()
    };
    let output = import(&mirror);
    assert_success(&output, "cache import");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("2 imported, 0 already cached"), "{stdout}");
    let output = import(&mirror);
    assert!(String::from_utf8_lossy(&output.stdout).contains("0 imported, 2 already cached"));

    // A zip that does not match its version file is refused.
    let tampered = world.root.path().join("tampered");
    copy_tree(&mirror, &tampered);
    let zip = tampered
        .join("registry.terraform.io/acme/beta/terraform-provider-beta_0.3.0_linux_amd64.zip");
    let mut bytes = std::fs::read(&zip).unwrap();
    let last = bytes.len() - 30;
    bytes[last] ^= 0xff;
    std::fs::write(&zip, bytes).unwrap();
    let output = import(&tampered);
    let text = crate::harness::assert_failure(&output, "import of a tampered zip");
    assert!(text.contains("does not match the hashes"), "{text}");

    let filesystem = world.root.path().join("filesystem.tfrc");
    let providers = world.cache_dir().join("providers");
    std::fs::write(
        &filesystem,
        format!(
            "provider_installation {{\n  filesystem_mirror {{\n    path = \"{}\"\n  }}\n}}\n",
            providers.display()
        ),
    )
    .unwrap();
    let dir = world.workdir("filesystem", &PROVIDERS);
    let output = world
        .command(terraform())
        .args(["init", "-input=false", "-no-color"])
        .current_dir(&dir)
        .env("TF_CLI_CONFIG_FILE", &filesystem)
        .output()
        .unwrap();
    assert_success(
        &output,
        "init from <cache>/providers as a filesystem_mirror",
    );

    let (_server, ca) = world.serve_tls(&[]);
    let rc = world
        .tfmirror(&["rc", "--network-mirror"])
        .output()
        .unwrap();
    let network = world.root.path().join("network.tfrc");
    std::fs::write(&network, rc.stdout).unwrap();
    let dir = world.workdir("network", &PROVIDERS);
    assert_success(
        &init(&world, &dir, &network, &ca),
        "init from the network mirror with the upstream down",
    );
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}
