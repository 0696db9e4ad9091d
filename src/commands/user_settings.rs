//! The lines `exec` prints about the user's own routing settings, so that
//! none of them is followed or dropped silently: `host` blocks tfmirror
//! takes as its upstream, `provider_installation` mirrors that send
//! providers past tfmirror, and OpenTofu settings a wrapper program does
//! not get.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use crate::cliconfig::{Bypass, Program, UserConfig, UserHost, TOFU_CLI_CONFIG_FILE};

/// What one `exec` knows of the user's settings.
pub struct UserSettings<'a> {
    /// The command `exec` runs, as given.
    pub program: &'a OsStr,
    /// Whose files `user` was read from.
    pub reader: Program,
    pub user: Option<&'a UserConfig>,
    /// The user's `host` blocks the server took as upstream for this run.
    pub routed: &'a [UserHost],
    /// Whether the command may install providers with the user's own
    /// `provider_installation` in force.
    pub installs_providers: bool,
}

impl UserSettings<'_> {
    /// One line for each `host` block followed, one for a
    /// `provider_installation` whose mirrors bypass tfmirror, and, for a
    /// program that is neither Terraform nor OpenTofu, one saying whose
    /// config it got when the user has OpenTofu's own too.
    pub fn lines(&self) -> Vec<String> {
        let home = crate::config::home_dir();
        let home = home.as_deref();
        let mut lines = routing_lines(self.routed, &super::PROXIED_SERVICES, home);
        if self.installs_providers {
            lines.extend(self.user.and_then(|user| bypass_line(user, home)));
        }
        if self.reader == Program::Other {
            let tofu_file = std::env::var_os(TOFU_CLI_CONFIG_FILE)
                .filter(|file| !file.is_empty())
                .map(PathBuf::from);
            let name = Path::new(self.program)
                .file_name()
                .unwrap_or(self.program)
                .to_string_lossy();
            lines.extend(wrapper_line(&name, self.user, tofu_file.as_deref(), home));
        }
        lines
    }
}

/// `~/…` for a path under `home`, the path itself otherwise.
pub fn display_home(path: &Path, home: Option<&Path>) -> String {
    match home.and_then(|home| path.strip_prefix(home).ok()) {
        Some(relative) => format!("~/{}", relative.display()),
        None => path.display().to_string(),
    }
}

/// One line per user `host` block tfmirror sends its host's requests by,
/// e.g. `registry.terraform.io goes through tfmirror to your host block's
/// services (providers.v1 https://...) from ~/.terraformrc`.
pub fn routing_lines(hosts: &[UserHost], wanted: &[&str], home: Option<&Path>) -> Vec<String> {
    hosts
        .iter()
        .map(|host| {
            let services: Vec<String> = host
                .services
                .iter()
                .map(|(service, url)| format!("{service} {url}"))
                .collect();
            let missing: Vec<&str> = wanted
                .iter()
                .copied()
                .filter(|service| !host.services.iter().any(|(known, _)| known == service))
                .collect();
            let discovered = match missing.as_slice() {
                [] => String::new(),
                missing => format!("; {} through discovery", missing.join(" and ")),
            };
            format!(
                "{} goes through tfmirror to your host block's services ({}) from {}{discovered}",
                host.host,
                services.join(", "),
                display_home(&host.path, home)
            )
        })
        .collect()
}

/// The line for a `provider_installation` of the user's with mirrors in
/// it, which install providers without the registry protocol and so
/// without tfmirror.
pub fn bypass_line(user: &UserConfig, home: Option<&Path>) -> Option<String> {
    let (path, bypass) = user.installation_bypass()?;
    let methods: Vec<String> = bypass.iter().map(Bypass::to_string).collect();
    Some(format!(
        "your provider_installation in {} installs providers from {}; those providers do not go through tfmirror",
        display_home(path, home),
        methods.join(" and ")
    ))
}

/// For a program that is neither `terraform` nor `tofu`: which config was
/// read (Terraform's), when the user also has OpenTofu's own
/// (`TOFU_CLI_CONFIG_FILE`, `~/.tofurc`), which it may have meant.
pub fn wrapper_line(
    program: &str,
    user: Option<&UserConfig>,
    tofu_config_file: Option<&Path>,
    home: Option<&Path>,
) -> Option<String> {
    let tofurc = home.map(|home| home.join(".tofurc"));
    let unread = match (tofu_config_file, &tofurc) {
        (Some(file), _) => format!("TOFU_CLI_CONFIG_FILE ({})", file.display()),
        (None, Some(tofurc)) if tofurc.exists() => display_home(tofurc, home),
        _ => return None,
    };
    let read = match user {
        Some(user) => {
            let files: Vec<String> = user.files().map(|f| display_home(f, home)).collect();
            files.join(", ")
        }
        None => "none found".to_owned(),
    };
    Some(format!(
        "{program} is neither terraform nor tofu, so its generated CLI config carries Terraform's ({read}), not your {unread}; run tofu through `tfmirror exec -- tofu ...` to use that"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_routing_line_names_the_services_and_what_is_discovered() {
        let host = UserHost {
            host: "registry.terraform.io".into(),
            services: vec![(
                "providers.v1".into(),
                "https://artifactory.example.com/api/terraform/v1/providers/"
                    .parse()
                    .unwrap(),
            )],
            path: PathBuf::from("/home/u/.terraformrc"),
        };
        let lines = routing_lines(
            &[host],
            &["providers.v1", "modules.v1"],
            Some(Path::new("/home/u")),
        );
        insta::assert_snapshot!(lines.join("\n"), @"registry.terraform.io goes through tfmirror to your host block's services (providers.v1 https://artifactory.example.com/api/terraform/v1/providers/) from ~/.terraformrc; modules.v1 through discovery");
    }

    #[test]
    fn a_wrapper_line_only_when_opentofu_has_its_own_config() {
        let home = tempfile::tempdir().unwrap();
        let h = home.path();
        assert_eq!(wrapper_line("terragrunt", None, None, Some(h)), None);
        std::fs::write(h.join(".tofurc"), "").unwrap();
        let line = wrapper_line("terragrunt", None, None, Some(h)).unwrap();
        insta::assert_snapshot!(line, @"terragrunt is neither terraform nor tofu, so its generated CLI config carries Terraform's (none found), not your ~/.tofurc; run tofu through `tfmirror exec -- tofu ...` to use that");
        let line = wrapper_line("make", None, Some(Path::new("/etc/tofu.rc")), Some(h)).unwrap();
        assert!(
            line.contains("not your TOFU_CLI_CONFIG_FILE (/etc/tofu.rc)"),
            "{line}"
        );
    }
}
