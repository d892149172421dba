//! Progress display: an indicatif bar on a terminal, nothing (plain log lines elsewhere) when
//! output is redirected.
use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

pub fn is_terminal() -> bool {
    std::io::stderr().is_terminal()
}

/// A bar over `len` units; hidden when stderr is not a terminal.
pub fn bar(len: u64, unit: &str) -> ProgressBar {
    let pb = ProgressBar::new(len);
    if !is_terminal() {
        pb.set_draw_target(ProgressDrawTarget::hidden());
    }
    let tpl = format!("{{spinner}} [{{elapsed_precise}}] {{wide_bar}} {{pos}}/{{len}} {unit} {{msg}} (ETA {{eta}})");
    pb.set_style(ProgressStyle::with_template(&tpl).unwrap_or_else(|_| ProgressStyle::default_bar()));
    pb
}
