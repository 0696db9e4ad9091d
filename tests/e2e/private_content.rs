//! Issue 13, finding 4: what tfmirror fetched with one client's registry
//! token is served only to clients whose credential may read it.
//!
//! The fake registry requires a token for the `secretcorp` namespace. A
//! `tfmirror serve` without any `TF_TOKEN_*` of its own stands between it
//! and the real terraform: one init with the token fills the cache, and
//! after that a client without the token gets nothing from the cache,
//! whether the upstream is up (it answers 401 itself) or stopped (tfmirror
//! answers 401), while the token keeps working with the upstream stopped.

use crate::fixtures::http::{get, get_with, RawResponse};
use crate::fixtures::{ModuleSpec, ProviderSpec};
use crate::harness::{assert_failure, assert_success, ServeProcess, World};

const TOKEN: &str = "g00d-t0ken-for-secretcorp";
const PRIVATE: &str = "secretcorp";
const VERSIONS: &str = "/v1/providers/registry.terraform.io/secretcorp/vault/versions";
const DOWNLOAD: &str =
    "/v1/providers/registry.terraform.io/secretcorp/vault/1.0.0/download/linux/amd64";
const MODULE_VERSIONS: &str = "/v1/modules/registry.terraform.io/secretcorp/net/aws/versions";

const MAIN_TF: &str = r#"
terraform {
  required_providers {
    vault = {
      source  = "secretcorp/vault"
      version = "1.0.0"
    }
  }
}

module "net" {
  source  = "secretcorp/net/aws"
  version = "1.0.0"
}
"#;

/// The one place that says how a test reaches the server's HTTP routes.
fn server_url(server: &ServeProcess) -> String {
    server.url.clone()
}

fn private_world() -> World {
    let world = World::start(
        vec![ProviderSpec::new(PRIVATE, "vault", &["1.0.0"]).with_platforms(&[("linux", "amd64")])],
        vec![ModuleSpec::new(PRIVATE, "net", "aws", &["1.0.0"])],
        "",
    );
    world.registry.require_token(PRIVATE, TOKEN);
    world
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

fn get_as(url: &str, token: Option<&str>) -> RawResponse {
    match token {
        Some(token) => get_with(url, &[("Authorization", &bearer(token))]),
        None => get(url),
    }
}

/// `tfmirror exec -- terraform init` in a new working directory; `exec`
/// finds the running server rather than starting one with its token.
fn init(world: &World, name: &str, token: Option<&str>) -> std::process::Output {
    let dir = world.workdir_with(name, MAIN_TF);
    let env: Vec<(&str, &str)> = token
        .map(|t| ("TF_TOKEN_registry_terraform_io", t))
        .into_iter()
        .collect();
    world.init_with_env(&dir, &env)
}

/// The file name of the one cached module archive.
fn cached_archive(world: &World) -> String {
    let archives: Vec<String> = world
        .artifact_files()
        .into_iter()
        .filter(|f| f.starts_with("modules/archives/"))
        .collect();
    assert_eq!(archives.len(), 1, "{archives:?}");
    archives[0]
        .trim_start_matches("modules/archives/")
        .to_owned()
}

/// Every refusal names the cause and the variable to set.
fn assert_refused_offline(response: &RawResponse, what: &str) {
    assert_eq!(response.status, 401, "{what}: {}", response.text());
    let text = response.text();
    assert!(
        text.contains("cached from a request with a credential")
            && text.contains("TF_TOKEN_registry_terraform_io"),
        "{what}: {text}"
    );
}

#[test]
fn content_fetched_with_a_token_is_served_only_to_that_token() {
    let world = private_world();
    let server = world.serve();
    let url = server_url(&server);

    assert_success(
        &init(&world, "with-token", Some(TOKEN)),
        "init with the token",
    );
    let zip = "providers/registry.terraform.io/secretcorp/vault/\
               terraform-provider-vault_1.0.0_linux_amd64.zip";
    assert!(
        world.artifact_files().iter().any(|f| f == zip),
        "{:?}",
        world.artifact_files()
    );
    let archive = cached_archive(&world);

    // Upstream up: without the token the registry's own refusal comes back.
    for path in [VERSIONS, DOWNLOAD, MODULE_VERSIONS] {
        let anonymous = get_as(&format!("{url}{path}"), None);
        assert_eq!(anonymous.status, 401, "{path}: {}", anonymous.text());
        let stranger = get_as(&format!("{url}{path}"), Some("someone-else"));
        assert_eq!(stranger.status, 403, "{path}: {}", stranger.text());
    }
    let with_token = get_as(&format!("{url}{VERSIONS}"), Some(TOKEN));
    assert_eq!(with_token.status, 200, "{}", with_token.text());

    // Terraform fetches files without a credential: only the grant that the
    // private answer put in their URLs opens them.
    let answer = with_token_answer(&url);
    let granted_zip = answer["download_url"].as_str().unwrap().to_owned();
    assert_eq!(get(&granted_zip).status, 200, "{granted_zip}");
    let ungranted_zip = format!(
        "{url}/v1/providers/registry.terraform.io/secretcorp/vault/1.0.0/package/linux/amd64"
    );
    assert_eq!(get(&ungranted_zip).status, 401);
    let forged = format!("{ungranted_zip}/{}", "f".repeat(40));
    assert_eq!(get(&forged).status, 401);
    let mirror_zip = format!(
        "{url}/providers/registry.terraform.io/secretcorp/vault/terraform-provider-vault_1.0.0_linux_amd64.zip"
    );
    assert_eq!(
        get(&mirror_zip).status,
        401,
        "the network mirror's zip route"
    );
    let bare_archive = format!("{url}/modules/archives/{archive}");
    assert_refused_offline(
        &get(&bare_archive),
        "a private module archive without its grant",
    );

    assert_failure(
        &init(&world, "anonymous-up", None),
        "init without the token",
    );

    // Upstream stopped: tfmirror itself refuses, even to a stale-tolerant
    // client, and says which token to present.
    world.registry.stop();
    for path in [VERSIONS, DOWNLOAD, MODULE_VERSIONS] {
        let path_url = format!("{url}{path}");
        assert_refused_offline(&get_as(&path_url, None), path);
        assert_refused_offline(&get_as(&path_url, Some("someone-else")), path);
    }
    assert_eq!(get(&ungranted_zip).status, 401);
    assert_eq!(
        get(&mirror_zip).status,
        401,
        "the network mirror's zip route"
    );
    let index = format!("{url}/providers/registry.terraform.io/secretcorp/vault/index.json");
    assert_eq!(get(&index).status, 401, "no listing from the zips on disk");
    let output = assert_failure(
        &init(&world, "anonymous-down", None),
        "init without the token",
    );
    assert!(
        !output.contains("Terraform has been successfully initialized"),
        "{output}"
    );

    assert_success(
        &init(&world, "with-token-down", Some(TOKEN)),
        "init with the token while the upstream is stopped",
    );
    assert_no_file_holds_the_token(&world);
}

/// Credentials are never written under the cache directory, not in the
/// index and not in the document files it is rebuilt from.
fn assert_no_file_holds_the_token(world: &World) {
    let mut dirs = vec![world.cache_dir()];
    let mut documents = 0;
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            let Ok(bytes) = std::fs::read(&path) else {
                continue;
            };
            documents += usize::from(path.starts_with(world.cache_dir().join("documents")));
            assert!(
                !bytes.windows(TOKEN.len()).any(|w| w == TOKEN.as_bytes()),
                "{} holds the token",
                path.display()
            );
        }
    }
    assert!(documents > 0, "the documents were written as files");
}

fn with_token_answer(url: &str) -> serde_json::Value {
    let answer = get_as(&format!("{url}{DOWNLOAD}"), Some(TOKEN));
    assert_eq!(answer.status, 200, "{}", answer.text());
    answer.json()
}

/// A public provider is not made private by a client that happens to send
/// a token: asked without one, the upstream answers, and the answer is
/// public again, also once the upstream is stopped.
#[test]
fn a_public_list_fetched_with_a_token_stays_readable_without_one() {
    let world = World::new(vec![ProviderSpec::new("hashicorp", "alpha", &["1.2.0"])]);
    let server = world.serve();
    let url = server_url(&server);
    let versions = format!("{url}/v1/providers/registry.terraform.io/hashicorp/alpha/versions");

    assert_eq!(get_as(&versions, Some(TOKEN)).status, 200);
    assert_eq!(get_as(&versions, None).status, 200, "asked upstream again");
    world.registry.stop();
    let offline = get_as(&versions, None);
    assert_eq!(offline.status, 200, "{}", offline.text());
}
