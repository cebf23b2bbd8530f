//! When a waiter polls before it parks, and when it stops.
//!
//! Two waits poll: a lone caller for its answer (`WalLockStore::submit`)
//! and the writer thread for its next request (`writer::next_message`). On
//! an idle machine a poll saves the wake-up of a parked thread. With the
//! CPUs busy it costs twice: the polling thread takes CPU time another
//! process needs, and the scheduler, seeing a thread that never sleeps,
//! deschedules it for a whole time slice, often just when its answer
//! arrives, while a parked thread would have been woken at once.
//!
//! So a poll watches its own clock: a gap of more than [`PREEMPTED`]
//! between two polls means the thread was descheduled. A poll that was
//! descheduled, or whose wait outlasted its budget, did not pay; each one
//! doubles the number of waits that then park at once (from 1 up to
//! [`MAX_SKIP`]), and as many polls that paid as that number halve it
//! again. The gate is only counts: deterministic, tested without a clock.
//! Figures: docs/decisions/0042-adaptive-writer-wait.md.

use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
use std::time::{Duration, Instant};

/// A gap between two polls longer than this: the polling thread was
/// descheduled (a poll round-trip is well under a microsecond, a time
/// slice of a competing process milliseconds).
pub(crate) const PREEMPTED: Duration = Duration::from_micros(50);

/// Most consecutive waits a gate sends straight to parking.
pub(crate) const MAX_SKIP: u32 = 1024;

/// How a poll ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Polled {
    /// The awaited thing came while the thread kept polling: it paid.
    Found,
    /// The thread was descheduled while polling.
    Preempted,
    /// The budget passed first (the waiter then parks anyway).
    TimedOut,
}

/// Decides whether a wait polls first. Shared by the waits of one kind
/// (its counters are atomics; two waits racing on them at worst poll or
/// park once more than intended).
#[derive(Debug, Default)]
pub(crate) struct PollGate {
    /// Waits to park at once before polling again.
    skip: AtomicU32,
    /// What `skip` is set to after the next poll that does not pay.
    penalty: AtomicU32,
    /// Polls that paid since `penalty` last changed.
    paid: AtomicU32,
}

impl PollGate {
    /// Whether this wait polls (false: park at once).
    pub(crate) fn should_poll(&self) -> bool {
        let skip = self.skip.load(Relaxed);
        if skip == 0 {
            return true;
        }
        self.skip.store(skip - 1, Relaxed);
        false
    }

    /// Records how a poll ended.
    pub(crate) fn record(&self, polled: Polled) {
        let penalty = self.penalty.load(Relaxed);
        if polled == Polled::Found {
            let paid = self.paid.load(Relaxed) + 1;
            if paid >= penalty.max(1) {
                self.penalty.store(penalty / 2, Relaxed);
                self.paid.store(0, Relaxed);
            } else {
                self.paid.store(paid, Relaxed);
            }
            return;
        }
        let penalty = (penalty * 2).clamp(1, MAX_SKIP);
        self.penalty.store(penalty, Relaxed);
        self.skip.store(penalty, Relaxed);
        self.paid.store(0, Relaxed);
    }

    /// The number of waits that will park at once (for tests and stats).
    #[cfg(test)]
    pub(crate) fn skipping(&self) -> u32 {
        self.skip.load(Relaxed)
    }
}

/// The clock of one poll: its budget and the gaps between its polls.
pub(crate) struct PollClock {
    started: Instant,
    last: Instant,
    budget: Duration,
}

impl PollClock {
    pub(crate) fn start(budget: Duration) -> Self {
        let now = Instant::now();
        Self { started: now, last: now, budget }
    }

    /// Called before each poll after the first: `Some` when the poll should
    /// stop (descheduled, or out of budget), `None` to poll again.
    pub(crate) fn tick(&mut self) -> Option<Polled> {
        let now = Instant::now();
        let gap = now - self.last;
        self.last = now;
        if gap > PREEMPTED {
            Some(Polled::Preempted)
        } else if now - self.started >= self.budget {
            Some(Polled::TimedOut)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parked_in_a_row(gate: &PollGate) -> u32 {
        let mut n = 0;
        while !gate.should_poll() {
            n += 1;
        }
        n
    }

    /// A fresh gate polls; each poll that does not pay doubles the run of
    /// waits that park at once, up to the cap.
    #[test]
    fn polls_that_do_not_pay_back_off_exponentially_up_to_the_cap() {
        let gate = PollGate::default();
        assert!(gate.should_poll(), "a fresh gate polls");
        let mut runs = Vec::new();
        for how in [Polled::Preempted, Polled::TimedOut].into_iter().cycle().take(14) {
            gate.record(how);
            runs.push(parked_in_a_row(&gate));
        }
        assert_eq!(&runs[..11], &[1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024]);
        assert!(runs[11..].iter().all(|&r| r == MAX_SKIP), "capped: {runs:?}");
    }

    /// As many polls that pay as the last penalty halve it; on a machine
    /// where polling pays, the gate returns to polling every wait.
    #[test]
    fn polls_that_pay_halve_the_penalty_until_every_wait_polls() {
        let gate = PollGate::default();
        for _ in 0..6 {
            gate.record(Polled::Preempted);
        }
        assert_eq!(gate.skipping(), 32);
        assert_eq!(parked_in_a_row(&gate), 32);
        // 31 paid polls: not yet as many as the penalty.
        for _ in 0..31 {
            gate.record(Polled::Found);
        }
        gate.record(Polled::Preempted);
        assert_eq!(parked_in_a_row(&gate), 64, "a poll that does not pay before the penalty halved doubles it");
        let mut found = 0;
        while {
            gate.record(Polled::Found);
            found += 1;
            gate.penalty.load(Relaxed) > 0
        } {}
        assert_eq!(found, 64 + 32 + 16 + 8 + 4 + 2 + 1, "halved after each run of paid polls");
        assert!((0..100).all(|_| gate.should_poll()), "back to polling every wait");
        gate.record(Polled::Preempted);
        assert_eq!(parked_in_a_row(&gate), 1, "starting over at one");
    }

    /// Paid polls never make a gate skip.
    #[test]
    fn a_gate_whose_polls_always_pay_always_polls() {
        let gate = PollGate::default();
        for _ in 0..10_000 {
            assert!(gate.should_poll());
            gate.record(Polled::Found);
        }
    }

    /// A gap between two polls longer than [`PREEMPTED`] ends the poll as
    /// descheduled, even with budget left (a sleep lasts at least as long
    /// as asked, so this holds on any machine); a spent budget ends it too.
    #[test]
    fn a_clock_reports_a_long_gap_as_preempted_and_a_spent_budget_as_timed_out() {
        let mut clock = PollClock::start(Duration::from_secs(3600));
        std::thread::sleep(PREEMPTED * 4);
        assert_eq!(clock.tick(), Some(Polled::Preempted));
        let mut spent = PollClock::start(Duration::ZERO);
        assert!(matches!(spent.tick(), Some(Polled::TimedOut | Polled::Preempted)), "a spent budget stops the poll");
    }
}
