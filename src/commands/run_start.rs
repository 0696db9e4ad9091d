//! Telling the server that a run begins: for an `init`, where, so that it
//! can fetch the module version lists the last run from that directory
//! asked for all at once instead of one at a time (see
//! `modules::prefetch`); and the user's `host` blocks for the run (see
//! `upstream::UserRoutes`).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::owner_call::CallError;
use super::Health;
use crate::protocol::{Ack, Endpoint, RunStart};
use crate::upstream::HostRoute;

/// A Terraform or OpenTofu command line, as far as tfmirror cares: the
/// subcommand, the directory it works in (the current one, or the one
/// `-chdir=DIR` names), and the subcommand's own arguments.
#[derive(Debug, PartialEq, Eq)]
pub struct Subcommand<'a> {
    pub name: &'a str,
    pub workdir: PathBuf,
    pub args: &'a [OsString],
}

/// Reads `args` (what follows `terraform`) up to the subcommand, the first
/// word that is not an option. `None` when there is none, or an argument
/// before it is not UTF-8.
pub fn subcommand<'a>(args: &'a [OsString], cwd: &Path) -> Option<Subcommand<'a>> {
    let mut workdir = cwd.to_path_buf();
    for (index, arg) in args.iter().enumerate() {
        let arg = arg.to_str()?;
        if let Some(dir) = arg.strip_prefix("-chdir=") {
            workdir = cwd.join(dir);
        } else if !arg.starts_with('-') {
            return Some(Subcommand {
                name: arg,
                workdir: workdir.canonicalize().unwrap_or(workdir),
                args: &args[index + 1..],
            });
        }
    }
    None
}

/// The directory Terraform or OpenTofu will read modules from, if the
/// command installs modules (`init`, `get`). Other commands never ask for a
/// version list, so fetching ahead for them would only cost upstream
/// requests.
pub fn module_workdir(args: &[OsString], cwd: &Path) -> Option<PathBuf> {
    subcommand(args, cwd)
        .filter(|command| matches!(command.name, "init" | "get"))
        .map(|command| command.workdir)
}

/// Tells the server the run begins: in `workdir` for an `init` or `get`,
/// with `routes` from the user's `host` blocks. Best effort: a server that
/// does not take it, or does not answer at once, only means no lists are
/// fetched ahead and the run's requests go by the routes of the server's
/// start. Whether the server took it.
pub async fn announce(
    server: &Health,
    run: &str,
    workdir: Option<&Path>,
    routes: Vec<HostRoute>,
) -> bool {
    let start = RunStart {
        workdir: workdir.map(|dir| dir.to_string_lossy().into_owned()),
        routes,
    };
    let sent = server
        .post::<Ack>(Endpoint::Run(run), &start, Some(Duration::from_secs(2)))
        .await;
    match sent {
        Ok(Ack {}) => return true,
        Err(CallError::Status { status, .. }) => {
            tracing::debug!("the server did not take the run's start: {status}")
        }
        Err(e) => tracing::debug!("cannot tell the server the run's start: {e}"),
    }
    false
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

    #[test]
    fn the_subcommand_keeps_its_own_arguments() {
        let args: Vec<OsString> = ["-chdir=x", "init", "-upgrade", "-input=false"]
            .iter()
            .map(OsString::from)
            .collect();
        let command = subcommand(&args, Path::new("/nonexistent")).unwrap();
        assert_eq!(command.name, "init");
        assert_eq!(command.workdir, Path::new("/nonexistent/x"));
        assert_eq!(command.args, &args[2..]);
    }
}
