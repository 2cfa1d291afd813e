//! `--threads` unset: libtorch's intra-op threads follow the cores other
//! processes leave free. libtorch's OpenMP threads spin at every barrier,
//! so two threads on two cores beside a busy process lose most of their
//! time waiting for the one that shares its core (a measured 3× epoch);
//! one thread on the free core loses nothing to waiting. Every second the
//! training loop asks [`Follower::tick`]: the cores others kept busy
//! (total use less ours, `ae_core::machine::CoreWatch`) decide the count,
//! all the physical cores when the machine is idle, one fewer per core
//! another process takes, at least one; a count must be seen twice in a
//! row before it is taken, so a passing spike moves nothing.
//!
//! The last bits of a step can follow the thread count (libtorch splits a
//! batch's gradient sums between its threads), so a run that must repeat
//! bit for bit pins `--threads`.

use std::time::{Duration, Instant};

use ae_core::machine::{physical_cores, CoreWatch};

/// How often the free cores are read.
const INTERVAL: Duration = Duration::from_secs(1);

/// The thread count libtorch runs with, following the free cores.
#[derive(Debug)]
pub struct Follower {
    watch: CoreWatch,
    max: usize,
    current: usize,
    /// The count the last read asked for, not yet taken.
    pending: Option<usize>,
    last: Instant,
}

/// A change of thread count: from, to, and the cores others kept busy.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Change {
    pub from: usize,
    pub to: usize,
    pub others: f64,
}

impl Follower {
    /// `None` when `--threads` pins the count (set once here) or the
    /// machine cannot be read; otherwise libtorch starts on every physical
    /// core.
    pub fn new(pinned: Option<usize>) -> Option<Follower> {
        if let Some(t) = pinned {
            tch::set_num_threads(t as i32);
            return None;
        }
        let max = physical_cores();
        tch::set_num_threads(max as i32);
        let watch = CoreWatch::new()?;
        Some(Follower { watch, max, current: max, pending: None, last: Instant::now() })
    }

    /// The threads the free cores call for: `max` less the cores others
    /// keep busy, rounded, at least 1.
    pub fn wanted(max: usize, others: f64) -> usize {
        ((max as f64 - others).round() as usize).clamp(1, max)
    }

    /// Called between steps: once a second, reads the free cores and sets
    /// libtorch's threads when a new count was asked for twice in a row.
    pub fn tick(&mut self) -> Option<Change> {
        if self.last.elapsed() < INTERVAL {
            return None;
        }
        self.last = Instant::now();
        let others = self.watch.others_busy();
        let want = Follower::wanted(self.max, others);
        if want == self.current {
            self.pending = None;
            return None;
        }
        if self.pending != Some(want) {
            self.pending = Some(want);
            return None;
        }
        let change = Change { from: self.current, to: want, others };
        tch::set_num_threads(want as i32);
        self.current = want;
        self.pending = None;
        Some(change)
    }
}

#[cfg(test)]
mod tests {
    use crate::cores::Follower;

    #[test]
    fn one_thread_fewer_per_core_another_process_takes() {
        assert_eq!(Follower::wanted(2, 0.0), 2);
        assert_eq!(Follower::wanted(2, 0.4), 2, "a light process leaves both");
        // Two threads of ours and one busy process share two cores: it gets
        // two thirds of one.
        assert_eq!(Follower::wanted(2, 0.67), 1);
        assert_eq!(Follower::wanted(2, 1.0), 1);
        assert_eq!(Follower::wanted(2, 2.0), 1, "never none");
        assert_eq!(Follower::wanted(8, 2.9), 5);
    }
}
