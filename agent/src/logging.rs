//! Logging through tracing to stderr, filtered by `RUST_LOG`. By default the daemon (`cloud3
//! run`) logs warnings and cloud3's info; the other commands only warnings, so what they print
//! is their result (on stdout). Colour only when stderr is a terminal: escapes in a log file or
//! a journal are noise.

use std::io::IsTerminal;

/// Installs the stderr subscriber once; `daemon` picks the daemon's default filter.
pub fn init(daemon: bool) {
    let default = if daemon {
        "warn,cloud3_agent=info"
    } else {
        "warn"
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

/// How many items of a list a log line shows.
const SHOWN: usize = 8;

/// A list for a log line: its length and its first few items. A scan of a 100,000-file folder
/// found 100,000 operations, and printing them all made one 38 MB line (and memory to match).
pub struct Head<'a, T>(pub &'a [T]);

impl<T: std::fmt::Debug> std::fmt::Debug for Head<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown = &self.0[..self.0.len().min(SHOWN)];
        write!(f, "{} {shown:?}", self.0.len())?;
        if self.0.len() > shown.len() {
            write!(f, " and {} more", self.0.len() - shown.len())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::Head;

    #[test]
    fn a_long_list_is_shown_by_its_length_and_first_items() {
        let items: Vec<u32> = (0..100_000).collect();
        let line = format!("{:?}", Head(&items));
        assert_eq!(line, "100000 [0, 1, 2, 3, 4, 5, 6, 7] and 99992 more");
        assert_eq!(format!("{:?}", Head(&items[..2])), "2 [0, 1]");
    }
}
