//! Statistics: latency histograms (hdrhistogram, microseconds) and their
//! percentiles, medians over repeated runs.

use anyhow::{Context, Result};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Highest latency the histograms hold: 10 minutes, in µs.
const MAX_US: u64 = 600_000_000;

/// An empty latency histogram (µs, 3 significant digits).
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_US, 3).expect("constant histogram bounds are valid")
}

/// Records latencies given in milliseconds (sipp's unit), clamped to the
/// histogram's range.
pub fn record_ms(h: &mut Histogram<u64>, ms: f64) {
    let us = (ms * 1000.0).round().clamp(0.0, MAX_US as f64) as u64;
    h.saturating_record(us);
}

/// Percentiles of one latency distribution, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencySummary {
    pub samples: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

/// The summary of a histogram (all zero when it is empty).
pub fn summarize(h: &Histogram<u64>) -> LatencySummary {
    if h.is_empty() {
        return LatencySummary::default();
    }
    let ms = |us: u64| us as f64 / 1000.0;
    LatencySummary {
        samples: h.len(),
        p50_ms: ms(h.value_at_quantile(0.50)),
        p90_ms: ms(h.value_at_quantile(0.90)),
        p99_ms: ms(h.value_at_quantile(0.99)),
        p999_ms: ms(h.value_at_quantile(0.999)),
        max_ms: ms(h.max()),
        mean_ms: h.mean() / 1000.0,
    }
}

/// A histogram as `(value_us, count)` pairs of its recorded values, small
/// enough to keep in each run's JSON so reports can be rebuilt from files.
pub fn to_pairs(h: &Histogram<u64>) -> Vec<(u64, u64)> {
    h.iter_recorded()
        .map(|v| {
            (
                h.highest_equivalent(v.value_iterated_to()),
                v.count_at_value(),
            )
        })
        .collect()
}

/// Rebuilds a histogram from [`to_pairs`] output.
pub fn from_pairs(pairs: &[(u64, u64)]) -> Result<Histogram<u64>> {
    let mut h = new_histogram();
    for &(v, n) in pairs {
        h.record_n(v.min(MAX_US), n)
            .with_context(|| format!("histogram value {v}"))?;
    }
    Ok(h)
}

/// Points of the cumulative distribution: `(latency_ms, fraction <= it)`.
pub fn cdf_points(h: &Histogram<u64>) -> Vec<(f64, f64)> {
    let total = h.len() as f64;
    if total == 0.0 {
        return Vec::new();
    }
    let mut seen = 0u64;
    h.iter_recorded()
        .map(|v| {
            seen += v.count_at_value();
            (
                h.highest_equivalent(v.value_iterated_to()) as f64 / 1000.0,
                seen as f64 / total,
            )
        })
        .collect()
}

/// The median (mean of the two middle values for an even count).
pub fn median(values: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// Smallest and largest finite value.
pub fn min_max(values: &[f64]) -> Option<(f64, f64)> {
    let v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    let lo = v.iter().copied().reduce(f64::min)?;
    let hi = v.iter().copied().reduce(f64::max)?;
    Some((lo, hi))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[3.0]), Some(3.0));
        assert_eq!(median(&[5.0, 1.0, 3.0]), Some(3.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[f64::NAN, 2.0]), Some(2.0));
        assert_eq!(min_max(&[2.0, -1.0, 7.0]), Some((-1.0, 7.0)));
    }

    #[test]
    fn percentiles_of_whole_milliseconds() {
        // 1000 samples: 900 at 0 ms, 90 at 1 ms, 9 at 5 ms, 1 at 40 ms.
        let mut h = new_histogram();
        for (ms, n) in [(0.0, 900), (1.0, 90), (5.0, 9), (40.0, 1)] {
            for _ in 0..n {
                record_ms(&mut h, ms);
            }
        }
        let s = summarize(&h);
        assert_eq!(s.samples, 1000);
        assert_eq!(s.p50_ms, 0.0);
        assert_eq!(s.p90_ms, 0.0);
        assert!((s.p99_ms - 1.0).abs() < 0.01, "{}", s.p99_ms);
        assert!((s.p999_ms - 5.0).abs() < 0.01, "{}", s.p999_ms);
        assert!((s.max_ms - 40.0).abs() < 0.05, "{}", s.max_ms);
        assert_eq!(summarize(&new_histogram()), LatencySummary::default());
    }

    #[test]
    fn pairs_round_trip_and_cdf() {
        let mut h = new_histogram();
        for ms in [0.0, 0.0, 1.0, 2.0, 2.0, 2.0, 12.0] {
            record_ms(&mut h, ms);
        }
        let back = from_pairs(&to_pairs(&h)).unwrap();
        assert_eq!(summarize(&back), summarize(&h));
        let cdf = cdf_points(&h);
        assert_eq!(cdf.first().unwrap().1, 2.0 / 7.0);
        assert_eq!(cdf.last().unwrap().1, 1.0);
        assert!(cdf.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 < w[1].1));
    }
}
