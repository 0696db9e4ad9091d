//! `tfmirror stop`: stop the cache's server once its requests finish.

use std::path::Path;

pub async fn run(cache_dir: &Path) -> anyhow::Result<i32> {
    let Some(health) = super::running_server(cache_dir).await else {
        println!(
            "no tfmirror server is running for the cache at {}",
            cache_dir.display()
        );
        return Ok(0);
    };
    super::launch::stop(&health).await?;
    println!(
        "stopped the tfmirror server (pid {}, {})",
        health.server.pid, health.server.url
    );
    Ok(0)
}
