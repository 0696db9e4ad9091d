//! The server under abuse: a flood of idle and slow-header connections on
//! loopback neither exhausts its descriptors nor keeps health checks from
//! being answered, and every such connection is closed by the server.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::fixtures::http::get;
use crate::harness::World;

const MAX_CONNECTIONS: usize = 50;
const HEADER_TIMEOUT: Duration = Duration::from_secs(1);
/// What the flood is capped at, below this test's own descriptor limit.
const FLOOD: usize = 5000;

/// Raises this process's soft descriptor limit to the hard one and returns
/// it: the flood's sockets are this test's descriptors too.
fn raise_own_descriptor_limit() -> usize {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read or write the struct passed.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        limit.rlim_cur = limit.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
    }
    limit.rlim_cur as usize
}

/// A connection that sends nothing, or half a request head.
fn flood_socket(addr: SocketAddr, slow_header: bool) -> Option<TcpStream> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    if slow_header {
        let _ = stream.write_all(b"GET /_tfmirror/health HTTP/1.1\r\nHost: x\r\n");
    }
    Some(stream)
}

/// Health answered, and how long it took.
fn timed_health(server_url: &str) -> Duration {
    let started = Instant::now();
    let response = get(&format!("{server_url}/_tfmirror/health"));
    let took = started.elapsed();
    assert_eq!(response.status, 200, "{}", response.text());
    took
}

/// Whether the server has closed this socket (EOF or reset); reads and
/// drops whatever it sent first (a 408, say).
fn closed_by_server(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return false,
            Err(_) => return true,
        }
    }
}

/// How long the server keeps this connection open (at most 10 s).
fn time_to_close(mut stream: TcpStream) -> Duration {
    let started = Instant::now();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buf = [0u8; 1024];
    while let Ok(n) = stream.read(&mut buf) {
        if n == 0 {
            break;
        }
    }
    started.elapsed()
}

/// Waits until every socket is closed by the server, up to `deadline`;
/// returns how many are still open then.
fn wait_all_closed(streams: &mut Vec<TcpStream>, deadline: Instant) -> usize {
    for stream in streams.iter() {
        stream.set_nonblocking(true).unwrap();
    }
    loop {
        streams.retain_mut(|stream| !closed_by_server(stream));
        if streams.is_empty() || Instant::now() >= deadline {
            return streams.len();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn open_descriptors(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|dir| dir.count())
        .unwrap_or(0)
}

#[test]
fn a_flood_of_idle_and_slow_connections_leaves_health_answering() {
    let _turn = crate::file_turn(module_path!());
    let own_limit = raise_own_descriptor_limit();
    let flood = FLOOD.min(own_limit.saturating_sub(200));
    let world = World::with_config(
        Vec::new(),
        &format!("max_connections = {MAX_CONNECTIONS}\nheader_read_timeout = \"1s\""),
    );
    let server = world.serve();
    let addr = server.addr();

    // Before the flood: one idle and one slow-header connection, each
    // within the limit, closed after the header timeout.
    let opened = Instant::now();
    let early: Vec<_> = [false, true]
        .into_iter()
        .map(|slow| {
            let stream = flood_socket(addr, slow).expect("connect");
            std::thread::spawn(move || time_to_close(stream))
        })
        .collect();

    // Health is asked every 100 ms from another thread while the flood
    // is opened and held.
    let flooding = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let checker = {
        let flooding = flooding.clone();
        let url = server.url.clone();
        let pid = server.child.id();
        std::thread::spawn(move || {
            let mut times = Vec::new();
            let mut descriptors = 0;
            while flooding.load(std::sync::atomic::Ordering::SeqCst) {
                descriptors = descriptors.max(open_descriptors(pid));
                times.push(timed_health(&url));
                std::thread::sleep(Duration::from_millis(100));
            }
            (times, descriptors)
        })
    };
    let mut streams = Vec::new();
    let mut slowest_connect = Duration::ZERO;
    for i in 0..flood {
        let started = Instant::now();
        match flood_socket(addr, i % 2 == 1) {
            Some(stream) => streams.push(stream),
            None => break,
        }
        slowest_connect = slowest_connect.max(started.elapsed());
    }
    let opened_flood = streams.len();
    let flood_took = opened.elapsed();
    std::thread::sleep(Duration::from_secs(2));
    flooding.store(false, std::sync::atomic::Ordering::SeqCst);
    let (times, descriptors) = checker.join().unwrap();
    let slowest = times.iter().max().copied().unwrap_or_default();
    eprintln!(
        "flood of {opened_flood} connections (limit {MAX_CONNECTIONS}) opened in {flood_took:?} \
         (slowest connect {slowest_connect:?}): the server had at most {descriptors} descriptors open; \
         {} health checks meanwhile, slowest {slowest:?}",
        times.len()
    );
    assert!(times.len() >= 3, "health was asked during the flood");
    assert!(slowest < Duration::from_secs(1), "health took {slowest:?}");
    assert!(
        descriptors < MAX_CONNECTIONS + 4096 + 100,
        "{descriptors} descriptors open"
    );

    for (kind, waiter) in ["idle", "slow-header"].iter().zip(early) {
        let lived = waiter.join().unwrap();
        eprintln!("the {kind} connection was closed after {lived:?}");
        assert!(
            lived >= HEADER_TIMEOUT - Duration::from_millis(100)
                && lived < HEADER_TIMEOUT + Duration::from_secs(2),
            "the {kind} connection was closed after {lived:?}"
        );
    }

    let deadline = Instant::now() + HEADER_TIMEOUT + Duration::from_secs(5);
    let left = wait_all_closed(&mut streams, deadline);
    assert_eq!(left, 0, "flood connections the server kept open");
    assert!(timed_health(&server.url) < Duration::from_secs(1));
}
