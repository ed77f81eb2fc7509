//! Progress bars for long work, drawn on stderr only when it is a terminal (indicatif hides
//! them otherwise), so scripts and CI logs stay clean.

use indicatif::{ProgressBar, ProgressStyle};

/// A bar for `len` units (0 = unknown yet; set later with `set_length`).
pub fn bar(len: u64, message: &str) -> ProgressBar {
    let pb = ProgressBar::new(len);
    let style = ProgressStyle::with_template(
        "{spinner} {msg} [{bar:30}] {percent:>3}% {elapsed_precise} eta {eta}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ");
    pb.set_style(style);
    pb.set_message(message.to_string());
    pb
}
