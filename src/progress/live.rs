//! The terminal side of the lag displays: a block of text redrawn in place, a frame at a time.
//! indicatif draws it (already how the backfill's bars are drawn): it moves the cursor up over
//! the previous frame and clears it, counts the lines a narrow terminal wraps, and draws
//! nothing when stdout is not a terminal. The text itself comes from [`super::lag_frame`].

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Text shown at the bottom of a terminal and replaced in place.
pub struct LiveText {
    bar: ProgressBar,
}

impl LiveText {
    /// On stdout, when stdout is a terminal; `None` otherwise (the caller prints lines).
    pub fn on_stdout() -> Option<LiveText> {
        if !std::io::stdout().is_terminal() {
            return None;
        }
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stdout());
        bar.set_style(ProgressStyle::with_template("{msg}").expect("valid template"));
        Some(LiveText { bar })
    }

    /// Replaces what is shown with `text` (lines separated by `\n`).
    pub fn show(&self, text: &str) {
        self.bar.set_message(text.trim_end_matches('\n').to_owned());
    }

    /// Prints a line above the live text, which stays below it.
    pub fn println(&self, line: &str) {
        self.bar.println(line);
    }

    /// Leaves the last frame on the screen, the cursor below it.
    pub fn finish(self) {
        self.bar.finish();
    }
}
