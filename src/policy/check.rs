//! The server's side of `[policy]`: each handler asks here, with one call,
//! before it looks at the cache or the upstream, so a tightened policy
//! holds for cached artifacts too (nothing is deleted; it is just not
//! served). Each call judges by the policy in effect at that moment (see
//! [`LivePolicy`]): an edited `[policy]` holds from the next request on.
//!
//! [`enforce`] is the one place a request is refused by the policy: it
//! logs the refusal as one WARN line, inside the request's handler (so
//! `exec` reports it with its run), and it is where an audit record of a
//! refusal belongs.

use hyper::ext::ReasonPhrase;
use hyper::StatusCode;
use serde_json::Value;

use super::patterns::Kind;
use super::{file_text, Artifact, LivePolicy, Refusal};
use crate::response::{self, Response};
use crate::store::{FetchError, Served};

/// The status of a refusal. Terraform shows a registry's answer only as
/// its status line for any status but 401/403 (a credentials message) and
/// 404 (not found), and retries 429 and 5xx; a 451 is shown at once, with
/// the reason phrase the server sent, which is the refusal's message.
pub const REFUSED: StatusCode = StatusCode::UNAVAILABLE_FOR_LEGAL_REASONS;

/// Whether the policy in effect lets `artifact` through; a refusal is
/// logged here, once, as a warning.
pub fn enforce(live: &LivePolicy, artifact: Artifact) -> Result<(), Refusal> {
    let Some(policy) = live.current() else {
        return Ok(());
    };
    policy.judge(&artifact).inspect_err(|refusal| {
        tracing::warn!("{refusal}");
        if let Some(audit) = live.audit() {
            audit.write(audit_record(refusal));
        }
    })
}

/// A refusal's line in the audit log, for the request being served (see
/// `audit::current_requester`): what was asked for, named as Terraform
/// names it, and the rule.
fn audit_record(refusal: &Refusal) -> crate::audit::Record {
    use crate::audit::{current_requester, Kind, Record};
    let (kind, name) = match &refusal.artifact {
        Artifact::Provider { version: None, .. } | Artifact::Module { version: None, .. } => {
            (Kind::VersionList, refusal.artifact.to_string())
        }
        Artifact::Provider { .. } => (Kind::ProviderPackage, refusal.artifact.to_string()),
        Artifact::Module { .. } => (Kind::DownloadAnswer, refusal.artifact.to_string()),
        // Named by the URL alone, as other git and archive lines are.
        Artifact::Git(url) => (Kind::GitFetch, super::shown(url)),
        Artifact::Archive(url) => (Kind::ModuleArchive, super::shown(url)),
    };
    let rule = format!("{}{}", refusal.rule, super::file_text(&refusal.file));
    Record::refused(&current_requester(), kind, name, rule)
}

/// [`enforce`] as a handler's answer: `None` when allowed, else the 451
/// the client is given.
pub fn refused(live: &LivePolicy, artifact: Artifact) -> Option<Response> {
    enforce(live, artifact).err().map(|r| response(&r))
}

/// Whether `artifact` is allowed, without a word: for work no client asked
/// for (fetching lists ahead of a run), which is skipped, not refused.
pub fn allows(live: &LivePolicy, artifact: &Artifact) -> bool {
    live.current()
        .is_none_or(|policy| policy.judge(artifact).is_ok())
}

/// The answer to a refused request: 451, with the message as the body and
/// as the reason phrase, which is what Terraform prints.
pub fn response(refusal: &Refusal) -> Response {
    let message = refusal.to_string();
    let mut answer = response::error(REFUSED, &message);
    if let Ok(reason) = ReasonPhrase::try_from(reason_phrase(&message)) {
        answer.extensions_mut().insert(reason);
    }
    answer
}

/// A reason phrase may hold only tabs, spaces and visible characters; a
/// path with anything else gets `?` in its place.
fn reason_phrase(message: &str) -> Vec<u8> {
    message
        .chars()
        .map(|c| {
            if c == ' ' || c.is_ascii_graphic() {
                c as u8
            } else {
                b'?'
            }
        })
        .collect()
}

/// A provider's version list without the versions a deny entry covers.
/// Terraform then says only that no release matches its constraint (it
/// does not print a registry's `warnings`, tried with 1.11), so the one
/// WARN line, which `exec` repeats, says which rule left which out.
pub fn provider_versions(
    live: &LivePolicy,
    address: &str,
    served: Result<Served, FetchError>,
) -> Result<Served, FetchError> {
    filter_list(live, Kind::Provider, address, served, |list| {
        list.get_mut("versions")
            .and_then(Value::as_array_mut)
            .into_iter()
            .collect()
    })
}

/// A module's version list without the versions a deny entry covers.
pub fn module_versions(
    live: &LivePolicy,
    address: &str,
    served: Result<Served, FetchError>,
) -> Result<Served, FetchError> {
    filter_list(live, Kind::Module, address, served, |list| {
        list.get_mut("modules")
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
            .filter_map(|module| module.get_mut("versions").and_then(Value::as_array_mut))
            .collect()
    })
}

/// Leaves out of a network mirror's `index.json` versions the denied ones.
pub fn mirror_versions<V>(
    live: &LivePolicy,
    address: &str,
    versions: &mut std::collections::BTreeMap<String, V>,
) {
    let Some(policy) = live.current() else {
        return;
    };
    let mut dropped = Vec::new();
    versions.retain(|version, _| {
        let rule = policy.denied_version(Kind::Provider, address, version);
        if let Some(rule) = &rule {
            dropped.push((version.clone(), rule.to_string()));
        }
        rule.is_none()
    });
    if let Some(text) = dropped_text(address, &dropped, &policy.file) {
        tracing::warn!("{text}");
    }
}

/// Takes out of a version list's arrays (which `arrays` finds in the
/// parsed body) every `{"version": ...}` a deny entry covers. A body that
/// does not parse is served as it is: the handlers check its shape.
fn filter_list(
    live: &LivePolicy,
    kind: Kind,
    address: &str,
    served: Result<Served, FetchError>,
    arrays: impl Fn(&mut Value) -> Vec<&mut Vec<Value>>,
) -> Result<Served, FetchError> {
    let Some(policy) = live.current() else {
        return served;
    };
    let mut served = served?;
    let Ok(mut list) = serde_json::from_str::<Value>(served.doc.body.as_str()) else {
        return Ok(served);
    };
    let mut dropped = Vec::new();
    for array in arrays(&mut list) {
        array.retain(|entry| {
            let version = entry.get("version").and_then(Value::as_str).unwrap_or("");
            let rule = policy.denied_version(kind, address, version);
            if let Some(rule) = &rule {
                dropped.push((version.to_owned(), rule.to_string()));
            }
            rule.is_none()
        });
    }
    let Some(text) = dropped_text(address, &dropped, &policy.file) else {
        return Ok(served);
    };
    tracing::warn!("{text}");
    served.doc.body = list.to_string().into();
    Ok(served)
}

/// One line for the versions left out of a list: how many, the first
/// few, and the rule (the first one's, which is usually all of them).
fn dropped_text(
    address: &str,
    dropped: &[(String, String)],
    file: &Option<std::path::PathBuf>,
) -> Option<String> {
    const SHOWN: usize = 5;
    let (_, rule) = dropped.first()?;
    let mut versions: Vec<&str> = dropped
        .iter()
        .take(SHOWN)
        .map(|(v, _)| v.as_str())
        .collect();
    if dropped.len() > SHOWN {
        versions.push("...");
    }
    Some(format!(
        "{} version(s) of {address} left out of its version list ({}): {rule}{}",
        dropped.len(),
        versions.join(", "),
        file_text(file)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::store::{Document, Provenance};

    fn live(policy: &str) -> LivePolicy {
        let config = Config::parse(&format!("[policy]\n{policy}")).unwrap();
        LivePolicy::fixed(config.policy)
    }

    fn served(body: &str) -> Result<Served, FetchError> {
        Ok(Served {
            doc: Document::public(0, body.to_owned()),
            provenance: Provenance::Fresh,
        })
    }

    fn body(result: Result<Served, FetchError>) -> Value {
        serde_json::from_str(result.unwrap().doc.body.as_str()).unwrap()
    }

    #[test]
    fn denied_versions_leave_version_lists() {
        let policy = live(r#"deny_providers = ["hashicorp/aws 4.*"]"#);
        let aws = "registry.terraform.io/hashicorp/aws";
        let list = r#"{"versions":[{"version":"4.1.0"},{"version":"5.0.0"},{"version":"4.2.0"}]}"#;
        let filtered = body(provider_versions(&policy, aws, served(list)));
        assert_eq!(
            filtered,
            serde_json::json!({"versions": [{"version": "5.0.0"}]})
        );
        let dropped = [
            ("4.1.0".to_owned(), "r".to_owned()),
            ("4.2.0".to_owned(), "r".to_owned()),
        ];
        assert_eq!(
            dropped_text(aws, &dropped, &None).unwrap(),
            "2 version(s) of registry.terraform.io/hashicorp/aws left out of its version list \
             (4.1.0, 4.2.0): r"
        );
        let other = "registry.terraform.io/hashicorp/google";
        let untouched = provider_versions(&policy, other, served(list)).unwrap();
        assert_eq!(untouched.doc.body.as_str(), list);

        let policy = live(r#"deny_modules = ["acme/vpc/aws < 2"]"#);
        let modules = r#"{"modules":[{"versions":[{"version":"1.0.0"},{"version":"2.0.0"}]}]}"#;
        let filtered = body(module_versions(
            &policy,
            "registry.terraform.io/acme/vpc/aws",
            served(modules),
        ));
        assert_eq!(
            filtered,
            serde_json::json!({"modules": [{"versions": [{"version": "2.0.0"}]}]})
        );
    }

    #[test]
    fn without_a_policy_nothing_is_touched_or_refused() {
        let policy = LivePolicy::fixed(None);
        let list = r#"{"versions":[{"version":"4.1.0"}]}"#;
        let same = provider_versions(&policy, "registry.terraform.io/a/b", served(list)).unwrap();
        assert_eq!(same.doc.body.as_str(), list);
        assert!(refused(
            &policy,
            Artifact::provider("registry.terraform.io/a/b", None)
        )
        .is_none());
    }

    #[test]
    fn a_refusal_is_a_451_whose_reason_phrase_is_the_message() {
        let policy = live(r#"providers = ["hashicorp/*"]"#);
        let answer = refused(
            &policy,
            Artifact::provider("registry.terraform.io/acme/x", None),
        )
        .expect("refused");
        assert_eq!(answer.status(), REFUSED);
        let reason = answer
            .extensions()
            .get::<ReasonPhrase>()
            .expect("a reason phrase");
        assert_eq!(
            reason.as_bytes(),
            b"registry.terraform.io/acme/x is not allowed by [policy] providers"
        );
        assert_eq!(reason_phrase("a\u{e9}\tb"), b"a??b");
    }
}
