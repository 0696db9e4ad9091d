//! The tier against a real store: a directory through `file://`, and an
//! S3 endpoint on a closed loopback port for a bucket that fails.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use object_store::aws::AmazonS3Builder;
use object_store::path::Path;
use sha2::{Digest, Sha256};

use super::upload::PART_SIZE;
use super::*;
use crate::config::SharedConfig;
use crate::protocol::SharedState;
use crate::store::BlobWriter;

const RETRY_AFTER: Duration = Duration::from_millis(300);

fn file_tier(dir: &std::path::Path, upload: bool) -> SharedTier {
    let config = SharedConfig {
        url: url::Url::from_directory_path(dir.join("bucket/team")).unwrap(),
        endpoint: None,
        region: None,
        allow_http: false,
        timeout: Duration::from_secs(5),
        upload,
    };
    SharedTier::from_config(&config, RETRY_AFTER).unwrap()
}

/// A bucket that refuses every connection: S3 on a loopback port nothing
/// listens on, with credentials given so no metadata service is asked.
fn refusing_tier() -> SharedTier {
    crate::crypto_provider::install();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let store = AmazonS3Builder::new()
        .with_endpoint(format!("http://127.0.0.1:{port}"))
        .with_allow_http(true)
        .with_region("garage")
        .with_bucket_name("b")
        .with_access_key_id("GKtest")
        .with_secret_access_key("secret")
        .with_retry(object_store::RetryConfig {
            max_retries: 0,
            ..Default::default()
        })
        .build()
        .unwrap();
    SharedTier::with_store(
        Arc::new(store),
        Path::from("p"),
        "s3://b/p".into(),
        Duration::from_secs(2),
        true,
        RETRY_AFTER,
    )
}

fn key(name: &str) -> ObjectKey {
    ObjectKey::artifact_at(&format!("providers/h/ns/t/{name}")).unwrap()
}

fn write_file(dir: &std::path::Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

async fn fetch(tier: &SharedTier, key: &ObjectKey, target: &std::path::Path, cap: u64) -> Fetched {
    let mut writer = BlobWriter::create(target).unwrap();
    let fetched = tier.fetch_into(key, &mut writer, cap).await;
    if let Fetched::Got(_) = fetched {
        writer.commit().await.unwrap();
    }
    fetched
}

#[tokio::test]
async fn an_uploaded_file_is_fetched_whole_under_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let tier = file_tier(dir.path(), true);
    let bytes = b"a provider zip".to_vec();
    let source = write_file(dir.path(), "source.zip", &bytes);
    let k = key("a.zip");
    assert!(!tier.exists(&k).await.unwrap());
    assert_eq!(
        tier.upload_file_now(&k, &source).await.unwrap(),
        bytes.len() as u64
    );
    assert!(tier.exists(&k).await.unwrap());
    let stored = dir.path().join("bucket/team/v1/providers/h/ns/t/a.zip");
    assert_eq!(
        std::fs::read(&stored).unwrap(),
        bytes,
        "the key is the path below the prefix"
    );

    let target = dir.path().join("cache/a.zip");
    let Fetched::Got(written) = fetch(&tier, &k, &target, 1 << 20).await else {
        panic!("a hit")
    };
    assert_eq!(written.size, bytes.len() as u64);
    assert_eq!(written.sha256, hex::encode(Sha256::digest(&bytes)));
    assert_eq!(std::fs::read(&target).unwrap(), bytes);
    let health = tier.health();
    assert_eq!(health.state, SharedState::Ok);
    assert_eq!((health.hits, health.uploads), (1, 1));
    assert_eq!(health.bytes_read, bytes.len() as u64);
}

#[tokio::test]
async fn a_file_over_one_part_goes_up_in_parts_and_comes_back_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let tier = file_tier(dir.path(), true);
    let bytes: Vec<u8> = (0..PART_SIZE * 2 + 12345)
        .map(|i| (i % 251) as u8)
        .collect();
    let source = write_file(dir.path(), "big.zip", &bytes);
    let k = key("big.zip");
    tier.upload_file_now(&k, &source).await.unwrap();
    let target = dir.path().join("cache/big.zip");
    let fetched = fetch(&tier, &k, &target, u64::MAX).await;
    assert!(matches!(fetched, Fetched::Got(w) if w.size == bytes.len() as u64));
    assert!(std::fs::read(&target).unwrap() == bytes);
}

#[tokio::test]
async fn a_missing_object_is_a_miss_and_one_over_the_cap_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let tier = file_tier(dir.path(), true);
    let target = dir.path().join("cache/x.zip");
    assert_eq!(
        fetch(&tier, &key("x.zip"), &target, 100).await,
        Fetched::Missing
    );
    assert_eq!(tier.health().misses, 1);

    let source = write_file(dir.path(), "s", &[7u8; 1000]);
    tier.upload_file_now(&key("x.zip"), &source).await.unwrap();
    assert_eq!(
        fetch(&tier, &key("x.zip"), &target, 999).await,
        Fetched::Failed
    );
    assert_eq!(
        std::fs::read_dir(target.parent().unwrap()).unwrap().count(),
        0
    );
    assert_eq!(
        tier.health().state,
        SharedState::Ok,
        "a large object is no failure of the bucket"
    );
    assert!(tier.get_bytes(&key("x.zip"), 999).await.is_none());
    assert_eq!(
        tier.get_bytes(&key("x.zip"), 1000).await.unwrap().len(),
        1000
    );
}

#[tokio::test]
async fn documents_go_up_and_come_back_in_the_background() {
    let dir = tempfile::tempdir().unwrap();
    let tier = file_tier(dir.path(), true);
    let k = ObjectKey::document("versions https://r.example/v1/providers/ns/t").unwrap();
    tier.upload_bytes(k.clone(), bytes::Bytes::from_static(b"{\"versions\":[]}"));
    let deadline = Instant::now() + Duration::from_secs(5);
    let body = loop {
        if let Some(body) = tier.get_bytes(&k, 1 << 20).await {
            break body;
        }
        assert!(Instant::now() < deadline, "the upload never landed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(&body[..], b"{\"versions\":[]}");
}

#[tokio::test]
async fn a_read_only_tier_uploads_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let tier = file_tier(dir.path(), false);
    let source = write_file(dir.path(), "s", b"x");
    let err = tier
        .upload_file_now(&key("r.zip"), &source)
        .await
        .unwrap_err();
    assert!(matches!(err, SharedError::UploadDisabled), "{err}");
    tier.upload_file(key("r.zip"), source);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!tier.exists(&key("r.zip")).await.unwrap());
}

/// Log lines written while a test runs, on its thread.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_failing_bucket_warns_once_misses_at_once_then_probes() {
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let dir = tempfile::tempdir().unwrap();
    let tier = refusing_tier();
    let target = dir.path().join("cache/f.zip");

    assert_eq!(
        fetch(&tier, &key("f.zip"), &target, 100).await,
        Fetched::Failed
    );
    let health = tier.health();
    assert_eq!(health.state, SharedState::Failing);
    assert!(health.last_error.is_some());
    // While failing, the bucket is not asked: the answer is at once.
    let started = Instant::now();
    for _ in 0..5 {
        assert_eq!(
            fetch(&tier, &key("f.zip"), &target, 100).await,
            Fetched::Failed
        );
        assert!(tier.get_bytes(&key("f.zip"), 100).await.is_none());
        assert!(matches!(
            tier.exists(&key("f.zip")).await,
            Err(SharedError::Skipped(_))
        ));
    }
    assert!(
        started.elapsed() < Duration::from_millis(200),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        tier.health().errors,
        1,
        "only the first request reached the bucket"
    );
    // After the period, one probe asks again, and fails again.
    tokio::time::sleep(RETRY_AFTER).await;
    assert_eq!(
        fetch(&tier, &key("f.zip"), &target, 100).await,
        Fetched::Failed
    );
    assert_eq!(tier.health().errors, 2);
    assert_eq!(
        std::fs::read_dir(target.parent().unwrap()).unwrap().count(),
        0
    );

    let text = logs.text();
    let warnings: Vec<&str> = text.lines().filter(|l| l.contains("WARN")).collect();
    assert_eq!(warnings.len(), 1, "{text}");
    assert!(
        warnings[0].contains("shared tier s3://b/p unavailable")
            && warnings[0].contains("using the upstream"),
        "{text}"
    );
}

#[test]
fn only_verified_immutable_artifacts_are_shared() {
    for shared in [
        "providers/h/ns/t/terraform-provider-t_1.0.0_linux_amd64.zip",
        "provider-checksums/h/ns/t/1.0.0/SHA256SUMS.sig",
        "modules/archives/abc.tar.gz",
    ] {
        assert!(is_shared(shared), "{shared}");
    }
    for local in [
        "providers-unpacked/h/ns/t/1.0.0/linux_amd64",
        "git-archives/h/org/r.git/0123abcd.tar.gz",
        "git/h/org/r.git",
        "git-snapshots/run/r.git",
        "documents/ab/cd",
        "index/db",
        "server.json",
    ] {
        assert!(!is_shared(local), "{local}");
    }
}
