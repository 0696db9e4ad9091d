//! Runs a pair of contenders alternately (A B A B ...), so that whatever drifts during a
//! benchmark (page cache, CPU frequency, other load) affects both alike.

use std::time::Duration;

use anyhow::Result;

use crate::stats::{human, median};

/// The timings of one pair, in run order.
pub struct Pair {
    pub tfmirror: Vec<Duration>,
    pub baseline: Vec<Duration>,
}

impl Pair {
    pub fn tfmirror_median(&self) -> Duration {
        median(&self.tfmirror)
    }

    pub fn baseline_median(&self) -> Duration {
        median(&self.baseline)
    }

    /// tfmirror's median over the baseline's: below 1 means tfmirror is faster.
    pub fn ratio(&self) -> f64 {
        self.tfmirror_median().as_secs_f64() / self.baseline_median().as_secs_f64()
    }
}

/// `runs` rounds of `tfmirror(n)` then `baseline(n)`. Each closure does its own untimed setup
/// and returns only the time of what it measures.
pub fn alternate(
    scenario: &str,
    runs: usize,
    mut tfmirror: impl FnMut(usize) -> Result<Duration>,
    mut baseline: impl FnMut(usize) -> Result<Duration>,
) -> Result<Pair> {
    let mut pair = Pair {
        tfmirror: Vec::with_capacity(runs),
        baseline: Vec::with_capacity(runs),
    };
    for n in 0..runs {
        let a = tfmirror(n)?;
        let b = baseline(n)?;
        eprintln!(
            "  {scenario} run {}/{runs}: tfmirror {}, baseline {}",
            n + 1,
            human(a),
            human(b)
        );
        pair.tfmirror.push(a);
        pair.baseline.push(b);
    }
    Ok(pair)
}

/// A contender in [`rounds`]: its name and what it times.
pub type Contender<'a> = (&'static str, &'a mut dyn FnMut(usize) -> Result<Duration>);

/// `runs` rounds of every contender in turn, for more than two; the timings of each, in the
/// contenders' order.
pub fn rounds(
    scenario: &str,
    runs: usize,
    contenders: &mut [Contender<'_>],
) -> Result<Vec<Vec<Duration>>> {
    let mut times = vec![Vec::with_capacity(runs); contenders.len()];
    for n in 0..runs {
        let mut line = format!("  {scenario} run {}/{runs}:", n + 1);
        for ((name, contender), samples) in contenders.iter_mut().zip(&mut times) {
            let elapsed = contender(n)?;
            line.push_str(&format!(" {name} {},", human(elapsed)));
            samples.push(elapsed);
        }
        eprintln!("{}", line.trim_end_matches(','));
    }
    Ok(times)
}
