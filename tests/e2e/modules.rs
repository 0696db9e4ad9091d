//! End to end: the real terraform binary installs registry modules through
//! tfmirror, and their HTTP archives come from the cache after the first time.

use crate::fixtures::{AnswerForm, ArchiveKind, ModuleFault, ModuleSpec};
use crate::harness::{assert_failure, assert_success, installed_ids, World};

fn four_modules() -> Vec<ModuleSpec> {
    vec![
        ModuleSpec::new("acme", "net", "aws", &["1.0.0", "1.1.0"]),
        ModuleSpec::new("acme", "db", "aws", &["2.0.0"])
            .with_answer(AnswerForm::Json200)
            .with_archive(ArchiveKind::Zip)
            .with_absolute_location(),
        ModuleSpec::new("acme", "dns", "aws", &["0.3.0"])
            .with_archive(ArchiveKind::ZipByQuery)
            .with_subdir("modules/sub"),
        ModuleSpec::new("acme", "lb", "aws", &["1.0.0"])
            .with_answer(AnswerForm::Json200)
            .with_subdir("modules/sub"),
    ]
}

/// `(call name, source, version)`
fn root_module(calls: &[(&str, &str, &str)]) -> String {
    let mut text = String::new();
    for (name, source, version) in calls {
        text.push_str(&format!(
            "module \"{name}\" {{\n  source  = \"{source}\"\n  version = \"{version}\"\n}}\n\n"
        ));
    }
    text
}

const FOUR_CALLS: [(&str, &str, &str); 4] = [
    ("net", "acme/net/aws", "1.1.0"),
    ("db", "acme/db/aws", "2.0.0"),
    ("dns", "acme/dns/aws", "0.3.0"),
    ("lb", "acme/lb/aws", "1.0.0"),
];

fn expected_ids() -> Vec<(String, String)> {
    let mut ids = vec![
        ("db".to_owned(), "acme/db/aws 2.0.0 root".to_owned()),
        ("dns".to_owned(), "acme/dns/aws 0.3.0 sub".to_owned()),
        ("lb".to_owned(), "acme/lb/aws 1.0.0 sub".to_owned()),
        ("net".to_owned(), "acme/net/aws 1.1.0 root".to_owned()),
    ];
    ids.sort();
    ids
}

fn stored_archives(world: &World) -> Vec<String> {
    world
        .cache_files()
        .into_iter()
        .filter(|f| f.starts_with("modules/archives/"))
        .collect()
}

#[test]
fn cold_then_warm_then_offline_module_installs() {
    let world = World::with_modules(four_modules());
    let cold = world.workdir_with("cold", &root_module(&FOUR_CALLS));
    assert_success(&world.init(&cold), "cold init");
    assert_eq!(
        installed_ids(&cold),
        expected_ids(),
        "each call got its version and subdir"
    );
    assert_eq!(
        stored_archives(&world).len(),
        4,
        "{:?}",
        world.cache_files()
    );
    assert_eq!(world.registry.module_archive_requests(), 4);

    world.registry.clear_requests();
    let warm = world.workdir_with("warm", &root_module(&FOUR_CALLS));
    assert_success(&world.init(&warm), "warm init");
    assert_eq!(installed_ids(&warm), expected_ids());
    assert_eq!(
        world.registry.module_archive_requests(),
        0,
        "{:?}",
        world.registry.requests()
    );
    assert_eq!(
        world.registry.module_location_requests(),
        0,
        "{:?}",
        world.registry.requests()
    );
    assert_eq!(
        world.registry.count(|r| r.path.starts_with("/archives/")),
        0,
        "HEAD requests are answered from the cache too"
    );

    world.registry.stop();
    let offline = world.workdir_with("offline", &root_module(&FOUR_CALLS));
    assert_success(&world.init(&offline), "offline init");
    assert_eq!(installed_ids(&offline), expected_ids());
}

#[test]
fn a_newly_published_version_is_found_at_once() {
    let world = World::with_modules(four_modules());
    let first = world.workdir_with("first", &root_module(&FOUR_CALLS[..1]));
    assert_success(&world.init(&first), "first init");
    world
        .registry
        .publish_module_version("acme", "net", "aws", "1.2.0");
    let newer = world.workdir_with("newer", &root_module(&[("net", "acme/net/aws", "1.2.0")]));
    assert_success(&world.init(&newer), "init asking for the new version");
    assert_eq!(
        installed_ids(&newer),
        [("net".to_owned(), "acme/net/aws 1.2.0 root".to_owned())]
    );
}

/// The second `init` of a directory (here through `terraform -chdir=`) gets its version lists
/// fetched ahead, all at once, as the run begins: each list reaches the upstream once, from tfmirror rather than from Terraform's
/// request, and a version published in between is still seen.
#[test]
fn a_directory_s_version_lists_are_fetched_ahead_and_stay_current() {
    let world = World::with_modules(four_modules());
    let dir = world.workdir_with("ahead", &root_module(&FOUR_CALLS));
    assert_success(&world.init(&dir), "first init");

    world
        .registry
        .publish_module_version("acme", "net", "aws", "1.2.0");
    let mut calls = FOUR_CALLS;
    calls[0] = ("net", "acme/net/aws", "1.2.0");
    std::fs::write(dir.join("main.tf"), root_module(&calls)).unwrap();
    std::fs::remove_dir_all(dir.join(".terraform")).unwrap();
    world.registry.clear_requests();
    // From the parent directory with `-chdir`: the same directory to the server.
    let terraform = crate::harness::terraform();
    let second = world
        .tfmirror(&[
            "exec",
            "--",
            terraform.to_str().unwrap(),
            "-chdir=ahead",
            "init",
            "-input=false",
            "-no-color",
        ])
        .current_dir(dir.parent().unwrap())
        .output()
        .unwrap();
    assert_success(&second, "second init, with -chdir");

    let lists: Vec<_> = world
        .registry
        .requests()
        .into_iter()
        .filter(|r| r.path.ends_with("/versions"))
        .collect();
    assert_eq!(lists.len(), 4, "one request per list: {lists:?}");
    assert!(
        lists.iter().all(|r| r
            .user_agent
            .as_deref()
            .is_some_and(|agent| agent.starts_with("tfmirror/"))),
        "every list was fetched ahead, none when Terraform asked: {lists:?}"
    );
    let net = installed_ids(&dir)
        .into_iter()
        .find(|(name, _)| name == "net");
    assert_eq!(
        net.map(|(_, id)| id).as_deref(),
        Some("acme/net/aws 1.2.0 root")
    );
}

#[test]
fn root_modules_share_one_stored_archive() {
    let world = World::with_modules(four_modules());
    let calls = [
        ("a", "acme/net/aws", "1.1.0"),
        ("b", "acme/net/aws", "1.1.0"),
    ];
    for name in ["one", "two"] {
        let dir = world.workdir_with(name, &root_module(&calls));
        assert_success(&world.init(&dir), name);
    }
    assert_eq!(
        stored_archives(&world).len(),
        1,
        "{:?}",
        world.cache_files()
    );
    assert_eq!(world.registry.module_archive_requests(), 1);
}

#[test]
fn broken_archives_are_refused_and_not_stored() {
    let world = World::with_modules(vec![
        ModuleSpec::new("acme", "cut", "aws", &["1.0.0"]),
        ModuleSpec::new("acme", "junk", "aws", &["1.0.0"]).with_archive(ArchiveKind::Zip),
        ModuleSpec::new("acme", "slip", "aws", &["1.0.0"]),
        ModuleSpec::new("acme", "climb", "aws", &["1.0.0"])
            .with_subdir("../../../etc")
            .with_absolute_location(),
    ]);
    world
        .registry
        .set_module_fault("acme", "cut", "aws", ModuleFault::TruncatedArchive);
    world
        .registry
        .set_module_fault("acme", "junk", "aws", ModuleFault::InvalidArchive);
    world
        .registry
        .set_module_fault("acme", "slip", "aws", ModuleFault::DotDotEntry);
    let cases = [
        ("cut", "broke off"),
        ("junk", "not a usable archive"),
        ("slip", "outside the module directory"),
        ("climb", "leaves the package"),
    ];
    for (name, reason) in cases {
        let dir = world.workdir_with(
            name,
            &root_module(&[(name, &format!("acme/{name}/aws"), "1.0.0")]),
        );
        let text = assert_failure(&world.init(&dir), name);
        assert!(
            text.contains(reason),
            "{name}: tfmirror says why ({reason:?}):\n{text}"
        );
        assert!(!dir.join("../escape.tf").exists() && !dir.join(".terraform/escape.tf").exists());
    }
    assert_eq!(stored_archives(&world), Vec::<String>::new());
    assert!(
        !world.cache_files().iter().any(|f| f.contains(".tmp-")),
        "{:?}",
        world.cache_files()
    );
}
