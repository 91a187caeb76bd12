//! An error and its causes on one line, each cause once.
//!
//! anyhow's `{:#}` joins every link's message with ": ". A link that also writes its cause
//! into its own message (as ours did with `{source}`, and as some crates' errors do) would
//! then name the cause twice. [`Chain`] prints a link only when the line so far does not
//! already contain its text, so that "committing a chunk: connection reset: connection reset"
//! reads "committing a chunk: connection reset". The other way round matters as much:
//! `tokio_postgres::Error` (0.7.18) displays only "db error" and returns the server's message
//! as its source, so `{e}` alone loses it; print such errors through [`Chain`].
//!
//! The rule is textual: a cause whose whole message already appears in the line is taken as
//! said, even when an earlier link said it for another reason.

use std::error::Error;
use std::fmt;

/// Displays an error and the causes the line does not already name, joined by ": ".
#[derive(Clone, Copy)]
pub struct Chain<'a>(&'a (dyn Error + 'static));

impl<'a> Chain<'a> {
    pub fn new(error: &'a (dyn Error + 'static)) -> Chain<'a> {
        Chain(error)
    }
}

impl<'a> From<&'a anyhow::Error> for Chain<'a> {
    fn from(error: &'a anyhow::Error) -> Chain<'a> {
        Chain(error.as_ref())
    }
}

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut line = String::new();
        let mut link = Some(self.0);
        while let Some(error) = link {
            let text = error.to_string();
            if line.is_empty() {
                line = text;
            } else if !text.is_empty() && !line.contains(&text) {
                line.push_str(": ");
                line.push_str(&text);
            }
            link = error.source();
        }
        f.write_str(&line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A link whose message ends with its cause's, as `tokio_postgres::Error`'s does.
    #[derive(Debug)]
    struct Echoing(std::io::Error);

    impl fmt::Display for Echoing {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "error communicating with the server: {}", self.0)
        }
    }

    impl Error for Echoing {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            Some(&self.0)
        }
    }

    fn reset() -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::ConnectionReset, "connection reset")
    }

    #[test]
    fn a_cause_the_line_already_names_is_printed_once() {
        let e = anyhow::Error::new(Echoing(reset())).context("target: committing a chunk");
        assert_eq!(
            format!("{e:#}"),
            "target: committing a chunk: error communicating with the server: connection reset: connection reset"
        );
        assert_eq!(
            Chain::from(&e).to_string(),
            "target: committing a chunk: error communicating with the server: connection reset"
        );
    }

    #[test]
    fn distinct_causes_are_all_printed() {
        let e = anyhow::Error::new(reset())
            .context("committing a chunk")
            .context("backfill failed");
        assert_eq!(
            Chain::from(&e).to_string(),
            "backfill failed: committing a chunk: connection reset"
        );
        assert_eq!(Chain::new(&reset()).to_string(), "connection reset");
    }
}
