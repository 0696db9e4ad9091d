//! A work clone of a fake upstream repository that pushes commits of
//! incompressible files: what makes a mirror's clone and repack take long
//! enough for the tests that watch or interrupt them.

use std::path::{Path, PathBuf};
use std::process::Command;

use rand::RngCore;

use crate::fixtures::git_repo::git_command;
use crate::harness::assert_success;

pub struct Pusher {
    work: PathBuf,
    home: PathBuf,
}

impl Pusher {
    pub fn new(bare: &Path, root: &Path) -> Pusher {
        let (work, home) = (root.join("work"), root.join("home"));
        std::fs::create_dir_all(&home).unwrap();
        let mut clone = git_command(&home);
        clone.arg("clone").arg("-q").arg(bare).arg(&work);
        assert_success(&clone.output().unwrap(), "clone the upstream");
        Pusher { work, home }
    }

    pub fn git(&self, args: &[&str]) {
        let mut command: Command = git_command(&self.home);
        command
            .arg("-C")
            .arg(&self.work)
            .args([
                "-c",
                "user.name=Pusher",
                "-c",
                "user.email=p@example.invalid",
            ])
            .args(args);
        assert_success(&command.output().unwrap(), &format!("git {args:?}"));
    }

    /// Commits a new file of `size` random bytes to `main` and pushes it.
    pub fn push_random_file(&self, name: &str, size: usize) -> Vec<u8> {
        let mut bytes = vec![0; size];
        rand::thread_rng().fill_bytes(&mut bytes);
        std::fs::write(self.work.join(name), &bytes).unwrap();
        self.git(&["add", name]);
        self.git(&["commit", "-q", "-m", name]);
        self.git(&["push", "-q", "origin", "HEAD:main"]);
        bytes
    }
}
