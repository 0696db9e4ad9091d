//! `serve-throughput`: 16 clients at once, each downloading a cached 100 MB provider zip, from
//! tfmirror and from nginx serving the same file from the same disk. Also reports the peak
//! RSS of the tfmirror server over the whole scenario.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use futures_util::StreamExt;

use crate::fixtures::{FakeRegistry, ProviderSpec};
use crate::runner::{alternate, Pair};
use crate::sandbox::{Sandbox, Tools};

pub const CLIENTS: usize = 16;
pub const ZIP_BYTES: usize = 100 * 1024 * 1024;
const ZIP_PATH: &str =
    "registry.terraform.io/bench/big/terraform-provider-big_1.0.0_linux_amd64.zip";

pub struct Throughput {
    pub pair: Pair,
    /// Bytes each round moves: every client downloads the zip once.
    pub bytes_per_round: u64,
    /// VmHWM of the tfmirror server at the end.
    pub peak_rss_bytes: u64,
}

/// nginx, where `bench/install.sh` puts it; `None` if it is not installed.
pub fn find_nginx() -> Option<PathBuf> {
    ["/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/bin/nginx"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
}

/// No simulated network here: the zip is cached before anything is measured.
pub fn throughput(tools: &Tools, nginx: &Path, runs: usize) -> Result<Throughput> {
    let registry = FakeRegistry::start(vec![ProviderSpec::new("bench", "big", &["1.0.0"])
        .with_platforms(&[("linux", "amd64")])
        .with_extra_bytes(ZIP_BYTES)]);
    let sandbox = Sandbox::new(tools, &registry)?;
    let cache = sandbox.path().join("cache");
    let server = sandbox.serve(&cache, &[])?;
    let runtime = tokio::runtime::Runtime::new()?;

    let zip_url = runtime.block_on(cached_zip_url(&server.url))?;
    let on_disk = cache.join("providers").join(ZIP_PATH);
    let size = std::fs::metadata(&on_disk)
        .with_context(|| format!("{} not cached", on_disk.display()))?
        .len();
    let nginx = Nginx::start(nginx, &sandbox, &cache.join("providers"))?;
    let nginx_url = format!("{}/{ZIP_PATH}", nginx.url);

    let pair = alternate(
        "serve-throughput",
        runs,
        |_| runtime.block_on(download_all(&zip_url, size)),
        |_| runtime.block_on(download_all(&nginx_url, size)),
    )?;
    Ok(Throughput {
        pair,
        bytes_per_round: size * CLIENTS as u64,
        peak_rss_bytes: peak_rss(server.pid())?,
    })
}

/// Asks tfmirror for the zip's download answer, and downloads it once, which caches it.
async fn cached_zip_url(server: &str) -> Result<String> {
    let answer_url =
        format!("{server}/v1/providers/registry.terraform.io/bench/big/1.0.0/download/linux/amd64");
    let answer = reqwest::get(&answer_url)
        .await?
        .error_for_status()?
        .bytes()
        .await?;
    let answer: serde_json::Value = serde_json::from_slice(&answer)?;
    let relative = answer["download_url"]
        .as_str()
        .context("download_url in the download answer")?;
    let zip_url = url::Url::parse(&answer_url)?.join(relative)?.to_string();
    let bytes = reqwest::get(&zip_url)
        .await?
        .error_for_status()?
        .bytes()
        .await?;
    if bytes.len() < ZIP_BYTES {
        bail!("the zip from tfmirror is only {} bytes", bytes.len());
    }
    Ok(zip_url)
}

/// [`CLIENTS`] clients, one connection each, downloading `url` at once; the time until the
/// last one has every byte.
async fn download_all(url: &str, size: u64) -> Result<Duration> {
    let started = Instant::now();
    let clients = (0..CLIENTS).map(|_| {
        let url = url.to_owned();
        tokio::spawn(async move {
            let client = reqwest::Client::builder().no_proxy().build()?;
            let response = client.get(&url).send().await?.error_for_status()?;
            let mut body = response.bytes_stream();
            let mut received = 0u64;
            while let Some(chunk) = body.next().await {
                received += chunk?.len() as u64;
            }
            anyhow::Ok(received)
        })
    });
    for received in futures_util::future::join_all(clients).await {
        let received = received??;
        if received != size {
            bail!("{url}: {received} bytes, expected {size}");
        }
    }
    Ok(started.elapsed())
}

/// `VmHWM` of `/proc/<pid>/status`, in bytes.
pub fn peak_rss(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib = status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().strip_suffix("kB"))
        .and_then(|n| n.trim().parse::<u64>().ok())
        .context("VmHWM in /proc/<pid>/status")?;
    Ok(kib * 1024)
}

/// nginx on a free loopback port, serving `root` as static files, stopped on drop.
struct Nginx {
    url: String,
    child: Child,
}

impl Nginx {
    fn start(nginx: &Path, sandbox: &Sandbox, root: &Path) -> Result<Nginx> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let prefix = sandbox.fresh_dir("nginx")?;
        let p = prefix.display();
        // As root, workers would run as `nobody`, who cannot read the 0700 temporary root.
        let user = if unsafe { libc::geteuid() } == 0 {
            "user root;"
        } else {
            ""
        };
        let config = format!(
            "{user}
daemon off;
worker_processes auto;
pid {p}/nginx.pid;
error_log {p}/error.log;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  sendfile on;
  tcp_nopush on;
  client_body_temp_path {p}/client;
  proxy_temp_path {p}/proxy;
  fastcgi_temp_path {p}/fastcgi;
  uwsgi_temp_path {p}/uwsgi;
  scgi_temp_path {p}/scgi;
  default_type application/zip;
  server {{
    listen 127.0.0.1:{port};
    root {};
  }}
}}
",
            root.display()
        );
        let conf = prefix.join("nginx.conf");
        std::fs::write(&conf, config)?;
        let child = Command::new(nginx)
            .arg("-p")
            .arg(&prefix)
            .arg("-e")
            .arg(prefix.join("error.log"))
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .spawn()
            .context("start nginx")?;
        let mut nginx = Nginx {
            url: format!("http://127.0.0.1:{port}"),
            child,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(status) = nginx.child.try_wait()? {
                bail!("nginx exited ({status}); see {p}/error.log");
            }
            if Instant::now() > deadline {
                bail!("nginx did not listen on port {port}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(nginx)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGQUIT: graceful shutdown of the master and its workers.
        // SAFETY: kill(2) has no memory-safety preconditions.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGQUIT) };
        let _ = self.child.wait();
    }
}
