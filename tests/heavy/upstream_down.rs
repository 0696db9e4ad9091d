//! End to end: an upstream that accepts connections but never answers
//! costs a run one timeout, not one per module (issue 16, findings 6 and 8).
//! The fake registry's API is "blackholed" with a delay far longer than any
//! test; everything runs on loopback and every test bounds its own time.

use std::time::{Duration, Instant};

use crate::fixtures::ModuleSpec;
use crate::harness::{assert_failure, assert_success, World};

/// Longer than any test runs: the upstream accepts and never answers.
const BLACKHOLE: Duration = Duration::from_secs(600);

const NAMES: [&str; 5] = ["net", "db", "dns", "lb", "vpc"];

fn five_modules() -> Vec<ModuleSpec> {
    NAMES
        .iter()
        .map(|name| ModuleSpec::new("acme", name, "aws", &["1.0.0"]))
        .collect()
}

fn root_module(names: &[&str], version: &str) -> String {
    names
        .iter()
        .map(|name| {
            format!(
                "module \"{name}\" {{\n  source  = \"acme/{name}/aws\"\n  version = \"{version}\"\n}}\n\n"
            )
        })
        .collect()
}

#[test]
fn a_blackholed_upstream_costs_a_warm_run_one_timeout() {
    let _turn = crate::file_turn(module_path!());
    let world = World::with_modules(five_modules());
    let cold = world.workdir_with("cold", &root_module(&NAMES, "1.0.0"));
    assert_success(&world.init(&cold), "cold init");

    world.registry.set_api_delay(Some(BLACKHOLE));
    let warm = world.workdir_with("warm", &root_module(&NAMES, "1.0.0"));
    let started = Instant::now();
    let output = world.init(&warm);
    let took = started.elapsed();
    assert_success(&output, "warm init with the upstream blackholed");
    assert!(
        took < Duration::from_secs(4),
        "a warm init of 5 modules took {took:?} with the upstream blackholed"
    );
    eprintln!("warm init of 5 modules, upstream blackholed: {took:?}");
}

#[test]
fn nothing_cached_fails_with_tfmirror_s_error_in_time_and_then_at_once() {
    let _turn = crate::file_turn(module_path!());
    let world = World::with_modules(five_modules());
    world.registry.set_api_delay(Some(BLACKHOLE));

    let first = world.workdir_with("first", &root_module(&NAMES[..1], "1.0.0"));
    let started = Instant::now();
    let output = world.init(&first);
    let took = started.elapsed();
    let message = assert_failure(&output, "init with nothing cached");
    eprintln!("first init failed after {took:?}:\n{message}");
    assert!(
        took < Duration::from_secs(11),
        "took {took:?}; Terraform gives up on its own after 10 s"
    );
    // Terraform prints the status, not the body; `exec`'s report says
    // which host did not answer, and what was not served.
    assert!(
        message.contains("502 Bad Gateway")
            && message.contains("cannot reach 127.0.0.1:")
            && message.contains("(timed out)"),
        "tfmirror's own error, not Terraform's timeout: {message}"
    );

    let second = world.workdir_with("second", &root_module(&NAMES[1..2], "1.0.0"));
    let started = Instant::now();
    let output = world.init(&second);
    let took = started.elapsed();
    let message = assert_failure(&output, "init while the breaker is open");
    eprintln!("second init failed after {took:?}:\n{message}");
    assert!(
        took < Duration::from_secs(3),
        "took {took:?} with the breaker open"
    );
    assert!(
        message.contains("cannot reach 127.0.0.1:") && message.contains("not in the cache"),
        "says the host is not answering, and what was not served: {message}"
    );
}

#[test]
fn the_breaker_closes_once_the_upstream_is_back() {
    let _turn = crate::file_turn(module_path!());
    let world = World::start(
        Vec::new(),
        vec![
            ModuleSpec::new("acme", "net", "aws", &["1.0.0"]),
            ModuleSpec::new("acme", "dns", "aws", &["1.0.0"]),
        ],
        "upstream_retry_after = \"1s\"",
    );
    let cold = world.workdir_with("cold", &root_module(&["net", "dns"], "1.0.0"));
    assert_success(&world.init(&cold), "cold init");

    // Opens the breaker. The request for net's list stays with the
    // blackholed upstream until its own deadline (later requests for that
    // list join it), so the run after the upstream is back asks for
    // another module's list.
    world.registry.set_api_delay(Some(BLACKHOLE));
    let down = world.workdir_with("down", &root_module(&["net"], "1.0.0"));
    assert_success(
        &world.init(&down),
        "init from the cache, upstream blackholed",
    );

    world.registry.set_api_delay(None);
    world
        .registry
        .publish_module_version("acme", "dns", "aws", "1.1.0");
    std::thread::sleep(Duration::from_millis(1500));
    let back = world.workdir_with("back", &root_module(&["dns"], "1.1.0"));
    let started = Instant::now();
    let output = world.init(&back);
    let took = started.elapsed();
    assert_success(&output, "init needing a version only the upstream knows");
    assert!(took < Duration::from_secs(10), "took {took:?}");
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(
        log.contains("answers again"),
        "the server says the breaker closed: {log}"
    );
}
