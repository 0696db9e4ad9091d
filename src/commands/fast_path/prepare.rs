//! Asking the cache's server to prepare locked providers in its unpacked
//! tree: `POST <owner url>/_tfmirror/providers/prepare`.

use std::path::PathBuf;

use crate::commands::owner_call::CallError;
use crate::commands::Health;
use crate::protocol::prepare::{
    PrepareAnswer, PrepareItem, PrepareRequest, Prepared, MAX_PREPARE_PROVIDERS,
};
use crate::protocol::Endpoint;

/// Every item prepared for `platform` for the run `run` (whose user's
/// `host` blocks say where what is not cached comes from), answers in the
/// order of `items`, and the tree's root. Requests go in chunks the server
/// accepts, one after another: the server downloads within each
/// concurrently.
pub async fn prepare(
    server: &Health,
    run: &str,
    platform: &str,
    items: &[PrepareItem],
) -> Result<(PathBuf, Vec<Prepared>), CallError> {
    // No overall timeout: a cold cache downloads every locked provider
    // first, which takes as long as the registry needs.
    let mut tree = None;
    let mut prepared = Vec::with_capacity(items.len());
    for chunk in items.chunks(MAX_PREPARE_PROVIDERS) {
        let request = PrepareRequest {
            platform: platform.to_owned(),
            providers: chunk.to_vec(),
            run: Some(run.to_owned()),
        };
        let answer: PrepareAnswer = server
            .post(Endpoint::PrepareProviders, &request, None)
            .await?;
        check_answer(chunk, &answer)?;
        if tree.as_ref().is_some_and(|tree| *tree != answer.tree) {
            return Err(CallError::Answer("two different trees".into()));
        }
        tree = Some(answer.tree);
        prepared.extend(answer.providers);
    }
    let tree = tree.ok_or_else(|| CallError::Answer("nothing was asked".into()))?;
    Ok((tree, prepared))
}

/// One answer per item, in order, and a tree Terraform can use as a path.
fn check_answer(items: &[PrepareItem], answer: &PrepareAnswer) -> Result<(), CallError> {
    if !answer.tree.is_absolute() || answer.tree.to_str().is_none() {
        return Err(CallError::Answer(format!(
            "the tree {} is not an absolute UTF-8 path",
            answer.tree.display()
        )));
    }
    if answer.providers.len() != items.len() {
        return Err(CallError::Answer(format!(
            "{} answers for {} providers",
            answer.providers.len(),
            items.len()
        )));
    }
    for (item, prepared) in items.iter().zip(&answer.providers) {
        if item.address != prepared.address || item.version != prepared.version {
            return Err(CallError::Answer(format!(
                "{} {} answered for {} {}",
                prepared.address, prepared.version, item.address, item.version
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(address: &str) -> PrepareItem {
        PrepareItem {
            address: address.into(),
            version: "1.0.0".into(),
            hashes: vec![],
        }
    }

    #[test]
    fn an_answer_must_follow_the_request() {
        let items = [
            item("registry.terraform.io/a/b"),
            item("registry.terraform.io/c/d"),
        ];
        let answer = |tree: &str, providers: Vec<Prepared>| PrepareAnswer {
            tree: tree.into(),
            providers,
        };
        let both: Vec<Prepared> = items.iter().map(|i| Prepared::not_ready(i, "x")).collect();
        assert!(check_answer(&items, &answer("/cache/providers-unpacked", both.clone())).is_ok());
        assert!(check_answer(&items, &answer("relative", both.clone())).is_err());
        assert!(check_answer(&items, &answer("/t", both[..1].to_vec())).is_err());
        let swapped = vec![both[1].clone(), both[0].clone()];
        assert!(check_answer(&items, &answer("/t", swapped)).is_err());
    }
}
