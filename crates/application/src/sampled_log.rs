//! Log sampling for events an attacker can repeat at will.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use authgate_domain::Timestamp;

/// Lets through one log line per clock second for an event that a client can repeat as fast
/// as the network allows (a throttled login, a shed request), so that the log cannot become
/// the flood's amplifier; each line counts the occurrences left out since the one before.
#[derive(Debug)]
pub struct SampledLog {
    /// The second of the latest line, in Unix seconds.
    second: AtomicI64,
    left_out: AtomicU64,
}

impl Default for SampledLog {
    fn default() -> Self {
        Self {
            second: AtomicI64::new(i64::MIN),
            left_out: AtomicU64::new(0),
        }
    }
}

impl SampledLog {
    /// `Some(occurrences left out since the last line)` when the occurrence at `now` may be
    /// logged, `None` when it is to be left out.
    pub fn sample(&self, now: Timestamp) -> Option<u64> {
        if self.second.swap(now.unix(), Ordering::AcqRel) == now.unix() {
            self.left_out.fetch_add(1, Ordering::Relaxed);
            None
        } else {
            Some(self.left_out.swap(0, Ordering::AcqRel))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_a_second_counting_those_left_out() {
        let log = SampledLog::default();
        let second = Timestamp::from_unix;

        assert_eq!(log.sample(second(100)), Some(0));
        for _ in 0..999 {
            assert_eq!(log.sample(second(100)), None);
        }
        assert_eq!(log.sample(second(101)), Some(999));
        assert_eq!(log.sample(second(101)), None);
        assert_eq!(log.sample(second(105)), Some(1));
    }

    #[test]
    fn the_first_occurrence_is_logged_whatever_the_clock_says() {
        assert_eq!(
            SampledLog::default().sample(Timestamp::from_unix(0)),
            Some(0)
        );
    }
}
