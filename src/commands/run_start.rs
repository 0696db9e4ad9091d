//! Telling the server that an `init` begins, and where, so that it can fetch
//! the module version lists the last run from that directory asked for all
//! at once instead of one at a time (see `modules::prefetch`).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::Health;

/// The directory Terraform or OpenTofu will read modules from, if the
/// command installs modules (`init`, `get`): the current directory, or the
/// one `-chdir=DIR` names. Other commands never ask for a version list, so
/// fetching ahead for them would only cost upstream requests.
pub fn module_workdir(args: &[OsString], cwd: &Path) -> Option<PathBuf> {
    let mut workdir = cwd.to_path_buf();
    for arg in args {
        let arg = arg.to_str()?;
        if let Some(dir) = arg.strip_prefix("-chdir=") {
            workdir = cwd.join(dir);
        } else if !arg.starts_with('-') {
            return matches!(arg, "init" | "get")
                .then(|| workdir.canonicalize().unwrap_or(workdir));
        }
    }
    None
}

/// Best effort: a server that does not know the request, or does not answer
/// at once, only means no lists are fetched ahead.
pub async fn announce(server: &Health, run: &str, workdir: &Path) {
    let Ok(client) = server.client(Some(Duration::from_secs(2))) else {
        return;
    };
    let body = serde_json::json!({ "workdir": workdir.to_string_lossy() });
    let sent = client
        .post(format!("{}/_tfmirror/runs/{run}", server.url))
        .header("Content-Type", "application/json")
        .body(body.to_string())
        .send()
        .await;
    match sent {
        Ok(response) if response.status().is_success() => {}
        Ok(response) => tracing::debug!(
            "the server did not take the run's start: {}",
            response.status()
        ),
        Err(e) => tracing::debug!(
            "cannot tell the server the run's start: {}",
            e.without_url()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workdir(args: &[&str]) -> Option<PathBuf> {
        let args: Vec<OsString> = args.iter().map(OsString::from).collect();
        module_workdir(&args, Path::new("/nonexistent/cwd"))
    }

    #[test]
    fn only_commands_that_install_modules_have_one() {
        assert_eq!(
            workdir(&["init", "-input=false"]),
            Some("/nonexistent/cwd".into())
        );
        assert_eq!(workdir(&["get"]), Some("/nonexistent/cwd".into()));
        assert_eq!(
            workdir(&["-chdir=envs/prod", "init"]),
            Some("/nonexistent/cwd/envs/prod".into())
        );
        assert_eq!(workdir(&["-chdir=/abs", "init"]), Some("/abs".into()));
        assert_eq!(
            workdir(&["plan", "init"]),
            None,
            "the first word is the command"
        );
        assert_eq!(workdir(&["-version"]), None);
        assert_eq!(workdir(&[]), None);
    }
}
