//! `bundle`: the providers-warm set (20 real-sized providers) as a bundle. Reports the
//! bundle's size against the sum of its entries, the time of `bundle create` over a warm
//! cache (the init it runs included), and of `bundle import` into an empty cache. One round:
//! these are sizes and one-off times, not a pair against a baseline.

use std::time::Duration;

use anyhow::Result;

use crate::fixtures::FakeRegistry;
use crate::providers::{main_tf, payload, specs};
use crate::sandbox::{run, Network, Sandbox, Tools};

pub struct Measured {
    pub bundle_bytes: u64,
    pub content_bytes: u64,
    pub entries: usize,
    pub create: Duration,
    pub import: Duration,
}

pub fn measure(tools: &Tools, network: Network) -> Result<Measured> {
    let registry = FakeRegistry::start(specs(&payload(tools)?));
    network.apply(&registry);
    let sandbox = Sandbox::new(tools, &registry)?;
    let cache = sandbox.path().join("cache");
    let main_tf = main_tf();
    let priming = sandbox.workdir(&main_tf, None)?;
    run(&mut sandbox.init_through(&cache, &priming), "priming init")?;
    let lock_file = sandbox.path().join("priming.terraform.lock.hcl");
    std::fs::copy(priming.join(".terraform.lock.hcl"), &lock_file)?;

    let bundle = sandbox.path().join("providers.tfbundle");
    let dir = sandbox.workdir(&main_tf, Some(&lock_file))?;
    let terraform = tools.terraform.to_string_lossy().into_owned();
    let output = bundle.to_string_lossy().into_owned();
    let mut create = sandbox.tfmirror(
        &cache,
        &[
            "bundle",
            "create",
            "-o",
            &output,
            "--",
            &terraform,
            "init",
            "-input=false",
        ],
    );
    let create = run(create.current_dir(&dir), "bundle create")?;
    sandbox.stop(&cache)?;

    let listed = sandbox
        .tfmirror(&cache, &["bundle", "list", "--json", &output])
        .output()?;
    let manifest: serde_json::Value = serde_json::from_slice(&listed.stdout)?;
    let entries = manifest["entries"].as_array().cloned().unwrap_or_default();
    let content_bytes = entries.iter().filter_map(|e| e["size"].as_u64()).sum();

    let empty = sandbox.path().join("imported");
    let import = run(
        &mut sandbox.tfmirror(&empty, &["bundle", "import", &output]),
        "bundle import",
    )?;
    sandbox.stop(&empty)?;
    Ok(Measured {
        bundle_bytes: std::fs::metadata(&bundle)?.len(),
        content_bytes,
        entries: entries.len(),
        create,
        import,
    })
}
