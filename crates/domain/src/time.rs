//! Points in time as whole seconds since the Unix epoch, the resolution of JWT `NumericDate`.

use std::time::Duration;

/// An instant, in whole seconds since 1970-01-01T00:00:00Z (RFC 7519 `NumericDate`).
///
/// The domain never reads the clock; callers pass `now` in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(i64);

impl Timestamp {
    /// The instant `seconds` after the Unix epoch.
    #[must_use]
    pub const fn from_unix(seconds: i64) -> Self {
        Self(seconds)
    }

    /// Seconds since the Unix epoch.
    #[must_use]
    pub const fn unix(self) -> i64 {
        self.0
    }

    /// This instant moved forward by `duration`, saturating rather than overflowing.
    #[must_use]
    pub fn plus(self, duration: Duration) -> Self {
        let seconds = i64::try_from(duration.as_secs()).unwrap_or(i64::MAX);
        Self(self.0.saturating_add(seconds))
    }

    /// This instant moved back by `duration`, saturating rather than overflowing.
    #[must_use]
    pub fn minus(self, duration: Duration) -> Self {
        let seconds = i64::try_from(duration.as_secs()).unwrap_or(i64::MAX);
        Self(self.0.saturating_sub(seconds))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_saturates_instead_of_overflowing() {
        let late = Timestamp::from_unix(i64::MAX - 1);

        assert_eq!(late.plus(Duration::from_secs(10)).unix(), i64::MAX);
        assert_eq!(
            Timestamp::from_unix(i64::MIN + 1)
                .minus(Duration::from_secs(10))
                .unix(),
            i64::MIN
        );
    }

    #[test]
    fn plus_and_minus_move_by_whole_seconds() {
        let now = Timestamp::from_unix(1_000);

        assert_eq!(now.plus(Duration::from_millis(1_999)).unix(), 1_001);
        assert_eq!(now.minus(Duration::from_secs(1_000)).unix(), 0);
    }
}
