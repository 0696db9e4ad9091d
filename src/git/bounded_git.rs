//! Running the `git` binary in the background with a deadline: what
//! `repack` and `bundle` both need. gix has no repack, and no bundles, so
//! those few jobs go to `git`, which is on the machine already for
//! `upload-pack`.

use std::io::{self, Read};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How often a running git is checked for its end or its deadline.
const POLL: Duration = Duration::from_millis(50);

/// At most this much of git's stderr is kept for an error message.
const MAX_STDERR: u64 = 16 * 1024;

/// `git -C <dir>` with no input, no output and stderr kept for an error
/// message, killed when tfmirror dies. Callers add the subcommand; they run
/// git quiet, so its stderr stays small and the pipe never fills.
pub(super) fn git_in(dir: &Path) -> Command {
    let mut command = Command::new("git");
    command
        .arg("-C")
        .arg(dir)
        // No gc of git's own after a command that adds objects.
        .args(["-c", "gc.auto=0"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    die_with_parent(&mut command);
    command
}

/// How a bounded git run failed to finish.
#[derive(Debug)]
pub(super) enum Waited {
    TimedOut,
    Io(io::Error),
}

/// Spawns `command` and waits for it until `timeout`, then kills it.
/// Returns its status and the start of its stderr.
pub(super) fn run_bounded(
    mut command: Command,
    timeout: Duration,
) -> Result<(ExitStatus, String), Waited> {
    let child = command.spawn().map_err(Waited::Io)?;
    wait_bounded(child, timeout)
}

/// Waits for `child` until `timeout`, then kills it. Returns its status
/// and the start of its stderr.
fn wait_bounded(mut child: Child, timeout: Duration) -> Result<(ExitStatus, String), Waited> {
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().map_err(Waited::Io)? {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(Waited::TimedOut);
        }
        std::thread::sleep(POLL);
    };
    let mut stderr = String::new();
    if let Some(pipe) = child.stderr.take() {
        let _ = pipe.take(MAX_STDERR).read_to_string(&mut stderr);
    }
    Ok((status, stderr))
}

/// On Linux, the git started here is killed (SIGKILL) when tfmirror dies:
/// the mirror's lock dies with tfmirror, and a git left running without it
/// would go on changing files under the next server's start-up sweep,
/// fetches and repacks. The signal comes when the thread that spawned git
/// ends; that thread waits for git ([`run_bounded`]), so it never ends
/// first.
///
/// The processes git starts itself (`pack-objects`, `index-pack`) are not
/// covered (the setting is not inherited): left alone, they finish their
/// temporary files, which git never reads, and die of SIGPIPE writing to
/// the dead parent; their files are swept by the first start after they
/// ended.
#[cfg(target_os = "linux")]
fn die_with_parent(command: &mut Command) {
    use std::os::unix::process::CommandExt;
    let parent = std::process::id();
    // SAFETY: prctl(2) and getppid(2) are async-signal-safe and touch no
    // memory of ours.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) == -1 {
                return Err(io::Error::last_os_error());
            }
            // tfmirror died before the setting took: do not start at all.
            if libc::getppid() as u32 != parent {
                return Err(io::Error::other("tfmirror exited"));
            }
            Ok(())
        });
    }
}

#[cfg(not(target_os = "linux"))]
fn die_with_parent(_command: &mut Command) {}

#[cfg(test)]
mod tests {
    use super::*;

    /// What stands for tfmirror's death: the spawning thread ending.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_child_dies_with_the_thread_that_spawned_it() {
        use std::os::unix::process::ExitStatusExt;
        let mut child = std::thread::spawn(|| {
            let mut command = Command::new("sleep");
            command.arg("30");
            die_with_parent(&mut command);
            command.spawn().unwrap()
        })
        .join()
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("the child outlived the thread that spawned it");
            }
            std::thread::sleep(POLL);
        };
        assert_eq!(status.signal(), Some(libc::SIGKILL));
    }

    #[test]
    fn a_run_past_its_deadline_is_killed() {
        let mut command = Command::new("sleep");
        command.arg("30");
        let started = Instant::now();
        let outcome = run_bounded(command, Duration::from_millis(100));
        assert!(matches!(outcome, Err(Waited::TimedOut)), "{outcome:?}");
        assert!(started.elapsed() < Duration::from_secs(10));
    }
}
