//! End to end: the README's front door. `cargo run --example demo` runs the same code as
//! [`the_demo_runs_cold_then_warm`] (the example's `sandbox` and `report`, included here), so
//! the demo and the command it shows cannot rot; and the commands of the README's front door
//! are checked to be the ones the tests and CI run.

#[path = "../../examples/demo/report.rs"]
mod report;
#[path = "../../examples/demo/sandbox.rs"]
mod sandbox;

use std::path::Path;

use sandbox::{Demo, Stage, Tools, INIT_ARGS};

use crate::harness;

#[test]
fn the_demo_runs_cold_then_warm() {
    let root = tempfile::tempdir().expect("temp dir");
    let tools = Tools {
        tfmirror: harness::tfmirror().into(),
        terraform: harness::terraform(),
    };
    let demo = Demo::start(tools.clone(), &root.path().join("demo")).expect("start the demo");
    let mut out = Vec::new();
    let runs = demo.play(&mut out).expect("play the demo");
    let out = String::from_utf8(out).expect("utf-8");

    let [cold, warm] = &runs[..] else {
        panic!("two runs: {runs:?}")
    };
    assert!(cold.downloads > 0, "{out}");
    assert_eq!(cold.linked_providers, 0, "{out}");
    // Only the module's version list, which tfmirror asks for on every run.
    assert_eq!(
        (
            warm.upstream_requests,
            warm.downloads,
            warm.linked_providers
        ),
        (1, 0, 2),
        "{out}"
    );
    let savings = |run: &sandbox::Run| run.tfmirror_lines.last().cloned().unwrap_or_default();
    assert!(savings(cold).contains(" downloaded ("), "{out}");
    // The warm run's providers are linked from the tree, never asked for, and count as
    // taken from the cache all the same: the README's sample shows this line.
    assert!(
        savings(warm).starts_with("tfmirror: 16 MB from cache (3 hits), 0 B downloaded (0 misses)"),
        "{out}"
    );

    // The warm run took its providers from the cache's unpacked tree (the README's
    // `ls -l warm/.terraform/providers/...`), and installed the registry module.
    let installed = demo
        .workdir(Stage::Warm)
        .join(".terraform/providers/registry.terraform.io/demo/cloud/1.2.0");
    let platform = std::fs::read_dir(&installed)
        .unwrap_or_else(|e| panic!("{}: {e}\n{out}", installed.display()))
        .next()
        .expect("one platform")
        .expect("entry")
        .path();
    assert!(
        platform.is_symlink(),
        "{} is not a symlink",
        platform.display()
    );
    let modules = demo
        .workdir(Stage::Warm)
        .join(".terraform/modules/modules.json");
    assert!(modules.is_file(), "no {}", modules.display());
    for stage in Stage::ALL {
        assert!(
            demo.log(stage).is_file(),
            "no {}",
            demo.log(stage).display()
        );
    }
    assert!(demo.cache_dir().join("server.log").is_file());

    insta::assert_snapshot!(redacted(&out, &demo, &tools, &runs));
}

/// The demo's output with what changes from run to run replaced: paths, the port, times,
/// and tfmirror's own lines (their format belongs to `exec`'s tests).
fn redacted(out: &str, demo: &Demo, tools: &Tools, runs: &[sandbox::Run]) -> String {
    let mut text = out
        .replace(&demo.dir.display().to_string(), "[DIR]")
        .replace(&demo.registry.url(), "[REGISTRY]/")
        .replace(&tools.tfmirror.display().to_string(), "[TFMIRROR]")
        .replace(&tools.terraform.display().to_string(), "[TERRAFORM]");
    for run in runs {
        text = text.replace(&report::seconds(run.elapsed), "[TIME]");
        for line in &run.tfmirror_lines {
            text = text.replace(line, "[a line of tfmirror's]");
        }
    }
    text
}

/// Each command of the README's front door (everything above its first `###` heading), and
/// what keeps it true.
#[test]
fn the_readme_front_door_runs_what_the_tests_run() {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(manifest.join("README.md")).expect("README.md");
    let front = readme.split("\n### ").next().expect("text");
    let commands = sh_commands(front);
    let exec = format!("tfmirror {}", INIT_ARGS.join(" "));
    let install = "cargo install --locked --path .";
    let test = "cargo test --locked";
    assert_eq!(
        commands.get(..3),
        Some(&[install.to_owned(), exec.clone(), test.to_owned()][..]),
        "the README opens with install, run, and test"
    );
    for command in &commands {
        match command.as_str() {
            // Needs the lock file, and installs the binary the tests run, under the name
            // the README uses.
            c if c == install => {
                assert!(manifest.join("Cargo.lock").is_file());
                assert_eq!(
                    Path::new(harness::tfmirror()).file_name(),
                    Some("tfmirror".as_ref())
                );
            }
            // What the demo runs (the test above).
            c if c == exec => {}
            c if c == test => {
                let ci = std::fs::read_to_string(manifest.join(".ci/run")).expect(".ci/run");
                assert!(
                    ci.lines().any(|line| line == test),
                    "CI runs no `{test}`:\n{ci}"
                );
            }
            // Cargo names an example by its directory; the test above runs its code.
            "cargo run --example demo" => {
                assert!(manifest.join("examples/demo/main.rs").is_file())
            }
            // Any other tfmirror command must at least be one tfmirror has.
            c if c.starts_with("tfmirror ") => {
                let subcommand: Vec<&str> = c
                    .split_whitespace()
                    .skip(1)
                    .take_while(|word| !word.starts_with('-'))
                    .collect();
                let help = std::process::Command::new(harness::tfmirror())
                    .args(&subcommand)
                    .arg("--help")
                    .output()
                    .expect("run tfmirror --help");
                assert!(help.status.success(), "`{c}`: no such tfmirror command");
            }
            other => panic!("the README's front door runs `{other}`, which no test checks"),
        }
    }
}

/// The command lines of every ```sh block in `text`, without comments.
fn sh_commands(text: &str) -> Vec<String> {
    let mut commands = Vec::new();
    let mut in_sh = false;
    for line in text.lines() {
        match line.trim_end() {
            "```sh" => in_sh = true,
            "```" => in_sh = false,
            line if in_sh => {
                let command = line.split(" #").next().unwrap_or_default().trim();
                if !command.is_empty() {
                    commands.push(command.to_owned());
                }
            }
            _ => {}
        }
    }
    commands
}
