//! What the user's own config says about where registry traffic goes: the
//! services of their `host` blocks, which tfmirror takes as its upstream
//! for that host, and the `provider_installation` methods that send
//! providers past tfmirror.

use std::path::{Path, PathBuf};

use url::Url;

use super::render::same_host;
use super::user::UserConfigFile;
use super::{hcl1, UserConfig};

/// A registry host's services as the user's own `host` block lists them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserHost {
    /// The host as tfmirror proxies it, e.g. `registry.terraform.io`.
    pub host: String,
    /// `(service, URL)` for each service asked for that the block lists,
    /// relative URLs resolved as Terraform resolves them.
    pub services: Vec<(String, Url)>,
    /// The file the block is in.
    pub path: PathBuf,
}

/// A `provider_installation` method that installs providers without the
/// registry protocol, so without tfmirror's `host` blocks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bypass {
    /// `network_mirror { url = ... }`
    NetworkMirror(String),
    /// `filesystem_mirror { path = ... }`
    FilesystemMirror(String),
}

impl std::fmt::Display for Bypass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Bypass::NetworkMirror(url) => write!(f, "network_mirror {url}"),
            Bypass::FilesystemMirror(path) => write!(f, "filesystem_mirror {path}"),
        }
    }
}

impl UserConfig {
    /// The services of the user's `host` block for `host` among `wanted`
    /// (e.g. `providers.v1`, `modules.v1`): where Terraform would send that
    /// host's registry requests. Terraform keeps the last block for a host,
    /// across files (later files override earlier ones) and within one.
    /// Blocks tfmirror wrote are not the user's and are skipped, and so is
    /// a service whose value is not a URL Terraform would accept.
    pub fn host_services(&self, host: &str, wanted: &[&str]) -> Option<UserHost> {
        let (source, item) = self
            .sources
            .iter()
            .filter(|source| !source.generated)
            .flat_map(|source| source.items.iter().map(move |item| (source, item)))
            .rev()
            .find(|(_, item)| match item.keys.as_slice() {
                [kind, label] | [kind, label, _] => kind == "host" && same_host(label, host),
                _ => false,
            })?;
        let services = block_services(source, item, host, wanted);
        Some(UserHost {
            host: host.to_owned(),
            services,
            path: source.path.clone(),
        })
    }

    /// The file with the user's `provider_installation` block and the
    /// methods in it that bypass the registry protocol, if any does.
    pub fn installation_bypass(&self) -> Option<(&Path, Vec<Bypass>)> {
        let (source, item) = self
            .sources
            .iter()
            .filter(|source| !source.generated)
            .flat_map(|source| source.items.iter().map(move |item| (source, item)))
            .find(|(_, item)| super::render::is_setting(item, "provider_installation"))?;
        let (text, methods) = hcl1::nested(&source.text, item)?;
        let bypass: Vec<Bypass> = methods
            .iter()
            .filter_map(|method| {
                let setting = |key: &str| {
                    let (inner, items) = hcl1::nested(text, method)?;
                    let item = items.iter().find(|i| i.keys == [key])?;
                    hcl1::string_value(inner, item)
                };
                match method.keys.first().map(String::as_str) {
                    Some("network_mirror") => setting("url").map(Bypass::NetworkMirror),
                    Some("filesystem_mirror") => setting("path").map(Bypass::FilesystemMirror),
                    _ => None,
                }
            })
            .collect();
        (!bypass.is_empty()).then_some((source.path.as_path(), bypass))
    }
}

/// `services = { "providers.v1" = "..." }` (or HCL 1's `services { }`) of
/// a `host` block, resolved against the host's discovery URL
/// (`https://<host>/.well-known/terraform.json`), as Terraform's
/// `ForceHostServices` makes it, so that `/v1/providers/` means that path
/// on the host itself.
fn block_services(
    source: &UserConfigFile,
    block: &hcl1::Item,
    host: &str,
    wanted: &[&str],
) -> Vec<(String, Url)> {
    let Ok(discovery) = Url::parse(&format!("https://{host}/.well-known/terraform.json")) else {
        return Vec::new();
    };
    // `host "h" { services = { ... } }`, or as HCL 1 flattens JSON:
    // `host "h" "services" { ... }`.
    let maps: Vec<(&str, Vec<hcl1::Item>)> = match block.keys.as_slice() {
        [_, _] => match hcl1::nested(&source.text, block) {
            Some((body, items)) => items
                .iter()
                .filter(|item| item.keys == ["services"])
                .filter_map(|map| hcl1::nested(body, map))
                .collect(),
            None => Vec::new(),
        },
        [_, _, services] if services == "services" => {
            hcl1::nested(&source.text, block).into_iter().collect()
        }
        _ => Vec::new(),
    };
    // HCL 1 merges repeated `services`; the last value of a key wins.
    let mut services: Vec<(String, Url)> = Vec::new();
    for (text, entries) in &maps {
        for entry in entries {
            let [name] = entry.keys.as_slice() else {
                continue;
            };
            if !wanted.contains(&name.as_str()) {
                continue;
            }
            let url = hcl1::string_value(text, entry)
                .and_then(|value| discovery.join(&value).ok())
                .filter(|url| {
                    matches!(url.scheme(), "http" | "https") && url.username().is_empty()
                });
            if let Some(url) = url {
                services.retain(|(known, _)| known != name);
                services.push((name.clone(), url));
            }
        }
    }
    services.sort_by_key(|(name, _)| wanted.iter().position(|w| w == name));
    services
}

#[cfg(test)]
mod tests {
    use super::*;

    const WANTED: [&str; 2] = ["providers.v1", "modules.v1"];

    fn user(files: &[(&str, &str)]) -> UserConfig {
        UserConfig::of_texts(files)
    }

    fn services(host: &UserHost) -> Vec<(&str, &str)> {
        host.services
            .iter()
            .map(|(name, url)| (name.as_str(), url.as_str()))
            .collect()
    }

    #[test]
    fn a_host_block_gives_its_services_with_relative_urls_resolved() {
        let mine = user(&[(
            "/home/u/.terraformrc",
            r#"
host "other.example.com" {
  services = { "providers.v1" = "https://wrong.example.com/" }
}
# Our Artifactory.
host "Registry.Terraform.io" {
  services = {
    "modules.v1"   = "/api/terraform/modules/"
    "providers.v1" = "https://artifactory.example.com/api/terraform/v1/providers/",
    "login.v1"     = { client = "terraform-cli" }
  }
}
"#,
        )]);
        let host = mine
            .host_services("registry.terraform.io", &WANTED)
            .unwrap();
        assert_eq!(host.path, Path::new("/home/u/.terraformrc"));
        assert_eq!(
            services(&host),
            [
                (
                    "providers.v1",
                    "https://artifactory.example.com/api/terraform/v1/providers/"
                ),
                (
                    "modules.v1",
                    "https://registry.terraform.io/api/terraform/modules/"
                ),
            ]
        );
        assert_eq!(mine.host_services("registry.opentofu.org", &WANTED), None);
    }

    #[test]
    fn a_missing_service_is_left_out_and_the_last_block_wins() {
        let mine = user(&[
            (
                "/home/u/.terraformrc",
                "host \"registry.terraform.io\" {\n  services = { \"modules.v1\" = \"https://first/\" }\n}\n",
            ),
            (
                "/home/u/.terraform.d/mirror.tfrc.json",
                r#"{"host": {"registry.terraform.io:443": {"services": {"providers.v1": "https://b.example/p/", "modules.v1": "ftp://nope/"}}}}"#,
            ),
        ]);
        let host = mine
            .host_services("registry.terraform.io", &WANTED)
            .unwrap();
        assert_eq!(
            host.path,
            Path::new("/home/u/.terraform.d/mirror.tfrc.json")
        );
        assert_eq!(services(&host), [("providers.v1", "https://b.example/p/")]);
    }

    #[test]
    fn tfmirrors_own_host_blocks_are_not_the_users() {
        let generated = super::super::render(
            &[super::super::HostServices {
                host: "registry.terraform.io".into(),
                services: vec![(
                    "providers.v1".into(),
                    "http://127.0.0.1:1/v1/providers/registry.terraform.io/".into(),
                )],
            }],
            None,
            super::super::Tokens::Keep,
        );
        let saved = user(&[("/home/u/.terraformrc", &generated.text)]);
        assert_eq!(saved.host_services("registry.terraform.io", &WANTED), None);
    }

    #[test]
    fn mirrors_in_provider_installation_are_listed() {
        let mine = user(&[
            ("/home/u/.terraformrc", "disable_checkpoint = true\n"),
            (
                "/home/u/.terraform.d/install.tfrc",
                r#"provider_installation {
  dev_overrides {
    "hashicorp/null" = "/home/dev/null"
  }
  network_mirror {
    url     = "https://mirror.example.com/providers/"
    include = ["registry.terraform.io/*/*"]
  }
  filesystem_mirror {
    path = "/usr/share/terraform/providers"
  }
  direct {}
}
"#,
            ),
        ]);
        let (path, bypass) = mine.installation_bypass().unwrap();
        assert_eq!(path, Path::new("/home/u/.terraform.d/install.tfrc"));
        let shown: Vec<String> = bypass.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "network_mirror https://mirror.example.com/providers/",
                "filesystem_mirror /usr/share/terraform/providers"
            ]
        );
        let direct_only = user(&[(
            "/home/u/.terraformrc",
            "provider_installation {\n  direct {}\n}\n",
        )]);
        assert_eq!(direct_only.installation_bypass(), None);
    }
}
