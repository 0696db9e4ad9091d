//! End to end, as an attacker would try it: who may use a tfmirror server.
//!
//! - Someone who only knows the port (another local user, a web page using
//!   DNS rebinding, anyone on the network) can neither read nor change the
//!   cache.
//! - A team server admits token holders only, and its answers carry its
//!   public URL.
//! - The user's registry tokens are never written inside the cache.

use std::path::Path;
use std::process::Command;

use crate::fixtures::http::{get, raw_request, RawResponse};
use crate::fixtures::ProviderSpec;
use crate::harness::{assert_failure, assert_success, terraform, World};

const ALPHA: [(&str, &str, &str); 1] = [("hashicorp", "alpha", "1.0.0")];
const VERSIONS: &str = "/v1/providers/registry.terraform.io/hashicorp/alpha/versions";
const ZIP: &str = "/providers/registry.terraform.io/hashicorp/alpha/terraform-provider-alpha_1.0.0_linux_amd64.zip";

/// A world whose cache holds alpha 1.0.0, installed through a server
/// `exec` started.
fn alpha_cached() -> World {
    let world = World::new(vec![ProviderSpec::new("hashicorp", "alpha", &["1.0.0"])]);
    assert_success(&world.init(&world.workdir("first", &ALPHA)), "first init");
    world
}

/// The cache's files that hold its content: not the index (sled writes
/// on its own schedule) and not the server's log.
fn content_files(world: &World) -> Vec<String> {
    world
        .cache_files()
        .into_iter()
        .filter(|f| !f.starts_with("index/") && !f.starts_with("server.log"))
        .collect()
}

/// The address of the running server: `127.0.0.1:PORT`.
fn address(world: &World) -> std::net::SocketAddr {
    let info = world.server_info().expect("a running server");
    let url = info["url"].as_str().unwrap();
    url.strip_prefix("http://").unwrap().parse().unwrap()
}

/// One request, with exactly these headers.
fn send(
    world: &World,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> RawResponse {
    let mut raw = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
    for (name, value) in headers {
        raw.push_str(&format!("{name}: {value}\r\n"));
    }
    raw.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    raw_request(address(world), &raw)
}

/// A valid provider zip that is not the registry's: what an attacker
/// would plant.
fn planted_zip() -> Vec<u8> {
    crate::fixtures::provider_zip::build_zip("attacker", "alpha", "1.0.0", "linux", "amd64", 0)
}

#[test]
fn someone_who_only_knows_the_port_can_neither_change_nor_read_the_cache() {
    let world = alpha_cached();
    let addr = address(&world);
    let host = addr.to_string();
    let secret = world.server_secret();
    let before = content_files(&world);
    let zip_body = String::from_utf8_lossy(&planted_zip()).into_owned();
    let changes = [
        ("PUT", ZIP.to_owned(), zip_body.as_str()),
        ("POST", "/_tfmirror/delete".to_owned(), r#"{"pattern":"*"}"#),
        (
            "POST",
            "/_tfmirror/gc".to_owned(),
            r#"{"max_size":0,"min_age_secs":0}"#,
        ),
        (
            "POST",
            "/_tfmirror/prune".to_owned(),
            r#"{"older_than_secs":0}"#,
        ),
    ];
    for (method, path, body) in &changes {
        // No secret at all, with the header that once sufficed: nothing here.
        let headers = [("Host", host.as_str()), ("X-Tfmirror-Client", "0.1.0")];
        let response = send(&world, method, path, &headers, body);
        assert_eq!(response.status, 404, "{method} {path}: {}", response.text());
        // A URL of the owner's (say, from a CLI config shown in a ticket)
        // without the secret as a bearer token: refused too.
        let owners = format!("/{secret}{path}");
        let response = send(&world, method, &owners, &headers, body);
        assert_eq!(
            response.status,
            403,
            "{method} {owners}: {}",
            response.text()
        );
        let wrong = [("Host", host.as_str()), ("Authorization", "Bearer guess")];
        let response = send(&world, method, &owners, &wrong, body);
        assert_eq!(response.status, 403, "{method} with a wrong bearer");
    }
    for path in [
        VERSIONS,
        ZIP,
        "/_tfmirror/health",
        "/_tfmirror/metrics",
        "/_tfmirror/artifacts",
    ] {
        let response = send(&world, "GET", path, &[("Host", host.as_str())], "");
        assert_eq!(response.status, 404, "GET {path}: {}", response.text());
        assert!(!response.text().contains("alpha"), "{}", response.text());
    }
    assert_eq!(content_files(&world), before, "the cache is unchanged");

    // The owner's own commands still work, and so does the next init.
    let list = world.tfmirror(&["cache", "list"]).output().unwrap();
    assert_success(&list, "cache list");
    assert!(String::from_utf8_lossy(&list.stdout).contains("alpha"));
    world.registry.clear_requests();
    assert_success(&world.init(&world.workdir("second", &ALPHA)), "second init");
    assert_eq!(
        world.registry.artifact_requests(),
        0,
        "served from the cache"
    );
}

#[test]
fn every_route_refuses_a_foreign_host_with_421_and_no_body() {
    let world = alpha_cached();
    let port = address(&world).port();
    let secret = world.server_secret();
    let bearer = format!("Bearer {secret}");
    let before = content_files(&world);
    let routes = [
        ("GET", "/_tfmirror/health"),
        ("GET", "/_tfmirror/metrics"),
        ("GET", "/_tfmirror/artifacts"),
        ("GET", "/_tfmirror/runs/0123456789abcdef"),
        ("DELETE", "/_tfmirror/runs/0123456789abcdef"),
        ("POST", "/_tfmirror/delete"),
        ("POST", "/_tfmirror/gc"),
        ("POST", "/_tfmirror/prune"),
        ("GET", VERSIONS),
        (
            "GET",
            "/v1/providers/registry.terraform.io/hashicorp/alpha/1.0.0/download/linux/amd64",
        ),
        (
            "GET",
            "/v1/modules/registry.terraform.io/acme/net/aws/versions",
        ),
        (
            "GET",
            "/providers/registry.terraform.io/hashicorp/alpha/index.json",
        ),
        ("GET", ZIP),
        ("PUT", ZIP),
        (
            "GET",
            "/git/http/example.com/org/repo.git/info/refs?service=git-upload-pack",
        ),
        (
            "GET",
            "/git-archive/example.com/org/repo.git/0000000000000000000000000000000000000000.tar.gz",
        ),
        ("GET", "/modules/archives/abc.tar.gz"),
    ];
    let foreign = [
        "attacker.example".to_owned(),
        format!("attacker.example:{port}"),
        format!("127.0.0.1:{}", port.wrapping_add(1)),
        format!("127.0.0.1.attacker.example:{port}"),
    ];
    for (method, path) in routes {
        let path = format!("/{secret}{path}");
        for host in &foreign {
            let headers = [("Host", host.as_str()), ("Authorization", bearer.as_str())];
            let response = send(&world, method, &path, &headers, r#"{"pattern":"*"}"#);
            assert_eq!(response.status, 421, "{method} {path} as {host}");
            assert!(
                response.body.is_empty(),
                "{method} {path}: {}",
                response.text()
            );
        }
    }
    // HTTP/1.0 without a Host header names no address at all.
    let raw = format!("GET /{secret}{VERSIONS} HTTP/1.0\r\n\r\n");
    assert_eq!(raw_request(address(&world), &raw).status, 421);
    assert_eq!(content_files(&world), before, "the cache is unchanged");
    let own = send(
        &world,
        "GET",
        &format!("/{secret}{VERSIONS}"),
        &[("Host", &format!("localhost:{port}"))],
        "",
    );
    assert_eq!(
        own.status,
        200,
        "the server's own names are fine: {}",
        own.text()
    );
}

/// `script` run by bash as user and group 65534 with no supplementary
/// groups; `None` where this process cannot switch users (not root).
fn as_another_user(script: &str) -> Option<std::process::Output> {
    use std::os::unix::process::CommandExt;
    // SAFETY: geteuid(2) has no preconditions.
    if unsafe { libc::geteuid() } != 0 || !Path::new("/bin/bash").exists() {
        return None;
    }
    let mut command = Command::new("/bin/bash");
    command.args(["-c", script]).current_dir("/").env_clear();
    // SAFETY: setgroups, setgid and setuid are async-signal-safe and touch
    // no memory of this process's.
    unsafe {
        command.pre_exec(|| {
            if libc::setgroups(0, std::ptr::null()) != 0
                || libc::setgid(65534) != 0
                || libc::setuid(65534) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    Some(command.output().unwrap())
}

#[test]
fn another_local_user_cannot_read_the_cache_through_the_port() {
    let world = alpha_cached();
    let addr = address(&world);
    let server_json = world.cache_dir().join("server.json");
    // What user 65534 can learn: the port (ss, /proc/net/tcp) and the
    // paths; not server.json. Bash's /dev/tcp needs no HTTP client.
    let guess = format!("/{}{VERSIONS}", "0".repeat(64));
    let mut script = format!(
        "cat '{}' >/dev/null 2>&1 || echo 'server.json: denied'\n",
        server_json.display()
    );
    for path in [VERSIONS, ZIP, guess.as_str()] {
        script.push_str(&format!(
            "exec 3<>/dev/tcp/{ip}/{port}\n\
             printf 'GET {path} HTTP/1.1\\r\\nHost: {addr}\\r\\nConnection: close\\r\\n\\r\\n' >&3\n\
             head -n 1 <&3\n\
             exec 3<&-\n",
            ip = addr.ip(),
            port = addr.port(),
        ));
    }
    let Some(output) = as_another_user(&script) else {
        eprintln!("skipped: needs root (and /bin/bash) to act as another user");
        return;
    };
    assert_success(&output, "bash as user 65534");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("server.json: denied"), "{text}");
    assert_eq!(text.matches("HTTP/1.1 404").count(), 3, "{text}");
    // The same requests with the secret, which the owner has, do answer.
    let owner = get(&format!("{}{VERSIONS}", world.server_url()));
    assert_eq!(owner.status, 200);
}

/// `~/.terraformrc` with a registry token, as `terraform login` leaves it.
const TOKEN: &str = "sekrit.atlasv1.do-not-write-me-down";

#[test]
fn the_users_token_reaches_the_registry_but_never_the_cache() {
    let world = World::new(vec![ProviderSpec::new("hashicorp", "alpha", &["1.0.0"])]);
    std::fs::write(
        world.home().join(".terraformrc"),
        format!("credentials \"registry.terraform.io\" {{\n  token = \"{TOKEN}\"\n}}\n"),
    )
    .unwrap();
    // What versions before 0.2 left inside the cache: the next server
    // removes it.
    let legacy = world.cache_dir().join("terraform.rc");
    std::fs::create_dir_all(world.cache_dir()).unwrap();
    std::fs::write(
        &legacy,
        format!("credentials \"x\" {{ token = \"{TOKEN}\" }}\n"),
    )
    .unwrap();
    // Every request logged, to show the log holds neither secret.
    let debug = [("TFMIRROR_LOG", "debug")];
    let output = world.init_with_env(&world.workdir("first", &ALPHA), &debug);
    assert_success(&output, "init");
    assert!(!legacy.exists(), "the old in-cache CLI config is gone");
    let log = std::fs::read_to_string(world.cache_dir().join("server.log")).unwrap();
    assert!(log.contains("GET /"), "requests were logged: {log}");
    assert!(!log.contains(&world.server_secret()), "{log}");
    let sent = world
        .registry
        .count(|r| r.authorization.as_deref() == Some(&format!("Bearer {TOKEN}")));
    assert!(
        sent > 0,
        "the token was forwarded: {:#?}",
        world.registry.requests()
    );

    let rc = world.tfmirror(&["rc"]).output().unwrap();
    assert_success(&rc, "tfmirror rc");
    let text = String::from_utf8_lossy(&rc.stdout);
    assert!(!text.contains(TOKEN), "{text}");
    assert!(
        text.contains("never prints a token") && text.contains("tfmirror env"),
        "{text}"
    );

    let mut dirs = vec![world.cache_dir()];
    let mut files = 0;
    world.stop_server(); // sled flushes everything it holds
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            files += 1;
            let bytes = std::fs::read(&path).unwrap();
            assert!(
                !bytes.windows(TOKEN.len()).any(|w| w == TOKEN.as_bytes()),
                "{} holds the token",
                path.display()
            );
        }
    }
    assert!(files >= 5, "the whole tree was read ({files} files)");
    assert!(
        world.cache_dir().join("index").is_dir(),
        "sled's files were among them"
    );
}

#[test]
fn a_runs_counters_are_read_without_being_reset() {
    let world = alpha_cached();
    let base = world.server_url();
    let run = "0123456789abcdef";
    let dir = world.workdir("counted", &ALPHA);
    let rc = world.tfmirror(&["rc"]).output().unwrap();
    let text = String::from_utf8(rc.stdout)
        .unwrap()
        .replace(&base, &format!("{base}/run/{run}"));
    let cli_config = world.root.path().join("run.tfrc");
    std::fs::write(&cli_config, text).unwrap();
    let output = world
        .command(terraform())
        .args(["init", "-input=false", "-no-color"])
        .current_dir(&dir)
        .env("TF_CLI_CONFIG_FILE", &cli_config)
        .output()
        .unwrap();
    assert_success(&output, "init counted as a run");
    let first = get(&format!("{base}/_tfmirror/runs/{run}")).json();
    let second = get(&format!("{base}/_tfmirror/runs/{run}")).json();
    assert_eq!(first["hits"], 3, "zip, sums and signature: {first}");
    assert_eq!(first, second, "a GET changes nothing");
}

#[test]
fn a_server_beyond_loopback_says_what_it_needs() {
    let world = World::new(Vec::new());
    let output = world
        .tfmirror(&["serve", "--listen", "0.0.0.0:0"])
        .output()
        .unwrap();
    let text = assert_failure(&output, "serve on 0.0.0.0 without a team setup");
    for needed in ["--public-url", "--tls-cert", "--tokens"] {
        assert!(text.contains(needed), "{needed}: {text}");
    }
    assert!(world.server_info().is_none(), "nothing started");
}

/// GET over HTTPS trusting the test CA, optionally with a bearer token:
/// `(status, body)`.
fn https_get(url: &str, ca: &Path, token: Option<&str>) -> (u16, String) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let ca = reqwest::Certificate::from_pem(&std::fs::read(ca).unwrap()).unwrap();
        let client = reqwest::Client::builder()
            .add_root_certificate(ca)
            .no_proxy()
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .unwrap();
        let mut request = client.get(url);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.text().await.unwrap())
    })
}

/// A team server on every address, port 443 so that `TF_TOKEN_localhost`
/// names its host (a token variable cannot name a port); Terraform reaches
/// it as `https://localhost`, on loopback.
#[test]
fn a_team_server_admits_token_holders_and_answers_with_its_public_url() {
    if std::net::TcpListener::bind("0.0.0.0:443").is_err() {
        eprintln!("skipped: cannot listen on port 443 here");
        return;
    }
    let world = World::new(vec![ProviderSpec::new("hashicorp", "alpha", &["1.0.0"])]);
    let tokens = world.root.path().join("tokens");
    std::fs::write(&tokens, "# the platform team\nteam-token-1\n").unwrap();
    let (_server, ca) = world.serve_tls(&[
        "--listen",
        "0.0.0.0:443",
        "--public-url",
        "https://localhost",
        "--tokens",
        tokens.to_str().unwrap(),
    ]);

    let rc = world
        .tfmirror(&["rc", "--network-mirror"])
        .output()
        .unwrap();
    assert_success(&rc, "rc --network-mirror");
    let text = String::from_utf8(rc.stdout).unwrap();
    assert!(
        text.contains("url = \"https://localhost/providers/\""),
        "{text}"
    );
    let cli_config = world.root.path().join("team.tfrc");
    std::fs::write(&cli_config, text).unwrap();
    let init = |dir: &Path, token: Option<&str>| {
        let mut command = world.command(terraform());
        command
            .args(["init", "-input=false", "-no-color"])
            .current_dir(dir)
            .env("TF_CLI_CONFIG_FILE", &cli_config)
            .env("SSL_CERT_FILE", &ca);
        if let Some(token) = token {
            command.env("TF_TOKEN_localhost", token);
        }
        command.output().unwrap()
    };

    for (name, token) in [("no-token", None), ("unlisted", Some("not-on-the-list"))] {
        let dir = world.workdir(name, &ALPHA);
        let text = assert_failure(&init(&dir, token), "init without a listed token");
        // Terraform words a 401 from a mirror this way.
        assert!(
            text.contains("rejected the given authentication credentials"),
            "{text}"
        );
    }
    assert_eq!(
        world.registry.artifact_requests(),
        0,
        "nothing fetched for them"
    );

    let dir = world.workdir("member", &ALPHA);
    assert_success(&init(&dir, Some("team-token-1")), "init with a team token");
    assert!(crate::harness::locked_hashes(&dir, "hashicorp", "alpha")[0].starts_with("h1:"));

    let index = "https://localhost/providers/registry.terraform.io/hashicorp/alpha/1.0.0.json";
    assert_eq!(https_get(index, &ca, None).0, 401);
    let (status, body) = https_get(index, &ca, Some("team-token-1"));
    assert_eq!(status, 200, "{body}");
    let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
    let url = answer["archives"]["linux_amd64"]["url"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        url.starts_with("https://localhost/"),
        "the public URL: {url}"
    );
    assert!(
        !url.contains(&world.server_secret()),
        "never the owner's secret: {url}"
    );
    assert_eq!(
        https_get(&url, &ca, None).0,
        200,
        "a download needs no token"
    );
    let forged = url.replacen("https://localhost/", "https://localhost/0", 1);
    assert_eq!(
        https_get(&forged, &ca, None).0,
        401,
        "nor can one be made up"
    );
}
