//! `modules-warm`: 30 module calls, 20 registry modules with HTTP archives and 10 into one git
//! mono-repo at two refs (4 registry modules that resolve to `git::`, 6 direct `git::`
//! sources), through a warm tfmirror against Terraform fetching from the upstream directly.

use anyhow::Result;

use crate::fixtures::{FakeRegistry, GitRepoSpec, ModuleSpec};
use crate::runner::{alternate, Pair};
use crate::sandbox::{run, Network, Sandbox, Tools};

const ARCHIVE_MODULES: usize = 20;
const REPO: &str = "org/infra.git";
/// Registry modules that resolve to the mono-repo: `(name, subdir, ref)`.
const GIT_REGISTRY: [(&str, &str, &str); 4] = [
    ("vpcold", "modules/vpc", "v1.0.0"),
    ("vpc", "modules/vpc", "v1.1.0"),
    ("dnsold", "modules/dns", "v1.0.0"),
    ("dns", "modules/dns", "v1.1.0"),
];
/// Direct `git::` calls: `(call name, module, ref)`.
const GIT_DIRECT: [(&str, &str, &str); 6] = [
    ("d_vpc_old", "vpc", "v1.0.0"),
    ("d_dns_old", "dns", "v1.0.0"),
    ("d_vpc_new", "vpc", "v1.1.0"),
    ("d_dns_new", "dns", "v1.1.0"),
    ("d_vpc_new_b", "vpc", "v1.1.0"),
    ("d_dns_old_b", "dns", "v1.0.0"),
];

fn specs() -> Vec<ModuleSpec> {
    let archives = (0..ARCHIVE_MODULES)
        .map(|n| ModuleSpec::new("bench", &format!("m{n:02}"), "aws", &["1.0.0"]));
    let git = GIT_REGISTRY.iter().map(|(name, subdir, reference)| {
        ModuleSpec::new("bench", name, "git", &["1.0.0"]).with_git_location(REPO, subdir, reference)
    });
    archives.chain(git).collect()
}

fn main_tf(registry: &FakeRegistry) -> String {
    let mut text = String::new();
    for n in 0..ARCHIVE_MODULES {
        text.push_str(&format!(
            "module \"m{n:02}\" {{\n  source  = \"bench/m{n:02}/aws\"\n  version = \"1.0.0\"\n}}\n"
        ));
    }
    for (name, _, _) in GIT_REGISTRY {
        text.push_str(&format!(
            "module \"r_{name}\" {{\n  source  = \"bench/{name}/git\"\n  version = \"1.0.0\"\n}}\n"
        ));
    }
    let repo = registry.git_url(REPO);
    for (name, module, reference) in GIT_DIRECT {
        text.push_str(&format!(
            "module \"{name}\" {{\n  source = \"git::{repo}//modules/{module}?ref={reference}\"\n}}\n"
        ));
    }
    text
}

/// Each side re-runs `init` in its own working directory, emptied of `.terraform` and the
/// lock file before every run, as a CI job or a developer does in a project's checkout; that
/// is what lets tfmirror fetch the directory's module version lists ahead.
pub fn warm(tools: &Tools, network: Network, runs: usize) -> Result<Pair> {
    let registry = FakeRegistry::start_all(Vec::new(), specs(), vec![GitRepoSpec::new(REPO)]);
    network.apply(&registry);
    let sandbox = Sandbox::new(tools, &registry)?;
    let cache = sandbox.path().join("cache");
    let _server = sandbox.serve(&cache, &[])?;
    let direct = sandbox.direct_cli_config()?;
    let main_tf = main_tf(&registry);
    let through = sandbox.workdir(&main_tf, None)?;
    run(&mut sandbox.init_through(&cache, &through), "priming init")?;
    let without = sandbox.workdir(&main_tf, None)?;

    alternate(
        "modules-warm",
        runs,
        |_| {
            sandbox.reset_workdir(&through)?;
            sandbox.warm_init(&registry, &cache, &through)
        },
        |_| {
            sandbox.reset_workdir(&without)?;
            run(&mut sandbox.init_with(&direct, &without), "direct init")
        },
    )
}
