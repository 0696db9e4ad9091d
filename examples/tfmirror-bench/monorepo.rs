//! A generated mono-repo of Terraform modules at the size of the real one issue 15 was measured
//! against (45 MB pack, 861 tags): [`MODULES`] module directories, [`COMMITS`] commits, a tag on
//! every commit after the first [`UNTAGGED`], and about 49 MB of incompressible payload spread
//! over the history, so that a full clone costs what it costs on a real repository.
//!
//! Built once with one `git fast-import` (a stream written from here, not a `git commit` per
//! commit: that would take minutes), repacked, and kept under
//! `~/.cache/tfmirror-bench/monorepo-v<GENERATOR_VERSION>/`; a change to the generator must
//! bump [`GENERATOR_VERSION`] so the next run builds anew. Everything is deterministic (fixed
//! dates, a seeded generator), so the same version gives the same object ids on any machine.
//!
//! Layout: `modules/<name>/{main.tf,versions.tf,README.md}` in every commit from the first;
//! commit `n > 1` bumps one module's revision in its `main.tf` and replaces its
//! `files/bundle.bin` with [`PAYLOAD_BYTES`] random bytes (as a lambda zip would be). Module
//! files use no provider, so `init` installs modules only.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::fixtures::git_repo::{git_command, AUTHOR_EMAIL, AUTHOR_NAME, BASE_DATE};
use crate::stats::{human, human_bytes};

/// HOME for the git commands here: they read no user configuration (see [`git_command`]).
const NO_HOME: &str = "/nonexistent";
/// Bump on any change to what is generated.
const GENERATOR_VERSION: u32 = 1;
pub const COMMITS: usize = 1000;
/// Commits `1..=UNTAGGED` carry no tag; every later one does.
const UNTAGGED: usize = 100;
/// Every tenth tag is annotated, the others lightweight, as in real release histories.
const ANNOTATED_EVERY: usize = 10;
const PAYLOAD_BYTES: usize = 48 * 1024;
const PROVIDERS: [&str; 16] = [
    "aws",
    "azure",
    "gcp",
    "k8s",
    "datadog",
    "github",
    "vault",
    "cloudflare",
    "okta",
    "snowflake",
    "consul",
    "nomad",
    "tfe",
    "pagerduty",
    "fastly",
    "mongodb",
];
const KINDS: [&str; 10] = [
    "network",
    "dns",
    "iam",
    "storage",
    "compute",
    "database",
    "monitoring",
    "secrets",
    "cdn",
    "queue",
];
pub const MODULES: usize = PROVIDERS.len() * KINDS.len();

/// `aws-network`, ...: module `index` of [`MODULES`].
pub fn module_name(index: usize) -> String {
    format!(
        "{}-{}",
        PROVIDERS[index / KINDS.len() % PROVIDERS.len()],
        KINDS[index % KINDS.len()]
    )
}

/// The tag on commit `n` (1-based), if any: `v1.<t/10>.<t%10>` with `t = n - UNTAGGED`.
pub fn tag_name(commit: usize) -> Option<String> {
    let t = commit.checked_sub(UNTAGGED).filter(|t| *t > 0)?;
    Some(format!("v1.{}.{}", t / 10, t % 10))
}

/// The generated repository, ready to copy, with what it holds.
pub struct Monorepo {
    pub path: PathBuf,
    pub pack_bytes: u64,
    pub commits: usize,
    pub tags: usize,
    pub module_dirs: usize,
}

impl Monorepo {
    /// The cached repository, generated first if this version has none yet.
    pub fn get() -> Result<Monorepo> {
        let dir = cache_root()?.join(format!("monorepo-v{GENERATOR_VERSION}"));
        let repo = dir.join("platform.git");
        if !repo.join("done").is_file() {
            generate(&dir, &repo)?;
        }
        let monorepo = Monorepo {
            pack_bytes: pack_bytes(&repo)?,
            commits: git(&repo, &["rev-list", "--count", "--all"])?.parse()?,
            tags: git(&repo, &["tag", "--list"])?.lines().count(),
            module_dirs: git(&repo, &["ls-tree", "-d", "--name-only", "main:modules"])?
                .lines()
                .count(),
            path: repo,
        };
        eprintln!(
            "mono-repo {}: {} pack, {} commits, {} tags, {} module directories",
            monorepo.path.display(),
            human_bytes(monorepo.pack_bytes),
            monorepo.commits,
            monorepo.tags,
            monorepo.module_dirs
        );
        Ok(monorepo)
    }

    /// Replaces the bare repository at `dest` with a clone of this one (objects hardlinked, all
    /// refs), configured as the fixture configures the repositories it builds.
    pub fn copy_to(&self, dest: &Path) -> Result<()> {
        if dest.exists() {
            std::fs::remove_dir_all(dest)?;
        }
        let mut clone = git_command(Path::new(NO_HOME));
        clone
            .args(["clone", "--quiet", "--mirror"])
            .arg(&self.path)
            .arg(dest);
        check(clone, "git clone --mirror")?;
        git(dest, &["config", "uploadpack.allowAnySHA1InWant", "true"])?;
        git(dest, &["config", "uploadpack.allowFilter", "true"])?;
        Ok(())
    }
}

/// `$XDG_CACHE_HOME/tfmirror-bench`, or `~/.cache/tfmirror-bench`.
fn cache_root() -> Result<PathBuf> {
    let base = match std::env::var_os("XDG_CACHE_HOME") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => PathBuf::from(std::env::var_os("HOME").context("HOME is not set")?).join(".cache"),
    };
    Ok(base.join("tfmirror-bench"))
}

/// Builds into a temporary directory beside `dir` and renames it into place, so an
/// interrupted build leaves nothing that looks finished.
fn generate(dir: &Path, repo: &Path) -> Result<()> {
    let parent = dir.parent().context("cache directory")?;
    std::fs::create_dir_all(parent)?;
    let scratch = tempfile::Builder::new()
        .prefix(".monorepo-")
        .tempdir_in(parent)?;
    let bare = scratch.path().join("platform.git");
    eprintln!("generating the mono-repo (once, into {})...", dir.display());
    let started = Instant::now();
    let mut init = git_command(Path::new(NO_HOME));
    init.args(["-c", "init.defaultBranch=main", "init", "--quiet", "--bare"])
        .arg(&bare);
    check(init, "git init")?;

    let mut import = git_command(Path::new(NO_HOME));
    import
        .env("GIT_DIR", &bare)
        .args(["fast-import", "--quiet", "--done"])
        .stdin(Stdio::piped());
    let mut child = import.spawn().context("start git fast-import")?;
    let stdin = child.stdin.take().context("fast-import's stdin")?;
    write_stream(&mut std::io::BufWriter::with_capacity(1 << 20, stdin))?;
    let status = child.wait()?;
    if !status.success() {
        bail!("git fast-import failed ({status})");
    }
    git(&bare, &["repack", "-a", "-d", "--quiet"])?;
    git(&bare, &["prune-packed"])?;
    std::fs::write(bare.join("done"), "")?;
    if dir.exists() {
        std::fs::remove_dir_all(dir)?;
    }
    std::fs::create_dir_all(dir)?;
    std::fs::rename(&bare, repo)?;
    eprintln!("generated in {}", human(started.elapsed()));
    Ok(())
}

/// The whole history as one fast-import stream.
fn write_stream(out: &mut impl Write) -> Result<()> {
    let mut rng = SplitMix64(0x7466_6d69_7272_6f72);
    let mut payload = vec![0u8; PAYLOAD_BYTES];
    let mut revisions = vec![0usize; MODULES];
    for commit in 1..=COMMITS {
        let date = BASE_DATE + 3600 * commit as u64;
        let who = format!("{AUTHOR_NAME} <{AUTHOR_EMAIL}> {date} +0000");
        let changed = (commit > 1).then(|| rng.next() as usize % MODULES);
        let message = match changed {
            None => "Add every module".to_string(),
            Some(m) => format!("{}: revision {}", module_name(m), revisions[m] + 1),
        };
        writeln!(out, "commit refs/heads/main\nmark :{commit}")?;
        writeln!(out, "author {who}\ncommitter {who}")?;
        data(out, message.as_bytes())?;
        match changed {
            None => {
                for m in 0..MODULES {
                    module_files(out, m, 0)?;
                }
            }
            Some(m) => {
                revisions[m] += 1;
                module_files(out, m, revisions[m])?;
                rng.fill(&mut payload);
                writeln!(
                    out,
                    "M 100644 inline modules/{}/files/bundle.bin",
                    module_name(m)
                )?;
                data(out, &payload)?;
            }
        }
        writeln!(out)?;
        if let Some(tag) = tag_name(commit) {
            if (commit - UNTAGGED).is_multiple_of(ANNOTATED_EVERY) {
                writeln!(out, "tag {tag}\nfrom :{commit}\ntagger {who}")?;
                data(out, format!("Release {tag}").as_bytes())?;
            } else {
                writeln!(out, "reset refs/tags/{tag}\nfrom :{commit}\n")?;
            }
        }
    }
    writeln!(out, "done")?;
    out.flush()?;
    Ok(())
}

/// `main.tf`, `versions.tf` and `README.md` of module `m` at `revision`.
fn module_files(out: &mut impl Write, m: usize, revision: usize) -> Result<()> {
    let name = module_name(m);
    let main_tf = format!(
        "variable \"name\" {{\n  type    = string\n  default = \"{name}\"\n}}\n\nlocals {{\n  revision = {revision}\n}}\n\noutput \"id\" {{\n  value = \"${{var.name}} r${{local.revision}}\"\n}}\n"
    );
    let versions_tf = "terraform {\n  required_version = \">= 1.0\"\n}\n";
    let readme = format!("# {name}\n\nRevision {revision} of the `{name}` component.\n");
    for (file, text) in [
        ("main.tf", main_tf.as_str()),
        ("versions.tf", versions_tf),
        ("README.md", readme.as_str()),
    ] {
        writeln!(out, "M 100644 inline modules/{name}/{file}")?;
        data(out, text.as_bytes())?;
    }
    Ok(())
}

fn data(out: &mut impl Write, bytes: &[u8]) -> Result<()> {
    writeln!(out, "data {}", bytes.len())?;
    out.write_all(bytes)?;
    writeln!(out)?;
    Ok(())
}

/// Total size of the repository's packs.
fn pack_bytes(repo: &Path) -> Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(repo.join("objects/pack"))? {
        let entry = entry?;
        if entry.path().extension().is_some_and(|e| e == "pack") {
            total += entry.metadata()?.len();
        }
    }
    Ok(total)
}

/// `git` in the bare repository `repo`; stdout, trimmed.
fn git(repo: &Path, args: &[&str]) -> Result<String> {
    let mut command = git_command(Path::new(NO_HOME));
    command.env("GIT_DIR", repo).args(args);
    check(command, &format!("git {}", args.join(" ")))
}

fn check(mut command: Command, what: &str) -> Result<String> {
    let output = command.output().with_context(|| format!("run {what}"))?;
    if !output.status.success() {
        bail!(
            "{what} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
}

/// A small, fast, seeded generator: the payload only needs to be incompressible and the same
/// on every machine.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn fill(&mut self, bytes: &mut [u8]) {
        for chunk in bytes.chunks_mut(8) {
            let word = self.next().to_le_bytes();
            chunk.copy_from_slice(&word[..chunk.len()]);
        }
    }
}
