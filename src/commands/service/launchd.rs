//! launchd: a per-user agent, loaded into the login session's `gui/<uid>`
//! domain and loaded again at every login from `~/Library/LaunchAgents`.

use std::path::{Path, PathBuf};

use super::{Manager, ServiceSpec, Step};

const LABEL: &str = "io.github.tfmirror";

pub(super) struct Launchd {
    file: PathBuf,
    /// `gui/<uid>`: the session of the user at the screen, where agents
    /// that should live as long as the login belong.
    domain: String,
}

impl Launchd {
    pub(super) fn from_env() -> anyhow::Result<Launchd> {
        let Some(home) = crate::config::home_dir() else {
            anyhow::bail!("cannot find ~/Library/LaunchAgents: set HOME");
        };
        // SAFETY: getuid has no preconditions and cannot fail.
        let uid = unsafe { libc::getuid() };
        Ok(Launchd {
            file: home
                .join("Library")
                .join("LaunchAgents")
                .join(format!("{LABEL}.plist")),
            domain: format!("gui/{uid}"),
        })
    }

    /// Bootout fails when the agent is not loaded: the state it was asked
    /// for.
    fn bootout(&self) -> Step {
        Step::new(
            "launchctl",
            &["bootout", &format!("{}/{LABEL}", self.domain)],
        )
        .may_fail()
    }
}

impl Manager for Launchd {
    fn file(&self) -> &Path {
        &self.file
    }

    fn render(&self, spec: &ServiceSpec) -> anyhow::Result<String> {
        Ok(render(spec))
    }

    /// `bootstrap` refuses an agent that is loaded already, so a loaded
    /// one (an earlier install) is booted out first.
    fn start(&self) -> Vec<Step> {
        let plist = self.file.to_string_lossy();
        vec![
            self.bootout(),
            Step::new("launchctl", &["bootstrap", &self.domain, &plist]),
        ]
    }

    fn stop(&self) -> Vec<Step> {
        vec![self.bootout()]
    }

    fn forget(&self) -> Vec<Step> {
        Vec::new()
    }

    fn logs(&self, spec: &ServiceSpec) -> String {
        spec.log_file.clone()
    }
}

fn render(spec: &ServiceSpec) -> String {
    let arguments: String = std::iter::once(&spec.program)
        .chain(&spec.args)
        .map(|arg| format!("\t\t<string>{}</string>\n", xml_escape(arg)))
        .collect();
    let log = xml_escape(&spec.log_file);
    let environment = if spec.environment.is_empty() {
        String::new()
    } else {
        let entries: String = spec
            .environment
            .iter()
            .map(|(name, value)| {
                format!(
                    "\t\t<key>{name}</key>\n\t\t<string>{}</string>\n",
                    xml_escape(value)
                )
            })
            .collect();
        format!("\t<key>EnvironmentVariables</key>\n\t<dict>\n{entries}\t</dict>\n")
    };
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<!-- Written by `tfmirror service install`, which rewrites it;
     `tfmirror service uninstall` removes it. -->
<plist version="1.0">
<dict>
	<key>Label</key>
	<string>{LABEL}</string>
	<key>ProgramArguments</key>
	<array>
{arguments}	</array>
{environment}	<key>RunAtLoad</key>
	<true/>
	<key>KeepAlive</key>
	<dict>
		<key>SuccessfulExit</key>
		<false/>
	</dict>
	<!-- The server drains requests in flight for up to 30 s after SIGTERM. -->
	<key>ExitTimeOut</key>
	<integer>40</integer>
	<key>StandardOutPath</key>
	<string>{log}</string>
	<key>StandardErrorPath</key>
	<string>{log}</string>
</dict>
</plist>
"#
    )
}

fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_plist() {
        insta::assert_snapshot!("agent_plist", render(&super::super::tests::example()));
    }

    #[test]
    fn escapes_xml_text() {
        assert_eq!(xml_escape("a<b>&c"), "a&lt;b&gt;&amp;c");
    }
}
