//! `tfmirror status`: whether a server owns the cache, and which.

use std::path::Path;
use std::time::Duration;

use crate::human_size::human_bytes;
use crate::protocol::SharedHealth;
use crate::server::state_file;

pub async fn run(cache_dir: &Path) -> anyhow::Result<i32> {
    let Some(health) = super::running_server(cache_dir).await else {
        println!(
            "no tfmirror server is running for the cache at {}",
            cache_dir.display()
        );
        forget_dead_server(cache_dir);
        return Ok(1);
    };
    let server = &health.server;
    let uptime = humantime::format_duration(Duration::from_secs(server.uptime_secs));
    println!("url:       {}", server.url);
    if let Some(public) = &server.public_url {
        println!("public:    {public}");
    }
    println!("pid:       {}", server.pid);
    println!("uptime:    {uptime}");
    println!("version:   {}", server.version);
    println!("cache dir: {}", server.cache_dir.display());
    if let Some(sealed) = &server.offline {
        println!("offline:   yes (sealed: {sealed}); no upstream is contacted");
    }
    if let Some(shared) = &server.shared {
        print!("{}", shared_lines(shared));
    }
    Ok(0)
}

/// The shared tier: where, whether it works, and what it has done.
fn shared_lines(shared: &SharedHealth) -> String {
    let mut state = shared.state.as_str().to_owned();
    if let (Some(error), Some(secs)) = (&shared.last_error, shared.failing_for_secs) {
        state = format!("{state} for {secs}s: {error}");
    }
    let upload = if shared.upload { "" } else { " (read-only)" };
    format!(
        "shared:    {}{upload}\n\
         \x20 state:   {state}\n\
         \x20 reads:   {} hits, {} misses, {} errors; {} read\n\
         \x20 uploads: {} ({} written)\n",
        shared.url,
        shared.hits,
        shared.misses,
        shared.errors,
        human_bytes(shared.bytes_read),
        shared.uploads,
        human_bytes(shared.bytes_written),
    )
}

/// A `server.json` whose process is gone would only make the next client
/// wait for a health check that cannot answer.
fn forget_dead_server(cache_dir: &Path) {
    if let Some(info) = state_file::read(cache_dir) {
        if !super::launch::process_exists(info.pid) {
            state_file::remove_if_pid(cache_dir, info.pid);
        }
    }
}
