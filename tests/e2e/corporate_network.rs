//! A corporate network: upstreams only over HTTPS through a proxy, with
//! certificates of the company's own CA. `tfmirror exec -- terraform init`
//! gets `HTTPS_PROXY` and `SSL_CERT_FILE` as a user's shell has them, and
//! the background server it starts reaches the registry (reqwest 0.12) and
//! the git host (gix, reqwest 0.13) through the proxy, trusting that CA.
//!
//! The fake registry serves at `https://localhost:PORT`, a host name: the
//! clients proxy loopback addresses as any other (curl's rules, unlike
//! Go's), so `127.0.0.1` would do as well, but `NO_PROXY=localhost` reads
//! as a user would write it.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use crate::fixtures::connect_proxy::ConnectProxy;
use crate::fixtures::tls::{acceptor, test_certificates};
use crate::fixtures::{FakeRegistry, GitRepoSpec, ModuleSpec, ProviderSpec};
use crate::harness::{assert_failure, assert_success, World};

const REPO: &str = "org/infra.git";

/// An init here takes a few seconds; a hang must fail, not stall the suite.
const INIT_DEADLINE: Duration = Duration::from_secs(120);

/// The registry over HTTPS with a provider, a registry module that is a
/// git source, and the git repository behind it; the CA's PEM file.
struct Corporate {
    world: World,
    ca: PathBuf,
    _certs: tempfile::TempDir,
}

impl Corporate {
    fn new() -> Corporate {
        let certs = tempfile::tempdir().unwrap();
        let (ca, cert, key) = test_certificates(certs.path());
        let registry = FakeRegistry::start_tls(
            vec![ProviderSpec::new("hashicorp", "alpha", &["1.0.0"])],
            vec![
                ModuleSpec::new("acme", "vpc", "git", &["1.1.0"]).with_git_location(
                    REPO,
                    "modules/vpc",
                    "v1.1.0",
                ),
            ],
            vec![GitRepoSpec::new(REPO)],
            acceptor(&cert, &key),
        );
        assert!(registry.url().starts_with("https://localhost:"));
        Corporate {
            world: World::from_registry(registry, ""),
            ca,
            _certs: certs,
        }
    }

    /// `host:port` of the registry, as a CONNECT names it.
    fn authority(&self) -> String {
        format!("localhost:{}", self.world.registry.addr().port())
    }

    /// A provider, a registry module that resolves to git, and a direct
    /// `git::https://` source.
    fn workdir(&self) -> PathBuf {
        let git = self.world.registry.git_url(REPO);
        let main_tf = format!(
            "{}module \"vpc\" {{\n  source  = \"acme/vpc/git\"\n  version = \"1.1.0\"\n}}\n\
             module \"direct\" {{\n  source = \"git::{git}//modules/dns?ref=v1.0.0\"\n}}\n",
            crate::harness::main_tf(&[("hashicorp", "alpha", "1.0.0")])
        );
        self.world.workdir_with("work", &main_tf)
    }

    /// `tfmirror exec -- terraform init` with `env` added.
    fn init(&self, dir: &Path, env: &[(&str, &str)]) -> Output {
        let terraform = crate::harness::terraform();
        let terraform = terraform.to_str().unwrap();
        self.exec(dir, &[terraform, "init", "-input=false", "-no-color"], env)
    }

    /// `tfmirror exec -- COMMAND` with `env` added, within
    /// [`INIT_DEADLINE`]; the server logs at INFO, so its start line is in
    /// `server.log`.
    fn exec(&self, dir: &Path, command: &[&str], env: &[(&str, &str)]) -> Output {
        let mut exec = self.world.tfmirror(&["exec", "--"]);
        exec.args(command)
            .current_dir(dir)
            .env("TFMIRROR_LOG", "info")
            .envs(env.iter().copied());
        output_within(exec, INIT_DEADLINE)
    }

    fn server_log(&self) -> String {
        std::fs::read_to_string(self.world.cache_dir().join("server.log")).unwrap_or_default()
    }
}

/// Runs `command` to its end, killing it at `deadline`.
fn output_within(mut command: std::process::Command, deadline: Duration) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let (out, err) = (dir.path().join("out"), dir.path().join("err"));
    let mut child = command
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .expect("run tfmirror exec");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "still running after {deadline:?}:\n{}\n{}",
                std::fs::read_to_string(&out).unwrap_or_default(),
                std::fs::read_to_string(&err).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    Output {
        status,
        stdout: std::fs::read(&out).unwrap(),
        stderr: std::fs::read(&err).unwrap(),
    }
}

fn text(output: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Through a proxy that wants a password: the registry API, the provider
/// download and both git sources go through CONNECT tunnels to the
/// registry, each with the credentials, and nothing else reaches the
/// proxy: not Terraform's requests to tfmirror on 127.0.0.1, nor git's,
/// although `http_proxy` is set too (git, unlike Terraform, would send
/// those through it; init clones by path, so a plain `git ls-remote`
/// under `exec` shows it). The server's log says where requests go, and
/// the password appears nowhere.
#[test]
fn init_goes_through_an_authenticating_proxy_and_trusts_ssl_cert_file() {
    let corp = Corporate::new();
    let proxy = ConnectProxy::with_credentials("jo", "s3cret");
    let dir = corp.workdir();
    let proxy_url = proxy.url_with("jo", "s3cret");
    let ca = corp.ca.to_str().unwrap();
    let output = corp.init(
        &dir,
        &[
            ("HTTPS_PROXY", &proxy_url),
            ("http_proxy", &proxy_url),
            ("SSL_CERT_FILE", ca),
        ],
    );
    assert_success(&output, "init through the proxy");
    let git_url = corp.world.registry.git_url(REPO);
    let env = [("http_proxy", proxy_url.as_str())];
    let git = corp.exec(&dir, &["git", "ls-remote", &git_url], &env);
    assert_success(&git, "git ls-remote through tfmirror, http_proxy set");

    let requests = proxy.requests();
    let tunnels = proxy.tunnels_to(&corp.authority());
    assert!(tunnels > 0, "no CONNECT to the registry: {requests:?}");
    assert_eq!(tunnels, requests.len(), "{requests:?}");
    assert!(
        requests
            .iter()
            .all(|r| r.credentials.as_deref() == Some("jo:s3cret")),
        "{requests:?}"
    );
    let registry = &corp.world.registry;
    assert!(
        registry.artifact_requests() > 0,
        "the provider was not downloaded"
    );
    assert!(
        registry.git_requests() > 0,
        "the git sources were not fetched"
    );

    let log = corp.server_log();
    let routing = format!(
        "upstream requests: https via proxy http://***@{} (HTTPS_PROXY), http via proxy \
         http://***@{} (http_proxy); TLS trusts the CA certificates of SSL_CERT_FILE={ca} \
         (1 certificate) instead of the system's",
        proxy.url().trim_start_matches("http://"),
        proxy.url().trim_start_matches("http://"),
    );
    assert!(log.contains(&routing), "{routing}\nnot in the log:\n{log}");
    for (what, text) in [
        ("server.log", log),
        ("init's output", text(&output)),
        ("git's output", text(&git)),
    ] {
        assert!(
            !text.contains("s3cret"),
            "the password is in the {what}:\n{text}"
        );
    }
}

/// `NO_PROXY=localhost` sends everything straight to the registry: the
/// proxy is not even asked.
#[test]
fn no_proxy_bypasses_the_proxy() {
    let corp = Corporate::new();
    let proxy = ConnectProxy::start();
    let dir = corp.workdir();
    let output = corp.init(
        &dir,
        &[
            ("HTTPS_PROXY", &proxy.url()),
            ("NO_PROXY", "localhost"),
            ("SSL_CERT_FILE", corp.ca.to_str().unwrap()),
        ],
    );
    assert_success(&output, "init with NO_PROXY");
    assert_eq!(proxy.requests(), Vec::new());
    assert!(corp.world.registry.git_requests() > 0);
    assert!(corp
        .server_log()
        .contains("hosts matching NO_PROXY=localhost go direct"));
}

/// Without `SSL_CERT_FILE` the registry's certificate is not trusted: the
/// init fails soon, and tfmirror's report says why and what to set.
#[test]
fn an_untrusted_certificate_fails_with_the_reason() {
    let corp = Corporate::new();
    let proxy = ConnectProxy::start();
    let dir = corp.workdir();
    let started = Instant::now();
    let output = corp.init(&dir, &[("HTTPS_PROXY", &proxy.url())]);
    let text = assert_failure(&output, "init without the CA");
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "took {:?}",
        started.elapsed()
    );
    assert!(proxy.tunnels_to(&corp.authority()) > 0);
    for expected in [
        "invalid peer certificate",
        "UnknownIssuer",
        "set SSL_CERT_FILE",
    ] {
        assert!(text.contains(expected), "{expected:?} not in:\n{text}");
    }
    // The git mirror's failure is the same host's trouble: its repository
    // is listed in the one block, with the certificate advice.
    let block: Vec<&str> = text
        .lines()
        .skip_while(|line| !line.starts_with("tfmirror: cannot reach"))
        .collect();
    assert!(block[0].contains("invalid peer certificate"), "{block:?}");
    assert!(
        block.iter().any(|line| line.contains("/git/org/infra.git")),
        "no git repository in:\n{text}"
    );
    assert_eq!(
        block
            .iter()
            .filter(|line| line.contains("set SSL_CERT_FILE"))
            .count(),
        1,
        "the advice once, in the block:\n{text}"
    );
}

/// The shared tier's object store client (object_store, reqwest 0.13)
/// goes through the proxy and trusts `SSL_CERT_FILE` too: its first
/// listing of the bucket, at the start of the server, reaches the HTTPS
/// endpoint (here the fake registry at `127.0.0.1`, a CONNECT target of
/// its own) through a tunnel.
#[test]
fn the_shared_tier_goes_through_the_proxy_too() {
    let corp = Corporate::new();
    let endpoint = format!("127.0.0.1:{}", corp.world.registry.addr().port());
    corp.world.append_config(&format!(
        "[shared]\nurl = \"s3://corp-bucket/cache\"\nendpoint = \"https://{endpoint}\"\n\
         region = \"us-east-1\"\ntimeout = \"3s\"\n"
    ));
    let proxy = ConnectProxy::start();
    let dir = corp.workdir();
    let output = corp.init(
        &dir,
        &[
            ("HTTPS_PROXY", &proxy.url()),
            ("SSL_CERT_FILE", corp.ca.to_str().unwrap()),
            ("AWS_ACCESS_KEY_ID", "corp-key"),
            ("AWS_SECRET_ACCESS_KEY", "corp-secret"),
        ],
    );
    assert_success(&output, "init with a shared tier");
    assert!(proxy.tunnels_to(&endpoint) > 0, "{:?}", proxy.requests());
    let bucket = corp
        .world
        .registry
        .count(|r| r.path.starts_with("/corp-bucket"));
    assert!(bucket > 0, "{:?}", corp.world.registry.requests());
}

/// A proxy that refuses the credentials (407), and one that is down: the
/// init fails in time, the report says the proxy is the trouble and what
/// to check, and the password is in no output and no log line.
#[test]
fn proxy_failures_never_show_the_password() {
    let corp = Corporate::new();
    let proxy = ConnectProxy::with_credentials("jo", "right");
    let down = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let ca = corp.ca.to_str().unwrap().to_owned();
    for (what, proxy_url) in [
        ("refused credentials", proxy.url_with("jo", "wrong-s3cret")),
        ("proxy down", format!("http://jo:wrong-s3cret@{down}")),
    ] {
        let dir = corp.world.workdir_with(
            what,
            &crate::harness::main_tf(&[("hashicorp", "alpha", "1.0.0")]),
        );
        let started = Instant::now();
        let output = corp.init(&dir, &[("HTTPS_PROXY", &proxy_url), ("SSL_CERT_FILE", &ca)]);
        let text = assert_failure(&output, what);
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{what}: {:?}",
            started.elapsed()
        );
        assert!(
            text.contains("tunnel error") && text.contains("check its address and credentials"),
            "{what}: no word of the proxy in:\n{text}"
        );
        let log = corp.server_log();
        for (place, text) in [("output", &text), ("server.log", &log)] {
            assert!(
                !text.contains("s3cret"),
                "{what}: the password is in the {place}:\n{text}"
            );
        }
        corp.world.stop_server();
    }
    assert!(proxy.requests().iter().all(|r| !r.tunnelled));
}
