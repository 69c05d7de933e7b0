//! Counting outcomes and summarising latencies: per-worker tallies, merged, sorted once.

use std::time::Duration;

use hyper::StatusCode;
use serde_json::{Value, json};

/// How one request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A `2xx` answer.
    Ok,
    /// `429 Too Many Requests`: the login throttle refused before checking the password.
    Throttled,
    /// `503 Service Unavailable`: every hashing slot and queue place was taken.
    Busy,
    /// Any other status.
    OtherStatus,
    /// No answer: connect, write, read or timeout failure.
    Io,
}

impl Outcome {
    /// Classifies a response status.
    #[must_use]
    pub fn of(status: StatusCode) -> Self {
        if status.is_success() {
            Self::Ok
        } else if status == StatusCode::TOO_MANY_REQUESTS {
            Self::Throttled
        } else if status == StatusCode::SERVICE_UNAVAILABLE {
            Self::Busy
        } else {
            Self::OtherStatus
        }
    }
}

/// What one worker saw inside the measured window.
///
/// Latencies are kept for `2xx` answers only, so that fast refusals (`429`, `503`) never
/// flatter the percentiles; the refusals are counted instead.
#[derive(Debug, Default)]
pub struct Tally {
    latencies_ns: Vec<u64>,
    throttled: u64,
    busy: u64,
    other_status: u64,
    io: u64,
}

impl Tally {
    /// Records one request.
    pub fn record(&mut self, outcome: Outcome, latency: Duration) {
        match outcome {
            Outcome::Ok => self
                .latencies_ns
                .push(u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX)),
            Outcome::Throttled => self.throttled += 1,
            Outcome::Busy => self.busy += 1,
            Outcome::OtherStatus => self.other_status += 1,
            Outcome::Io => self.io += 1,
        }
    }

    /// Adds another worker's tally to this one.
    pub fn merge(&mut self, other: Self) {
        self.latencies_ns.extend(other.latencies_ns);
        self.throttled += other.throttled;
        self.busy += other.busy;
        self.other_status += other.other_status;
        self.io += other.io;
    }

    /// Rates and percentiles over a window of `duration`.
    #[must_use]
    pub fn summarize(mut self, duration: Duration) -> Summary {
        self.latencies_ns.sort_unstable();
        let sorted = &self.latencies_ns;
        let seconds = duration.as_secs_f64().max(f64::EPSILON);
        let ok = sorted.len() as u64;
        Summary {
            ok,
            per_second: ok as f64 / seconds,
            p50_ms: percentile_ms(sorted, 0.50),
            p99_ms: percentile_ms(sorted, 0.99),
            p999_ms: percentile_ms(sorted, 0.999),
            max_ms: sorted.last().map_or(0.0, |&ns| ns as f64 / 1e6),
            throttled: self.throttled,
            busy: self.busy,
            other_status: self.other_status,
            io: self.io,
            seconds,
        }
    }
}

/// Nearest-rank percentile of sorted nanoseconds, in milliseconds; 0 when there are none.
fn percentile_ms(sorted: &[u64], quantile: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (quantile * sorted.len() as f64).ceil() as usize;
    let index = rank.clamp(1, sorted.len()) - 1;
    sorted[index] as f64 / 1e6
}

/// One workload's figures.
#[derive(Debug, Clone, Copy)]
pub struct Summary {
    /// Successful requests (or verifications) in the window.
    pub ok: u64,
    /// Successful requests per second.
    pub per_second: f64,
    /// Median latency of successful requests, ms.
    pub p50_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
    /// 99.9th percentile, ms.
    pub p999_ms: f64,
    /// Slowest successful request, ms.
    pub max_ms: f64,
    /// `429` answers.
    pub throttled: u64,
    /// `503` answers.
    pub busy: u64,
    /// Other non-`2xx` answers.
    pub other_status: u64,
    /// Requests without an answer.
    pub io: u64,
    /// Length of the measured window, s.
    pub seconds: f64,
}

impl Summary {
    /// Everything that was not a `2xx` answer.
    #[must_use]
    pub fn errors(self) -> u64 {
        self.throttled + self.busy + self.other_status + self.io
    }

    /// The figures as JSON, with the server's peak RSS when one was measured.
    #[must_use]
    pub fn to_json(self, peak_rss_mib: Option<f64>) -> Value {
        json!({
            "ok": self.ok,
            "per_second": round(self.per_second, 1),
            "p50_ms": round(self.p50_ms, 3),
            "p99_ms": round(self.p99_ms, 3),
            "p999_ms": round(self.p999_ms, 3),
            "max_ms": round(self.max_ms, 3),
            "errors": self.errors(),
            "status_429": self.throttled,
            "status_503": self.busy,
            "status_other": self.other_status,
            "io_errors": self.io,
            "seconds": round(self.seconds, 3),
            "peak_rss_mib": peak_rss_mib.map(|mib| round(mib, 1)),
        })
    }
}

/// `value` rounded to `decimals` places, for readable JSON.
#[must_use]
pub fn round(value: f64, decimals: i32) -> f64 {
    let scale = 10_f64.powi(decimals);
    (value * scale).round() / scale
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let mut tally = Tally::default();
        for ms in 1..=1000 {
            tally.record(Outcome::Ok, Duration::from_millis(ms));
        }
        tally.record(Outcome::Busy, Duration::from_millis(1));

        let summary = tally.summarize(Duration::from_secs(2));

        assert_eq!(summary.ok, 1000);
        assert!((summary.per_second - 500.0).abs() < 1e-9);
        assert!((summary.p50_ms - 500.0).abs() < 1e-9);
        assert!((summary.p99_ms - 990.0).abs() < 1e-9);
        assert!((summary.p999_ms - 999.0).abs() < 1e-9);
        assert_eq!(summary.errors(), 1);
    }

    #[test]
    fn an_empty_tally_summarises_to_zeros() {
        let summary = Tally::default().summarize(Duration::from_secs(1));

        assert_eq!(summary.ok, 0);
        assert!(summary.p99_ms.abs() < f64::EPSILON);
    }

    #[test]
    fn statuses_are_classified() {
        assert_eq!(Outcome::of(StatusCode::OK), Outcome::Ok);
        assert_eq!(
            Outcome::of(StatusCode::TOO_MANY_REQUESTS),
            Outcome::Throttled
        );
        assert_eq!(Outcome::of(StatusCode::SERVICE_UNAVAILABLE), Outcome::Busy);
        assert_eq!(Outcome::of(StatusCode::BAD_REQUEST), Outcome::OtherStatus);
    }
}
