//! What each `exec` run was served, by cache key: its closure, which
//! `bundle create` asks for once the run is over. Handlers name what they
//! serve on the response ([`crate::response::touched`]); the metering
//! records it here for the response's run.
//!
//! Bounded: a run may collect [`MAX_CLOSURE_ITEMS`]; past that its
//! closure is dropped and asking for it is an error, not a partial set. An
//! ended run's closure is kept among the last [`KEPT_ENDED`] ended ones,
//! long enough for the command that ran it to ask.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Mutex;

use crate::protocol::closure::{Closure, ClosureItem, ClosureTooLarge, MAX_CLOSURE_ITEMS};

/// Ended runs whose closures are kept.
const KEPT_ENDED: usize = 16;

#[derive(Default)]
pub struct Closures(Mutex<State>);

#[derive(Default)]
struct State {
    live: HashMap<String, RunClosure>,
    ended: VecDeque<(String, RunClosure)>,
}

#[derive(Debug, Clone)]
enum RunClosure {
    Items(BTreeSet<ClosureItem>),
    TooLarge,
}

impl Default for RunClosure {
    fn default() -> Self {
        RunClosure::Items(BTreeSet::new())
    }
}

impl Closures {
    /// `run` was served `items`.
    pub fn add(&self, run: &str, items: &[ClosureItem]) {
        let mut state = self.0.lock().expect("closures lock");
        let closure = state.live.entry(run.to_owned()).or_default();
        if let RunClosure::Items(set) = closure {
            set.extend(items.iter().cloned());
            if set.len() > MAX_CLOSURE_ITEMS {
                tracing::warn!("run {run}: {ClosureTooLarge}");
                *closure = RunClosure::TooLarge;
            }
        }
    }

    /// `run` is over: its closure joins the last ended ones.
    pub fn end(&self, run: &str) {
        let mut state = self.0.lock().expect("closures lock");
        let closure = state.live.remove(run).unwrap_or_default();
        state.ended.retain(|(id, _)| id != run);
        state.ended.push_back((run.to_owned(), closure));
        while state.ended.len() > KEPT_ENDED {
            state.ended.pop_front();
        }
    }

    /// What `run` was served so far, sorted; empty for a run never seen.
    pub fn get(&self, run: &str) -> Result<Closure, ClosureTooLarge> {
        let state = self.0.lock().expect("closures lock");
        let closure = state.live.get(run).or_else(|| {
            state
                .ended
                .iter()
                .find(|(id, _)| id == run)
                .map(|(_, closure)| closure)
        });
        match closure {
            None => Ok(Closure::default()),
            Some(RunClosure::Items(items)) => Ok(Closure {
                items: items.iter().cloned().collect(),
            }),
            Some(RunClosure::TooLarge) => Err(ClosureTooLarge),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(key: &str) -> ClosureItem {
        ClosureItem::Document(key.to_owned())
    }

    #[test]
    fn a_run_collects_each_item_once_sorted_and_keeps_it_after_it_ends() {
        let closures = Closures::default();
        closures.add("r1", &[doc("b"), doc("a")]);
        closures.add("r1", &[doc("a")]);
        closures.add("r2", &[doc("c")]);
        closures.end("r1");
        assert_eq!(closures.get("r1").unwrap().items, [doc("a"), doc("b")]);
        assert_eq!(closures.get("r2").unwrap().items, [doc("c")]);
        assert!(closures.get("other").unwrap().items.is_empty());
    }

    #[test]
    fn only_the_last_ended_runs_are_kept() {
        let closures = Closures::default();
        for n in 0..=KEPT_ENDED {
            let run = format!("r{n}");
            closures.add(&run, &[doc("a")]);
            closures.end(&run);
        }
        assert!(closures.get("r0").unwrap().items.is_empty());
        assert_eq!(
            closures.get(&format!("r{KEPT_ENDED}")).unwrap().items.len(),
            1
        );
    }

    #[test]
    fn a_run_over_the_cap_has_no_closure() {
        let closures = Closures::default();
        let items: Vec<ClosureItem> = (0..=MAX_CLOSURE_ITEMS)
            .map(|n| doc(&n.to_string()))
            .collect();
        closures.add("big", &items);
        assert_eq!(closures.get("big"), Err(ClosureTooLarge));
        closures.add("big", &[doc("x")]);
        assert_eq!(closures.get("big"), Err(ClosureTooLarge));
    }
}
