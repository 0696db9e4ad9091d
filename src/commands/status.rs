//! `tfmirror status`: whether a server owns the cache, and which.

use std::path::Path;
use std::time::Duration;

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
    let uptime = humantime::format_duration(Duration::from_secs(health.uptime_secs));
    println!("url:       {}", health.address);
    if let Some(public) = &health.public_url {
        println!("public:    {public}");
    }
    println!("pid:       {}", health.pid);
    println!("uptime:    {uptime}");
    println!("version:   {}", health.version);
    println!("cache dir: {}", health.cache_dir.display());
    Ok(0)
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
