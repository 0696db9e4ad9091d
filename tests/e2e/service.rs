//! `tfmirror service install|uninstall` as a user runs it, with a HOME of
//! its own. The machine's service manager is never reached: the tests use
//! `--no-start`/`--no-stop`, or a PATH on which `systemctl` does not exist.
//! Linux only: the unit file's place and form are systemd's.
#![cfg(target_os = "linux")]

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use tempfile::TempDir;

/// A user with a HOME, a cache directory and perhaps a config file, all
/// in one temporary directory.
struct User {
    _temp: TempDir,
    /// The temporary directory without symlinks, as the absolute paths
    /// tfmirror writes spell it.
    root: PathBuf,
}

impl User {
    fn new() -> User {
        let temp = tempfile::tempdir().expect("temp dir");
        let root = temp.path().canonicalize().unwrap();
        std::fs::create_dir_all(root.join("home")).unwrap();
        User { _temp: temp, root }
    }

    fn home(&self) -> PathBuf {
        self.root.join("home")
    }

    fn cache_dir(&self) -> PathBuf {
        self.root.join("cache")
    }

    /// Where systemd's user instance reads units when XDG_CONFIG_HOME is
    /// not set.
    fn default_unit_file(&self) -> PathBuf {
        self.home().join(".config/systemd/user/tfmirror.service")
    }

    /// `tfmirror ARGS` with nothing from the machine's environment but
    /// PATH.
    fn tfmirror(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_tfmirror"));
        command
            .args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.home())
            .env("TFMIRROR_CACHE_DIR", self.cache_dir())
            .current_dir(&self.root);
        command
    }
}

/// Runs the command, expecting `code`; returns stdout and stderr.
fn run(command: &mut Command, code: i32) -> (String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = command.output().expect("tfmirror runs");
    let stdout = String::from_utf8(stdout).unwrap();
    let stderr = String::from_utf8(stderr).unwrap();
    assert_eq!(
        status.code(),
        Some(code),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    (stdout, stderr)
}

/// The `ExecStart=` line of a unit file.
fn exec_start(unit_file: &Path) -> String {
    let unit = std::fs::read_to_string(unit_file).expect("the unit file exists");
    unit.lines()
        .find_map(|line| line.strip_prefix("ExecStart="))
        .unwrap_or_else(|| panic!("no ExecStart= in:\n{unit}"))
        .to_owned()
}

/// tfmirror as the service runs it: `current_exe`, which resolves symlinks.
fn exe() -> String {
    std::fs::canonicalize(env!("CARGO_BIN_EXE_tfmirror"))
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned()
}

#[test]
fn install_writes_a_unit_for_the_default_address_and_uninstall_removes_it() {
    let user = User::new();
    let unit_file = user.default_unit_file();

    let (stdout, _) = run(&mut user.tfmirror(&["service", "install", "--no-start"]), 0);
    assert_eq!(
        exec_start(&unit_file),
        format!(
            "{} serve --listen 127.0.0.1:7878 --cache-dir {}",
            exe(),
            user.cache_dir().display()
        )
    );
    let mode = std::fs::metadata(&unit_file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o644);
    for expected in [
        format!(
            "Installed the tfmirror login service: {}",
            unit_file.display()
        ),
        "http://127.0.0.1:7878".to_owned(),
        "systemctl --user enable tfmirror.service".to_owned(),
        r#"eval "$(tfmirror env)""#.to_owned(),
    ] {
        assert!(stdout.contains(&expected), "{expected:?} in:\n{stdout}");
    }
    assert!(!stdout.contains("Note:"), "no other server runs:\n{stdout}");
    let dir = unit_file.parent().unwrap();
    let files: Vec<_> = std::fs::read_dir(dir).unwrap().collect();
    assert_eq!(files.len(), 1, "no temporary file is left in {dir:?}");

    let (stdout, _) = run(
        &mut user.tfmirror(&["service", "uninstall", "--no-stop"]),
        0,
    );
    assert!(!unit_file.exists());
    assert!(stdout.contains("Removed"), "{stdout}");

    let (stdout, _) = run(
        &mut user.tfmirror(&["service", "uninstall", "--no-stop"]),
        0,
    );
    assert!(stdout.contains("not installed"), "{stdout}");
}

/// The proxy and CA variables of the installing shell go into the unit,
/// which a service manager starts without them: `SSL_CERT_FILE` made
/// absolute, the file private because the proxy URL holds a password, and
/// the output names the variables but shows no value.
#[test]
fn install_carries_the_proxy_and_ca_variables_into_the_unit() {
    let user = User::new();
    let unit_file = user.default_unit_file();
    let (stdout, stderr) = run(
        user.tfmirror(&["service", "install", "--no-start"])
            .env("HTTPS_PROXY", "http://jo:s3cret@proxy.corp.example:3128")
            .env("no_proxy", ".corp.example")
            .env("SSL_CERT_FILE", "certs/corp ca.pem"),
        0,
    );
    let unit = std::fs::read_to_string(&unit_file).unwrap();
    let environment: Vec<&str> = unit
        .lines()
        .filter(|line| line.starts_with("Environment="))
        .collect();
    assert_eq!(
        environment,
        [
            "Environment=HTTPS_PROXY=http://jo:s3cret@proxy.corp.example:3128".to_owned(),
            "Environment=no_proxy=.corp.example".to_owned(),
            format!(
                "Environment=\"SSL_CERT_FILE={}/certs/corp ca.pem\"",
                user.root.display()
            ),
        ]
    );
    let mode = std::fs::metadata(&unit_file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let note = "Carried into the service from this shell, for reaching upstreams: HTTPS_PROXY, \
                no_proxy, SSL_CERT_FILE (a proxy password among them: the file is readable by \
                you only).";
    assert!(stdout.contains(note), "{stdout}");
    assert!(!format!("{stdout}{stderr}").contains("s3cret"));
}

#[test]
fn install_follows_the_config_file_and_xdg_config_home() {
    let user = User::new();
    let config_dir = user.root.join("my config");
    std::fs::create_dir_all(&config_dir).unwrap();
    std::fs::write(
        config_dir.join("config.toml"),
        "listen = \"127.0.0.1:7999\"\n",
    )
    .unwrap();
    let xdg_config_home = user.root.join("xdg");
    let unit_file = xdg_config_home.join("systemd/user/tfmirror.service");
    let install = || {
        let mut command = user.tfmirror(&["service", "install", "--no-start"]);
        command
            // Relative, as a user may set them: the unit names absolute paths.
            .env("TFMIRROR_CONFIG", "my config/config.toml")
            .env("TFMIRROR_CACHE_DIR", "cache")
            .env("XDG_CONFIG_HOME", &xdg_config_home);
        command
    };

    let (stdout, _) = run(&mut install(), 0);
    assert!(stdout.contains("http://127.0.0.1:7999"), "{stdout}");
    assert_eq!(
        exec_start(&unit_file),
        format!(
            "{} serve --listen 127.0.0.1:7999 --cache-dir {} --config \"{}\"",
            exe(),
            user.cache_dir().display(),
            config_dir.join("config.toml").display()
        )
    );
    assert!(!user.default_unit_file().exists());

    let (stdout, _) = run(&mut install(), 0);
    assert!(
        stdout.contains(&format!(
            "Updated the tfmirror login service: {}",
            unit_file.display()
        )),
        "{stdout}"
    );
}

#[test]
fn without_systemctl_install_keeps_the_unit_and_says_what_to_run() {
    let user = User::new();
    let unit_file = user.default_unit_file();
    let empty_path = user.root.join("empty-path");
    std::fs::create_dir_all(&empty_path).unwrap();

    let (stdout, stderr) = run(
        user.tfmirror(&["service", "install"])
            .env("PATH", &empty_path),
        0,
    );
    assert!(unit_file.is_file());
    assert!(
        stderr.contains("`systemctl --user daemon-reload` failed: systemctl is not on PATH"),
        "{stderr}"
    );
    assert!(stdout.contains("not running"), "{stdout}");
    for command in [
        "    systemctl --user daemon-reload\n",
        "    systemctl --user enable tfmirror.service\n",
        "    systemctl --user restart tfmirror.service\n",
    ] {
        assert!(stdout.contains(command), "{command:?} in:\n{stdout}");
    }

    // A service that could not be stopped keeps its file.
    let (_, stderr) = run(
        user.tfmirror(&["service", "uninstall"])
            .env("PATH", &empty_path),
        1,
    );
    assert!(unit_file.is_file());
    assert!(
        stderr.contains("    systemctl --user disable --now tfmirror.service\n"),
        "{stderr}"
    );
    assert!(stderr.contains("--no-stop"), "{stderr}");
}

/// A `tfmirror serve` on a free port, killed when dropped.
struct Server(Child);

impl Server {
    /// The server and its URL, once it listens.
    fn start(user: &User) -> (Server, String) {
        let mut child = user
            .tfmirror(&["serve", "--listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("tfmirror serve starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let url = line
            .trim()
            .strip_prefix("tfmirror listening on ")
            .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
            .to_owned();
        (Server(child), url)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn install_names_another_server_that_owns_the_cache() {
    let user = User::new();
    let (_server, url) = Server::start(&user);

    let (stdout, _) = run(&mut user.tfmirror(&["service", "install", "--no-start"]), 0);
    assert!(
        stdout.contains(&format!("serves this cache at {url}")),
        "{stdout}"
    );
    assert!(stdout.contains("`tfmirror stop`"), "{stdout}");
}
