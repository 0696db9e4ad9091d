//! `[policy]`: what is outside the allow-list is refused before any
//! upstream request, with a message Terraform prints naming the artifact
//! and the rule; tightening the policy holds for what is already cached,
//! the exec fast path included, and on a running server at once; and
//! `tfmirror policy check` lists what would be refused under a directory.

use std::path::Path;
use std::process::Output;

use crate::fixtures::http::get;
use crate::fixtures::{GitRepoSpec, ModuleSpec, ProviderSpec};
use crate::harness::{assert_failure, assert_success, main_tf, terraform, tfmirror, World};

/// Each command of these tests is killed past this many seconds, so a
/// hang fails the test instead of stalling the suite.
const COMMAND_LIMIT_SECS: &str = "120";

/// `tfmirror exec -- terraform init` in `dir`, bounded in time.
fn init(world: &World, dir: &Path) -> Output {
    init_with(world, dir, &[])
}

/// [`init`] with `env` added.
fn init_with(world: &World, dir: &Path, env: &[(&str, &str)]) -> Output {
    let terraform = terraform();
    world
        .command("timeout")
        .envs(env.iter().copied())
        .args(["-k", "5", COMMAND_LIMIT_SECS, tfmirror(), "exec", "--"])
        .args([
            terraform.to_str().unwrap(),
            "init",
            "-input=false",
            "-no-color",
        ])
        .current_dir(dir)
        .output()
        .expect("run tfmirror exec")
}

/// Terraform wraps its diagnostics to a width; the words are what count.
fn words(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn stop(world: &World) {
    let output = world
        .command("timeout")
        .args(["60", tfmirror(), "stop"])
        .output()
        .expect("run tfmirror stop");
    assert_success(&output, "tfmirror stop");
}

/// Upstream requests whose path names `what`.
fn requests_for(world: &World, what: &str) -> Vec<String> {
    world
        .registry
        .requests()
        .into_iter()
        .filter(|r| r.path.contains(what))
        .map(|r| r.path)
        .collect()
}

/// `(call name, source, version)`.
fn module_calls(calls: &[(&str, &str, &str)]) -> String {
    calls
        .iter()
        .map(|(name, source, version)| {
            format!(
                "module \"{name}\" {{\n  source  = \"{source}\"\n  version = \"{version}\"\n}}\n"
            )
        })
        .collect()
}

#[test]
fn what_the_policy_does_not_allow_is_refused_before_any_upstream_request() {
    let world = World::start(
        vec![
            ProviderSpec::new("hashicorp", "alpha", &["1.0.0"]),
            ProviderSpec::new("acme", "beta", &["1.0.0"]),
        ],
        vec![
            ModuleSpec::new("acme", "net", "aws", &["1.0.0"]),
            ModuleSpec::new("other", "vpc", "aws", &["1.0.0"]),
        ],
        "",
    );
    world.append_config("[policy]\nproviders = [\"hashicorp/*\"]\nmodules = [\"acme/*/*\"]\n");
    let config = world.config_path().display().to_string();

    let provider = world.workdir(
        "provider",
        &[("hashicorp", "alpha", "1.0.0"), ("acme", "beta", "1.0.0")],
    );
    let message = words(&assert_failure(
        &init(&world, &provider),
        "init of acme/beta",
    ));
    let expected = format!(
        "could not query provider registry for registry.terraform.io/acme/beta: \
         451 registry.terraform.io/acme/beta is not allowed by [policy] providers in {config}"
    );
    assert!(message.contains(&expected), "names the rule: {message}");
    assert_eq!(requests_for(&world, "acme/beta"), Vec::<String>::new());

    let module = world.workdir_with(
        "module",
        &module_calls(&[("vpc", "other/vpc/aws", "1.0.0")]),
    );
    let message = words(&assert_failure(&init(&world, &module), "init of other/vpc"));
    let expected = format!(
        "error looking up module versions: 451 registry.terraform.io/other/vpc/aws is not \
         allowed by [policy] modules in {config}"
    );
    assert!(message.contains(&expected), "names the rule: {message}");
    assert_eq!(requests_for(&world, "other/vpc"), Vec::<String>::new());

    let allowed = format!(
        "{}{}",
        main_tf(&[("hashicorp", "alpha", "1.0.0")]),
        module_calls(&[("net", "acme/net/aws", "1.0.0")])
    );
    let allowed = world.workdir_with("allowed", &allowed);
    assert_success(&init(&world, &allowed), "init of what the policy allows");
    assert!(allowed.join(".terraform/modules/net").is_dir());
    assert!(allowed
        .join(".terraform/providers/registry.terraform.io/hashicorp/alpha/1.0.0")
        .is_dir());

    // Each refusal is in the audit log, with its rule and no upstream URL.
    // The writer is a thread of its own: stopping the server flushes it.
    stop(&world);
    let log = std::fs::read_to_string(world.cache_dir().join("audit.jsonl")).unwrap();
    let refused: Vec<serde_json::Value> = log
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
        .filter(|record| record["outcome"] == "refused")
        .collect();
    for (name, rule) in [
        ("registry.terraform.io/acme/beta", "providers"),
        ("registry.terraform.io/other/vpc/aws", "modules"),
    ] {
        let record = refused
            .iter()
            .find(|record| record["name"] == name)
            .unwrap_or_else(|| panic!("no refusal of {name} in:\n{log}"));
        assert_eq!(
            record["rule"],
            format!("not allowed by [policy] {rule} in {config}"),
            "{record}"
        );
        assert!(record.get("url").is_none(), "{record}");
        assert!(record["run"].is_string(), "the run is named: {record}");
    }
}

#[test]
fn a_tightened_policy_holds_for_cached_providers_on_the_fast_path_too() {
    let world = World::new(vec![
        ProviderSpec::new("hashicorp", "alpha", &["1.0.0"]),
        ProviderSpec::new("acme", "beta", &["1.0.0"]),
    ]);
    let two = [("hashicorp", "alpha", "1.0.0"), ("acme", "beta", "1.0.0")];
    let warm = world.workdir("warm", &two);
    assert_success(&init(&world, &warm), "warming init");
    stop(&world);

    // A restarted server reads the tightened policy too (the running one
    // takes it in as well: see the next test).
    world.append_config("[policy]\nproviders = [\"acme/*\"]\n");
    world.registry.clear_requests();
    let config = world.config_path().display().to_string();
    let locked = world.workdir("locked", &two);
    std::fs::copy(
        warm.join(".terraform.lock.hcl"),
        locked.join(".terraform.lock.hcl"),
    )
    .unwrap();
    let output = init(&world, &locked);
    let message = words(&assert_failure(
        &output,
        "init of a cached, now refused provider",
    ));
    // The fast path asks for the locked version; Terraform then asks for
    // the version list. Both are refused, and both say why.
    for expected in [
        format!(
            "registry.terraform.io/hashicorp/alpha 1.0.0 is not allowed by [policy] providers in {config}"
        ),
        format!(
            "451 registry.terraform.io/hashicorp/alpha is not allowed by [policy] providers in {config}"
        ),
    ] {
        assert!(message.contains(&expected), "says {expected:?}: {message}");
    }
    assert_eq!(
        requests_for(&world, "hashicorp/alpha"),
        Vec::<String>::new()
    );
    assert!(
        !locked
            .join(".terraform/providers/registry.terraform.io/hashicorp/alpha")
            .exists(),
        "the refused provider is not installed"
    );
}

/// The pid of the server that owns the cache, as `tfmirror status` says.
fn status_pid(world: &World) -> String {
    let output = world
        .command("timeout")
        .args(["60", tfmirror(), "status"])
        .output()
        .expect("run tfmirror status");
    assert_success(&output, "tfmirror status");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let pid = text.lines().find_map(|line| line.strip_prefix("pid:"));
    pid.expect("status names the pid").trim().to_owned()
}

/// A running server looks at its config file at most once a second
/// (`policy::live::CHECK_EVERY`): an edit holds for requests that come
/// later than that.
fn past_the_next_look() {
    std::thread::sleep(std::time::Duration::from_millis(1_100));
}

#[test]
fn an_edited_policy_holds_on_the_running_server_without_a_restart() {
    let world = World::new(vec![ProviderSpec::new("hashicorp", "alpha", &["1.0.0"])]);
    let alpha = [("hashicorp", "alpha", "1.0.0")];
    let open = std::fs::read_to_string(world.config_path()).unwrap();
    // The server this starts logs at INFO, so its reloads are in server.log.
    let cold = world.workdir("cold", &alpha);
    assert_success(
        &init_with(&world, &cold, &[("TFMIRROR_LOG", "info")]),
        "cold init",
    );
    let pid = status_pid(&world);

    world.append_config("[policy]\nproviders = [\"acme/*\"]\n");
    world.registry.clear_requests();
    past_the_next_look();
    let config = world.config_path().display().to_string();
    let tightened = world.workdir("tightened", &alpha);
    let message = words(&assert_failure(
        &init(&world, &tightened),
        "init of a cached provider the edited policy refuses",
    ));
    let expected = format!(
        "451 registry.terraform.io/hashicorp/alpha is not allowed by [policy] providers in {config}"
    );
    assert!(message.contains(&expected), "names the rule: {message}");
    assert_eq!(
        requests_for(&world, "hashicorp/alpha"),
        Vec::<String>::new()
    );
    assert_eq!(status_pid(&world), pid, "the same server, not restarted");

    std::fs::write(world.config_path(), &open).unwrap();
    past_the_next_look();
    let loosened = world.workdir("loosened", &alpha);
    assert_success(&init(&world, &loosened), "init once [policy] is gone");
    assert!(loosened
        .join(".terraform/providers/registry.terraform.io/hashicorp/alpha/1.0.0")
        .is_dir());
    assert_eq!(status_pid(&world), pid, "still the same server");
    let log = std::fs::read_to_string(world.cache_dir().join("server.log")).unwrap();
    let reloads: Vec<&str> = log
        .lines()
        .filter(|line| line.contains("policy reloaded from"))
        .collect();
    assert_eq!(reloads.len(), 2, "one line per change: {log}");
    assert!(
        reloads[0].ends_with(&format!(
            "policy reloaded from {config}: providers 1 rule, modules any, git any, \
             archives any, deny 0 rules"
        )),
        "{reloads:?}"
    );
    assert!(
        reloads[1].ends_with(&format!(
            "policy reloaded from {config}: no [policy], everything is allowed"
        )),
        "{reloads:?}"
    );
}

#[test]
fn denied_versions_leave_the_version_list_and_terraform_says_why() {
    let world = World::new(vec![ProviderSpec::new(
        "hashicorp",
        "alpha",
        &["1.0.0", "2.0.0"],
    )]);
    world.append_config("[policy]\ndeny_providers = [\"hashicorp/alpha < 2.0\"]\n");
    let old = world.workdir("old", &[("hashicorp", "alpha", "~> 1.0")]);
    let message = words(&assert_failure(
        &init(&world, &old),
        "init of a denied version",
    ));
    let expected = "1 version(s) of registry.terraform.io/hashicorp/alpha left out of its version \
                    list (1.0.0): denied by [policy] deny_providers \"hashicorp/alpha < 2.0\"";
    assert!(
        message.contains(expected),
        "explains the empty match: {message}"
    );
    assert_eq!(requests_for(&world, "alpha/1.0.0"), Vec::<String>::new());

    let new = world.workdir("new", &[("hashicorp", "alpha", ">= 1.0")]);
    assert_success(&init(&world, &new), "init of an allowed version");
    assert!(new
        .join(".terraform/providers/registry.terraform.io/hashicorp/alpha/2.0.0")
        .is_dir());
}

#[test]
fn policy_check_lists_what_would_be_refused() {
    let world = World::new(Vec::new());
    world.append_config(
        "[policy]\nproviders = [\"hashicorp/*\"]\ngit = [\"https://github.com/example-org/\"]\n",
    );
    let dir = world.root.path().join("work/check");
    std::fs::create_dir_all(dir.join("nested")).unwrap();
    let lock = |name: &str, version: &str| {
        format!(
            "provider \"registry.terraform.io/{name}\" {{\n  version = \"{version}\"\n  hashes = [\n    \"zh:{}\",\n  ]\n}}\n\n",
            "0".repeat(64)
        )
    };
    let text = format!(
        "{}{}",
        lock("hashicorp/alpha", "1.0.0"),
        lock("acme/beta", "0.3.0")
    );
    std::fs::write(dir.join(".terraform.lock.hcl"), text).unwrap();
    std::fs::write(
        dir.join("nested/main.tf"),
        "module \"ok\" {\n  source = \"git::https://github.com/example-org/net.git?ref=v1\"\n}\n\
         module \"evil\" {\n  source = \"git::https://github.com/example-org-evil/net.git\"\n}\n",
    )
    .unwrap();

    let check = |args: &[&str]| {
        world
            .tfmirror(&[&["policy", "check"], args].concat())
            .env("TFMIRROR_CONFIG", "config.toml")
            .current_dir(world.root.path())
            .output()
            .expect("run tfmirror policy check")
    };
    let refused = check(&["work/check"]);
    assert_eq!(refused.status.code(), Some(1), "{refused:?}");
    insta::assert_snapshot!(String::from_utf8_lossy(&refused.stdout));

    std::fs::write(
        dir.join(".terraform.lock.hcl"),
        lock("hashicorp/alpha", "1.0.0"),
    )
    .unwrap();
    std::fs::remove_file(dir.join("nested/main.tf")).unwrap();
    let clean = check(&["work/check"]);
    assert_eq!(clean.status.code(), Some(0), "{clean:?}");
    assert_eq!(
        String::from_utf8_lossy(&clean.stdout),
        "nothing would be refused by [policy] in config.toml\n"
    );
}

#[test]
fn git_repositories_and_archives_outside_the_policy_are_never_fetched() {
    const REPO: &str = "org/infra.git";
    let world = World::start_all(
        Vec::new(),
        vec![
            ModuleSpec::new("acme", "vpc", "git", &["1.1.0"]).with_git_location(
                REPO,
                "modules/vpc",
                "v1.1.0",
            ),
            ModuleSpec::new("acme", "net", "aws", &["1.0.0"]),
        ],
        vec![GitRepoSpec::new(REPO)],
        "",
    );
    let url = world.registry.url();
    world.append_config(&format!(
        "[policy]\ngit = [\"{url}git/team/\"]\narchives = [\"{url}elsewhere/\"]\n"
    ));
    let repo = world.registry.git_url(REPO);
    let refused_repo = format!("git repository {repo} is not allowed by [policy] git");

    // A registry module whose location is a git repository outside `git`.
    let located = world.workdir_with(
        "located",
        &module_calls(&[("vpc", "acme/vpc/git", "1.1.0")]),
    );
    let message = words(&assert_failure(&init(&world, &located), "git location"));
    assert!(message.contains(&refused_repo), "names the rule: {message}");

    // A registry module whose location is an archive outside `archives`.
    let archived = world.workdir_with(
        "archived",
        &module_calls(&[("net", "acme/net/aws", "1.0.0")]),
    );
    let message = words(&assert_failure(
        &init(&world, &archived),
        "archive location",
    ));
    let refused_archive = format!("module archive {url}archives/acme/net/aws/1.0.0/");
    assert!(
        message.contains(&refused_archive)
            && message.contains("is not allowed by [policy] archives"),
        "names the rule: {message}"
    );

    // A direct `git::` source under `[git] mirror`: neither the local clone
    // nor git's fetch over smart HTTP reaches the repository.
    let direct = world.workdir_with(
        "direct",
        &format!("module \"d\" {{\n  source = \"git::{repo}//modules/vpc?ref=v1.1.0\"\n}}\n"),
    );
    let message = words(&assert_failure(&init(&world, &direct), "direct git source"));
    assert!(message.contains(&refused_repo), "names the rule: {message}");

    assert_eq!(world.registry.git_requests(), 0, "no git request upstream");
    assert_eq!(
        world.registry.module_archive_requests(),
        0,
        "no archive request"
    );
}

#[test]
fn the_network_mirror_keeps_to_the_policy() {
    let world = World::new(vec![
        ProviderSpec::new("hashicorp", "alpha", &["1.0.0", "1.2.0"]),
        ProviderSpec::new("acme", "beta", &["0.3.0"]),
    ]);
    world.append_config(
        "[policy]\nproviders = [\"hashicorp/*\"]\ndeny_providers = [\"hashicorp/alpha 1.0.0\"]\n",
    );
    let (server, ca) = world.serve_tls(&[]);
    let rc = world
        .tfmirror(&["rc", "--network-mirror"])
        .output()
        .unwrap();
    assert_success(&rc, "tfmirror rc --network-mirror");
    let cli_config = world.root.path().join("mirror.tfrc");
    std::fs::write(&cli_config, &rc.stdout).unwrap();
    let dir = world.workdir("beta", &[("acme", "beta", "0.3.0")]);
    let output = world
        .command("timeout")
        .args(["-k", "5", COMMAND_LIMIT_SECS])
        .arg(terraform())
        .args(["init", "-input=false", "-no-color"])
        .current_dir(&dir)
        .env("TF_CLI_CONFIG_FILE", &cli_config)
        .env("SSL_CERT_FILE", &ca)
        .output()
        .unwrap();
    let message = words(&assert_failure(
        &output,
        "init of acme/beta from the mirror",
    ));
    // Terraform shows a mirror's status code only; the server's log line
    // (which `exec` would repeat) names the rule.
    let expected = "for registry.terraform.io/acme/beta: server returned unsuccessful status 451";
    assert!(
        message.contains(expected),
        "Terraform shows the 451: {message}"
    );
    drop(server);

    let plain = world.serve();
    let base = format!(
        "{}/providers/registry.terraform.io/hashicorp/alpha",
        plain.url
    );
    let index = get(&format!("{base}/index.json"));
    assert_eq!(index.status, 200, "{}", index.text());
    assert_eq!(index.json(), serde_json::json!({"versions": {"1.2.0": {}}}));
    let denied = get(&format!("{base}/1.0.0.json"));
    assert_eq!(denied.status, 451, "{}", denied.text());
    let zip = get(&format!(
        "{base}/terraform-provider-alpha_1.0.0_linux_amd64.zip"
    ));
    assert_eq!(zip.status, 451, "{}", zip.text());
    assert_eq!(requests_for(&world, "acme/beta"), Vec::<String>::new());
    assert_eq!(requests_for(&world, "alpha/1.0.0"), Vec::<String>::new());
}
