//! What the user sees while a command works through a list (packages to
//! fetch, objects to push): a progress bar on a terminal; elsewhere (CI
//! logs, pipes) a plain line per item, which a log keeps and a bar would
//! garble. Failures are printed either way.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

pub struct Progress {
    bar: Option<ProgressBar>,
}

impl Progress {
    /// `unit` names the items in the bar: "packages", "objects".
    pub fn new(total: u64, unit: &str) -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let template = format!(
                "{{spinner}} [{{bar:30}}] {{pos}}/{{len}} {unit}, {{elapsed}} {{wide_msg}}"
            );
            let style = ProgressStyle::with_template(&template)
                .expect("the template is valid")
                .progress_chars("=> ");
            let bar = ProgressBar::new(total).with_style(style);
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        Progress { bar }
    }

    /// One item is done: `name` goes beside the bar; `line`, what became
    /// of it, is printed when there is no bar, or when the item `failed`.
    pub fn done(&self, name: &str, line: Option<String>, failed: bool) {
        match &self.bar {
            Some(bar) => {
                if let (true, Some(line)) = (failed, line) {
                    bar.println(line);
                }
                bar.set_message(name.to_owned());
                bar.inc(1);
            }
            None => {
                if let Some(line) = line {
                    eprintln!("{line}");
                }
            }
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
