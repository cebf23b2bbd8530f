//! Latency summaries.

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Percentiles of a set of latencies, in microseconds.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct Latency {
    /// How many samples.
    pub samples: usize,
    /// Median.
    pub p50_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// 99.9th percentile.
    pub p999_us: f64,
    /// Largest.
    pub max_us: f64,
    /// Mean.
    pub mean_us: f64,
}

impl Latency {
    /// Summarizes `samples` (sorted in place). Nearest-rank percentiles.
    pub fn of(samples: &mut [Duration]) -> Self {
        if samples.is_empty() {
            return Self::default();
        }
        samples.sort_unstable();
        let us = |d: Duration| d.as_secs_f64() * 1e6;
        let rank = |p: f64| {
            let i = (p / 100.0 * samples.len() as f64).ceil() as usize;
            us(samples[i.clamp(1, samples.len()) - 1])
        };
        let total: Duration = samples.iter().sum();
        Self {
            samples: samples.len(),
            p50_us: rank(50.0),
            p99_us: rank(99.0),
            p999_us: rank(99.9),
            max_us: us(samples[samples.len() - 1]),
            mean_us: us(total) / samples.len() as f64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let mut v: Vec<Duration> = (1..=100).rev().map(Duration::from_micros).collect();
        let l = Latency::of(&mut v);
        assert_eq!((l.samples, l.p50_us, l.p99_us, l.max_us), (100, 50.0, 99.0, 100.0));
        assert_eq!(l.mean_us, 50.5);
        assert_eq!(Latency::of(&mut []), Latency::default());
        assert_eq!(Latency::of(&mut [Duration::from_micros(7)]).p99_us, 7.0);
    }
}
