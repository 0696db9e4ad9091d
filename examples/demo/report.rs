//! What the demo prints: where everything is, what each run did, and what to do next.

use std::fmt::Write;
use std::time::Duration;

use super::sandbox::{Demo, Run, Stage, BYTES_PER_SEC, INIT_ARGS, LATENCY};

/// Where the demo runs and against what.
pub fn intro(demo: &Demo) -> String {
    let mut text = String::new();
    let _ = writeln!(text, "tfmirror demo in {}", demo.dir.display());
    let _ = writeln!(
        text,
        "  registry.terraform.io: the test suite's fake registry on {}\n  \
         (packages signed with test keys; {} ms per request and {} MB/s simulated;\n  \
         nothing leaves this machine)",
        demo.registry.url(),
        LATENCY.as_millis(),
        BYTES_PER_SEC / 1_000_000
    );
    let _ = writeln!(text, "  tfmirror   {}", demo.tools.tfmirror.display());
    let _ = write!(text, "  terraform  {}", demo.tools.terraform.display());
    text
}

/// One run: what it was, how long it took, what reached the registry, and tfmirror's lines.
pub fn run(run: &Run) -> String {
    let mut text = String::new();
    let what = match run.stage {
        Stage::Cold => "with an empty cache",
        Stage::Warm => "in a fresh copy of cold/ with its lock file (a new checkout)",
    };
    let _ = writeln!(
        text,
        "\n{}/: tfmirror {}, {what}",
        run.stage.name(),
        INIT_ARGS.join(" ")
    );
    let _ = write!(
        text,
        "  {}; {} reached the registry, {} of them download{}",
        seconds(run.elapsed),
        count(run.upstream_requests, "request"),
        run.downloads,
        if run.downloads == 1 { "" } else { "s" }
    );
    if run.downloads == 0 && run.upstream_requests > 0 {
        // README, "Module version lists are the exception to `metadata_ttl`".
        let _ = write!(
            text,
            "\n  (module version lists: tfmirror asks each run, so a new version is seen)"
        );
    }
    if run.linked_providers > 0 {
        let _ = write!(
            text,
            "\n  {} installed as symlinks into tfmirror's unpacked tree",
            count(run.linked_providers, "provider")
        );
    }
    for line in &run.tfmirror_lines {
        let _ = write!(text, "\n  {line}");
    }
    text
}

/// What is left to look at, and how to use tfmirror for real.
pub fn next_steps(demo: &Demo) -> String {
    let cold = demo.log(Stage::Cold);
    let warm = demo.log(Stage::Warm);
    let relative = |path: &std::path::Path| {
        path.strip_prefix(&demo.dir)
            .unwrap_or(path)
            .display()
            .to_string()
    };
    let mut text = String::new();
    let _ = writeln!(
        text,
        "\nLook around (the fake registry and the demo's tfmirror server have stopped):"
    );
    let _ = writeln!(text, "  cd {}", demo.dir.display());
    for (command, what) in [
        (
            format!("less {} {}", relative(&cold), relative(&warm)),
            "each run's whole output",
        ),
        (
            "ls -l warm/.terraform/providers/registry.terraform.io/demo/*/*".to_owned(),
            "symlinks into the cache",
        ),
        ("less cache/server.log".to_owned(), "what the server did"),
        (
            "cat config.toml".to_owned(),
            "[upstream] sends registry.terraform.io to the fake",
        ),
    ] {
        let _ = writeln!(text, "  {command:<40} # {what}");
    }
    let _ = writeln!(text, "Then, in a Terraform directory of your own:");
    let _ = writeln!(text, "  tfmirror {}", INIT_ARGS.join(" "));
    let _ = write!(text, "Remove the demo with: rm -rf {}", demo.dir.display());
    text
}

/// `1 request`, `2 requests`
fn count(n: usize, noun: &str) -> String {
    format!("{n} {noun}{}", if n == 1 { "" } else { "s" })
}

/// `1.23 s`
pub fn seconds(elapsed: Duration) -> String {
    format!("{:.2} s", elapsed.as_secs_f64())
}
