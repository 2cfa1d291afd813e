//! The binaries' edge: the exit codes both print in `--help`, and an error
//! with its causes on one line.

/// The exit codes of both binaries, as their `--help` and docs/training.md show them.
pub const EXIT_CODES: &str = "\
Exit codes:
  0    done
  1    failed during the work (a full disk, out of memory, a gate missed); training says how to resume
  2    bad input or usage, found before the work starts; nothing was written
  130  interrupted (Ctrl-C); training keeps its last finished epoch, nothing is left half-written";

/// An error and its causes on one line, joined by ": " (`{:#}` in anyhow's
/// terms): what the binaries print.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        s += ": ";
        s += &c.to_string();
        cause = c.source();
    }
    s
}
