//! The silent half of `crate::metrics` (feature `metrics` off): the same
//! functions as `on.rs`, empty and inlined; the timers are zero-sized and
//! read no clock, so a call site compiles to nothing.
#![allow(dead_code)]

use super::{Backend, Query, Statement};
use crate::state::State;
use std::time::Duration;

pub(crate) const ENABLED: bool = false;

#[derive(Clone, Copy)]
pub(crate) struct Timer;

impl Timer {
    #[inline(always)]
    pub(crate) fn start() -> Self {
        Self
    }
}

#[inline(always)]
pub(crate) fn write_finished<T>(_: Backend, _: Timer, _: &crate::Result<T>) {}

pub(crate) struct QueryTimer;

#[inline(always)]
pub(crate) fn query(_: Backend, _: Query) -> QueryTimer {
    QueryTimer
}

pub(crate) struct FdatasyncTimer;

#[inline(always)]
pub(crate) fn fdatasync() -> FdatasyncTimer {
    FdatasyncTimer
}

#[inline(always)]
pub(crate) fn frame_written(_: u64) {}

#[inline(always)]
pub(crate) fn group_committed(_: usize) {}

#[inline(always)]
pub(crate) fn state_gauges(_: &State) {}

#[inline(always)]
pub(crate) fn log_bytes(_: impl FnOnce() -> u64) {}

#[inline(always)]
pub(crate) fn snapshot_bytes(_: u64) {}

#[inline(always)]
pub(crate) fn compacted(_: Duration) {}

pub(crate) struct PauseTimer;

#[inline(always)]
pub(crate) fn compaction_pause() -> PauseTimer {
    PauseTimer
}

#[inline(always)]
pub(crate) fn torn_tail_truncated() {}

#[inline(always)]
pub(crate) fn poisoned() {}

#[inline(always)]
pub(crate) fn replayed(_: Duration) {}

pub(crate) struct StatementTimer;

#[inline(always)]
pub(crate) fn pg_statement(_: Statement) -> StatementTimer {
    StatementTimer
}

pub(crate) struct PoolWaitTimer;

#[inline(always)]
pub(crate) fn pg_pool_wait() -> PoolWaitTimer {
    PoolWaitTimer
}

#[derive(Default)]
pub(crate) struct RoundTrips;

impl RoundTrips {
    #[inline(always)]
    pub(crate) fn statement(&self) -> StatementTimer {
        StatementTimer
    }

    #[inline(always)]
    pub(crate) fn record(&self, _: u64) {}
}

#[inline(always)]
pub(crate) fn pg_round_trips(_: u64) {}
