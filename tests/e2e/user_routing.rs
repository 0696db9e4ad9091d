//! End to end: the user's own routing settings. A `host` block of theirs
//! for a registry tfmirror proxies is tfmirror's upstream for that host; a
//! `provider_installation` mirror, which bypasses tfmirror, is named; and
//! `exec -- tofu` carries OpenTofu's own config files.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;

use crate::fixtures::{FakeRegistry, ProviderSpec};
use crate::harness::{assert_success, World};

const TOKEN: &str = "token-for-b";

/// A proxy for https that refuses every connection: should routing fail
/// and a request head for the real registry, it stays on loopback.
const DEAD_PROXY: [(&str, &str); 1] = [("HTTPS_PROXY", "http://127.0.0.1:9")];

fn alpha() -> Vec<ProviderSpec> {
    vec![ProviderSpec::new("hashicorp", "alpha", &["1.2.0"])]
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// tfmirror's lines about the user's own settings.
fn setting_lines(output: &Output) -> Vec<String> {
    stderr(output)
        .lines()
        .filter(|line| line.starts_with("tfmirror: "))
        .filter(|line| {
            ["your ", "yours", "goes through tfmirror"]
                .iter()
                .any(|w| line.contains(w))
        })
        .map(str::to_owned)
        .collect()
}

/// The user's `~/.terraformrc`: registry.terraform.io's services at
/// `registry`, with a token for it.
fn host_block_to(registry: &FakeRegistry) -> String {
    let url = registry.url();
    format!(
        r#"host "registry.terraform.io" {{
  services = {{
    "providers.v1" = "{url}v1/providers/"
    "modules.v1"   = "{url}v1/modules/"
  }}
}}

credentials "registry.terraform.io" {{
  token = "{TOKEN}"
}}
"#
    )
}

/// The world's config with `replacement` for its `[upstream]` entry.
fn replace_upstream_entry(world: &World, replacement: &str) {
    let config = std::fs::read_to_string(world.config_path()).unwrap();
    let entry = format!("\"registry.terraform.io\" = \"{}\"\n", world.registry.url());
    assert!(config.contains(&entry), "{config}");
    std::fs::write(world.config_path(), config.replace(&entry, replacement)).unwrap();
}

/// The world's config without its `[upstream]` entry: the user's block is
/// then the only word on where registry.terraform.io is.
fn drop_upstream_entry(world: &World) {
    replace_upstream_entry(world, "");
}

#[test]
fn the_users_host_block_is_the_upstream_for_its_host() {
    let world = World::new(alpha());
    let b = FakeRegistry::start(alpha());
    b.require_token("hashicorp", TOKEN);
    drop_upstream_entry(&world);
    std::fs::write(world.home().join(".terraformrc"), host_block_to(&b)).unwrap();

    let dir = world.workdir("routed", &[("hashicorp", "alpha", "1.2.0")]);
    let output = world.init_with_env(&dir, &DEAD_PROXY);
    assert_success(&output, "init through the user's host block");
    let versions = |r: &FakeRegistry| r.count(|q| q.path.ends_with("/alpha/versions"));
    assert!(versions(&b) >= 1, "B answered: {:?}", b.requests());
    assert!(
        b.requests()
            .iter()
            .filter(|q| q.path.starts_with("/v1/"))
            .all(|q| q.authorization.as_deref() == Some(&format!("Bearer {TOKEN}"))),
        "the user's credentials for the host go to its block's services: {:?}",
        b.requests()
    );
    assert!(b.artifact_requests() >= 1);
    assert_eq!(world.registry.requests(), [], "nothing from A");

    let lines = setting_lines(&output)
        .join("\n")
        .replace(&b.url(), "http://B/");
    insta::assert_snapshot!("host_block_line", lines);
}

/// A server started before the user's block existed learns it from the
/// run, for the fast path's preparation too: a locked init with a cold
/// cache fetches the locked provider from B and links it from the tree.
#[test]
fn a_runs_host_block_routes_the_fast_paths_preparation() {
    // No token required: the preparation is exec's request, which carries
    // only TF_TOKEN_ variables, not the credentials blocks Terraform reads.
    let b = FakeRegistry::start(alpha());
    // The lock file, made against B by another user's world.
    let locking = World::new(alpha());
    replace_upstream_entry(
        &locking,
        &format!("\"registry.terraform.io\" = \"{}\"\n", b.url()),
    );
    std::fs::write(locking.home().join(".terraformrc"), host_block_to(&b)).unwrap();
    let locked = locking.workdir("locked", &[("hashicorp", "alpha", "1.2.0")]);
    assert_success(&locking.init(&locked), "init that writes the lock file");
    b.clear_requests();

    let world = World::new(alpha());
    drop_upstream_entry(&world);
    let mut serve = world.tfmirror(&["serve"]);
    serve
        .envs(DEAD_PROXY)
        .stderr(std::process::Stdio::inherit());
    let _server = world.serve_command(serve);
    std::fs::write(world.home().join(".terraformrc"), host_block_to(&b)).unwrap();
    let dir = world.workdir("prepared", &[("hashicorp", "alpha", "1.2.0")]);
    std::fs::copy(
        locked.join(".terraform.lock.hcl"),
        dir.join(".terraform.lock.hcl"),
    )
    .unwrap();
    let output = world.init_with_env(&dir, &DEAD_PROXY);
    assert_success(&output, "locked init through the run's host block");
    let installed =
        dir.join(".terraform/providers/registry.terraform.io/hashicorp/alpha/1.2.0/linux_amd64");
    assert!(
        std::fs::symlink_metadata(&installed).is_ok_and(|m| m.file_type().is_symlink()),
        "installed from the tree:\n{}",
        stderr(&output)
    );
    assert!(
        b.artifact_requests() >= 1,
        "B served the zip: {:?}",
        b.requests()
    );
    assert_eq!(world.registry.requests(), [], "nothing from A");
}

#[test]
fn an_upstream_entry_in_tfmirrors_config_wins_over_the_host_block() {
    let world = World::new(alpha());
    let b = FakeRegistry::start(alpha());
    std::fs::write(world.home().join(".terraformrc"), host_block_to(&b)).unwrap();

    let dir = world.workdir("explicit", &[("hashicorp", "alpha", "1.2.0")]);
    let output = world.init(&dir);
    assert_success(&output, "init through [upstream]");
    assert_eq!(b.requests(), [], "nothing from the user's block");
    assert!(
        world
            .registry
            .count(|q| q.path.ends_with("/alpha/versions"))
            >= 1
    );
    let lines = setting_lines(&output);
    assert_eq!(
        lines,
        [
            r#"tfmirror: the generated CLI config replaces these settings of yours: host "registry.terraform.io""#
        ],
        "{}",
        stderr(&output)
    );
}

#[test]
fn provider_installation_mirrors_are_named_once_per_installing_run() {
    let world = World::new(alpha());
    let mirror_dir = world.root.path().join("mirror");
    std::fs::create_dir_all(&mirror_dir).unwrap();
    std::fs::write(
        world.home().join(".terraformrc"),
        format!(
            r#"provider_installation {{
  network_mirror {{
    url     = "https://mirror.example.com/providers/"
    include = ["example.com/*/*"]
  }}
  filesystem_mirror {{
    path    = "{}"
    include = ["example.com/*/*"]
  }}
  direct {{
    exclude = ["example.com/*/*"]
  }}
}}
"#,
            mirror_dir.display()
        ),
    )
    .unwrap();

    let dir = world.workdir("mirrored", &[("hashicorp", "alpha", "1.2.0")]);
    let output = world.init_with_env(&dir, &DEAD_PROXY);
    assert_success(&output, "init with the user's provider_installation");
    let lines = setting_lines(&output)
        .join("\n")
        .replace(&world.root.path().display().to_string(), "ROOT");
    insta::assert_snapshot!("provider_installation_line", lines);

    let terraform = crate::harness::terraform();
    let version = world
        .tfmirror(&["exec", "--", terraform.to_str().unwrap(), "version"])
        .current_dir(&dir)
        .output()
        .unwrap();
    assert_success(&version, "terraform version");
    assert_eq!(
        setting_lines(&version),
        Vec::<String>::new(),
        "installs nothing"
    );
}

/// A `tofu` that prints the CLI config it was given, and whether
/// `TF_CLI_CONFIG_FILE` names the same file.
fn fake_tofu(world: &World, name: &str) -> PathBuf {
    let bin = world.root.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let script = bin.join(name);
    std::fs::write(
        &script,
        "#!/bin/sh\ncat \"$TOFU_CLI_CONFIG_FILE\"\n[ \"$TF_CLI_CONFIG_FILE\" = \"$TOFU_CLI_CONFIG_FILE\" ] && echo '# both variables name this file'\n",
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    bin
}

fn run_on_path(world: &World, bin: &Path, program: &str) -> Output {
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    world
        .tfmirror(&["exec", "--", program, "version"])
        .env("PATH", path)
        .current_dir(world.root.path())
        .output()
        .unwrap()
}

/// The generated file with what changes between runs replaced: tfmirror's
/// address, secret and run id, and the temporary root.
fn redacted(text: &str, world: &World) -> String {
    let root = world.root.path().display().to_string();
    text.lines()
        .map(|line| {
            let line = line.replace(&root, "ROOT");
            match (line.find("http://127.0.0.1:"), line.find("/v1/")) {
                (Some(start), Some(end)) if start < end => {
                    format!("{}http://TFMIRROR{}", &line[..start], &line[end..])
                }
                _ => line,
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn exec_of_tofu_carries_opentofus_own_config_files() {
    let world = World::new(alpha());
    let home = world.home();
    std::fs::write(
        home.join(".terraformrc"),
        "# Terraform's own: OpenTofu reads ~/.tofurc instead.\ndisable_checkpoint_signature = true\n",
    )
    .unwrap();
    std::fs::write(
        home.join(".tofurc"),
        "# For OpenTofu only.\nplugin_cache_may_break_dependency_lock_file = true\n\ncredentials \"tofu.example.com\" {\n  token = \"tofu-token\"\n}\n",
    )
    .unwrap();
    std::fs::create_dir_all(home.join(".terraform.d")).unwrap();
    std::fs::write(
        home.join(".terraform.d/extra.tfrc"),
        "disable_checkpoint = true\n",
    )
    .unwrap();

    let bin = fake_tofu(&world, "tofu");
    let output = run_on_path(&world, &bin, "tofu");
    assert_success(&output, "exec -- tofu");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(!text.contains("disable_checkpoint_signature"), "{text}");
    insta::assert_snapshot!("tofu_generated_config", redacted(&text, &world));
    assert_eq!(setting_lines(&output), Vec::<String>::new());

    // A wrapper gets Terraform's files, and is told so.
    let bin = fake_tofu(&world, "wrapper.sh");
    let output = run_on_path(&world, &bin, "wrapper.sh");
    assert_success(&output, "exec -- wrapper.sh");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("disable_checkpoint_signature"), "{text}");
    assert!(!text.contains("tofu-token"), "{text}");
    let lines = setting_lines(&output).join("\n");
    insta::assert_snapshot!("wrapper_line", lines);
}
