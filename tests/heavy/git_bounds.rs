//! `git-upload-pack` under a burst of large requests: bodies are streamed
//! to git, not held in memory, and no more git processes run at once than
//! `git_max_processes` allows.

use std::io::{BufReader, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::fixtures::http::{get, read_response};
use crate::fixtures::GitRepoSpec;
use crate::harness::World;

const REPO: &str = "org/infra.git";

/// These tests count processes and time them; the 12 large POSTs of one
/// would starve the 1 s budget of another, so they run one at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
const MAX_PROCESSES: usize = 3;
const CLIENTS: usize = 12;
/// Each request's size: 12 of them are 240 MB together.
const BODY: usize = 20 << 20;

/// A protocol v0 fetch that wants `tip` and then claims 20 MB of `have`
/// lines git does not know: valid pkt-lines that git reads to the end.
fn fetch_request(tip: &str) -> Arc<Vec<u8>> {
    let mut body = format!("0032want {tip}\n0000").into_bytes();
    let mut n = 0u64;
    while body.len() < BODY {
        body.extend_from_slice(format!("0032have {n:040x}\n").as_bytes());
        n += 1;
    }
    body.extend_from_slice(b"0009done\n");
    Arc::new(body)
}

/// The first ref's object id in a v0 advertisement.
fn advertised_tip(advertisement: &[u8]) -> String {
    let text = String::from_utf8_lossy(advertisement);
    let after_service = text
        .split_once("0000")
        .expect("the # service= line and its flush")
        .1;
    after_service[4..44].to_owned()
}

/// Posts `body` to `path` on the server; returns the status and the answer.
fn post(addr: std::net::SocketAddr, path: &str, body: &[u8]) -> (u16, Vec<u8>) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(120)))
        .unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Content-Type: application/x-git-upload-pack-request\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    // git answers once it has read everything; a write error means the
    // server gave up on the request, which the status then shows.
    let _ = stream.write_all(body);
    let response = read_response(&mut BufReader::new(stream), false);
    (response.status, response.body)
}

/// A `/proc/<pid>/status` field in kB.
fn status_kb(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("{field} in /proc/{pid}/status"))
}

/// The parent pid in a `/proc/<pid>/stat` line (after the command name,
/// which may itself hold spaces and parentheses).
fn parent_of(stat: &str) -> Option<u32> {
    let after_name = stat.rsplit_once(')')?.1;
    after_name.split_whitespace().nth(1)?.parse().ok()
}

/// `git upload-pack` processes whose parent is `pid`.
fn upload_packs(pid: u32) -> usize {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    entries
        .flatten()
        .filter(|entry| {
            let dir = entry.path();
            let stat = std::fs::read_to_string(dir.join("stat")).unwrap_or_default();
            let cmdline = std::fs::read(dir.join("cmdline")).unwrap_or_default();
            parent_of(&stat) == Some(pid)
                && String::from_utf8_lossy(&cmdline).contains("upload-pack")
        })
        .count()
}

#[test]
fn large_fetch_requests_stream_to_a_bounded_number_of_git_processes() {
    let _turn = crate::file_turn(module_path!());
    let _serial = one_at_a_time();
    let world = World::with_git(
        Vec::new(),
        vec![GitRepoSpec::new(REPO)],
        &format!("git_max_processes = {MAX_PROCESSES}"),
    );
    let server = world.serve();
    let pid = server.child.id();
    let (repo, tip) = mirrored(&world, &server);
    let body = fetch_request(&tip);
    let baseline_kb = status_kb(pid, "VmRSS:");

    let running = Arc::new(AtomicBool::new(true));
    let most = Arc::new(AtomicUsize::new(0));
    let watcher = {
        let (running, most) = (running.clone(), most.clone());
        std::thread::spawn(move || {
            while running.load(Ordering::SeqCst) {
                most.fetch_max(upload_packs(pid), Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };
    let started = Instant::now();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (body, addr) = (body.clone(), server.addr());
            let path = format!("{repo}/git-upload-pack");
            std::thread::spawn(move || post(addr, &path, &body))
        })
        .collect();
    for client in clients {
        let (status, answer) = client.join().unwrap();
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
        assert!(
            answer.windows(4).any(|w| w == b"PACK"),
            "a pack comes back: {} bytes",
            answer.len()
        );
    }
    let took = started.elapsed();
    running.store(false, Ordering::SeqCst);
    watcher.join().unwrap();

    let peak_kb = status_kb(pid, "VmHWM:");
    let most = most.load(Ordering::SeqCst);
    let sent_mb = (CLIENTS * BODY) >> 20;
    let grew_mb = peak_kb.saturating_sub(baseline_kb) / 1024;
    eprintln!(
        "{CLIENTS} fetches of {} MB each ({sent_mb} MB) in {took:?}: server RSS {} MB before, \
         peak {} MB (+{grew_mb} MB); at most {most} git upload-pack at once (limit {MAX_PROCESSES})",
        BODY >> 20,
        baseline_kb / 1024,
        peak_kb / 1024,
    );
    assert!(most >= 1, "git upload-pack was seen running");
    assert!(most <= MAX_PROCESSES, "{most} git processes at once");
    assert!(
        grew_mb < sent_mb as u64 / 8,
        "RSS grew by {grew_mb} MB for {sent_mb} MB of requests"
    );
}

/// The mirrored repository's smart HTTP path on the server and its tip.
fn mirrored(world: &World, server: &crate::harness::ServeProcess) -> (String, String) {
    let repo = format!(
        "/{}/git/http/{}/git/{REPO}",
        server.secret,
        world.registry.addr()
    );
    let refs = get(&format!(
        "{}{repo}/info/refs?service=git-upload-pack",
        server.address
    ));
    assert_eq!(refs.status, 200, "{}", refs.text());
    let tip = advertised_tip(&refs.body);
    (repo, tip)
}

/// A gzipped request is gunzipped on its way to git; one that declares
/// more than the cap is refused before git starts.
#[test]
fn gzipped_requests_are_streamed_and_oversized_ones_refused() {
    let _turn = crate::file_turn(module_path!());
    let _serial = one_at_a_time();
    let world = World::with_git(Vec::new(), vec![GitRepoSpec::new(REPO)], "");
    let server = world.serve();
    let (repo, tip) = mirrored(&world, &server);
    let path = format!("{repo}/git-upload-pack");
    let addr = server.addr();
    let plain = fetch_request(&tip);
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(&plain).unwrap();
    let gzipped = encoder.finish().unwrap();
    let mut stream = TcpStream::connect(server.addr()).unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Encoding: gzip\r\n\
         Content-Length: {}\r\n\r\n",
        gzipped.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(&gzipped).unwrap();
    let response = read_response(&mut BufReader::new(stream), false);
    assert_eq!(response.status, 200, "{}", response.text());
    assert!(response.body.windows(4).any(|w| w == b"PACK"));

    let mut stream = TcpStream::connect(server.addr()).unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        100u64 << 20
    );
    stream.write_all(head.as_bytes()).unwrap();
    let response = read_response(&mut BufReader::new(stream), false);
    assert_eq!(response.status, 413, "{}", response.text());
}

/// A client that sends half a request and stalls: git waits on its stdin
/// until `git_timeout`, then is killed and its slot given back.
#[test]
fn a_stalled_request_is_killed_after_the_git_timeout() {
    let _turn = crate::file_turn(module_path!());
    let _serial = one_at_a_time();
    let world = World::with_git(
        Vec::new(),
        vec![GitRepoSpec::new(REPO)],
        "git_timeout = \"2s\"\ngit_max_processes = 1",
    );
    let server = world.serve();
    let pid = server.child.id();
    let (repo, tip) = mirrored(&world, &server);
    let path = format!("{repo}/git-upload-pack");
    let addr = server.addr();
    let mut stalled = TcpStream::connect(server.addr()).unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: 1000000\r\n\r\n0032want {tip}\n"
    );
    stalled.write_all(head.as_bytes()).unwrap();
    let started = Instant::now();
    while upload_packs(pid) == 0 && started.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(upload_packs(pid), 1, "git started for the stalled request");
    while upload_packs(pid) > 0 && started.elapsed() < Duration::from_secs(6) {
        std::thread::sleep(Duration::from_millis(10));
    }
    let lived = started.elapsed();
    eprintln!("the stalled git upload-pack was gone after {lived:?}");
    assert!(
        lived < Duration::from_secs(4),
        "git still running after {lived:?}"
    );
    // Its slot is free again: the only one there is.
    let (status, answer) = post(server.addr(), &path, &fetch_request(&tip));
    assert_eq!(status, 200);
    assert!(
        answer.windows(4).any(|w| w == b"PACK"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
}
