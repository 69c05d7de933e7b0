//! Login throttling (SPEC §2 abuse limits): per-username backoff and per-address budgets,
//! as pure state transitions that a store applies atomically.

use std::time::Duration;

use crate::Timestamp;

/// The counters kept for one throttling key (a username or a client address).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ThrottleState {
    /// Attempts counted: consecutive failures for a username, attempts in the current
    /// window for an address. An attempt is counted when it starts, so that parallel
    /// guesses cannot all slip past the limit before the first failure is recorded.
    pub attempts: u32,
    /// Start of the counting window (addresses only).
    pub window_start: Timestamp,
    /// No attempt is allowed before this instant.
    pub blocked_until: Option<Timestamp>,
}

/// What to do with an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThrottleDecision {
    /// Go ahead (the attempt has been counted).
    Allowed,
    /// Refuse before checking any password; retry after this long.
    Throttled {
        /// How long until an attempt may succeed, at least one second.
        retry_after: Duration,
    },
}

/// The limits: after [`ThrottlePolicy::max_consecutive_failures`] failures for one username,
/// exponential backoff from one second up to fifteen minutes, reset by a success (never a
/// permanent lockout); and at most [`ThrottlePolicy::max_attempts_per_address`] attempts a
/// minute from one client address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottlePolicy {
    /// Consecutive failures for one username before backoff starts.
    pub max_consecutive_failures: u32,
    /// Attempts per window from one address.
    pub max_attempts_per_address: u32,
    /// The address window.
    pub address_window: Duration,
    /// The first backoff.
    pub base_backoff: Duration,
    /// The longest backoff.
    pub max_backoff: Duration,
}

impl Default for ThrottlePolicy {
    fn default() -> Self {
        Self {
            max_consecutive_failures: 5,
            max_attempts_per_address: 50,
            address_window: Duration::from_secs(60),
            base_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(15 * 60),
        }
    }
}

impl ThrottlePolicy {
    /// An attempt for a username whose counters are `state` (default when unknown).
    #[must_use]
    pub fn username_attempt(
        &self,
        state: ThrottleState,
        now: Timestamp,
    ) -> (ThrottleDecision, ThrottleState) {
        if let Some(decision) = blocked(state, now) {
            return (decision, state);
        }
        let attempts = state.attempts.saturating_add(1);
        // The attempt that reaches the limit is still allowed; it blocks the ones after it,
        // for one second, then two, four, … up to the maximum, as failures go on.
        let blocked_until = (attempts >= self.max_consecutive_failures).then(|| {
            let doublings = attempts - self.max_consecutive_failures;
            now.plus(self.backoff(doublings))
        });
        (
            ThrottleDecision::Allowed,
            ThrottleState {
                attempts,
                window_start: state.window_start,
                blocked_until,
            },
        )
    }

    /// A successful login for a username: every counter resets.
    #[must_use]
    pub fn username_success(&self) -> ThrottleState {
        ThrottleState::default()
    }

    /// An attempt for a username that never reached a verdict (the server was busy or failed):
    /// it is taken back, as if it had not been made. The block it may have started goes too;
    /// any earlier block had expired, or the attempt would not have been allowed.
    #[must_use]
    pub fn username_give_back(&self, state: ThrottleState) -> ThrottleState {
        let attempts = state.attempts.saturating_sub(1);
        ThrottleState {
            attempts,
            window_start: state.window_start,
            blocked_until: None,
        }
    }

    /// An attempt from a client address whose counters are `state` (default when unknown).
    #[must_use]
    pub fn address_attempt(
        &self,
        state: ThrottleState,
        now: Timestamp,
    ) -> (ThrottleDecision, ThrottleState) {
        let window_end = state.window_start.plus(self.address_window);
        let state = if window_end <= now {
            ThrottleState {
                attempts: 0,
                window_start: now,
                blocked_until: None,
            }
        } else {
            state
        };
        if let Some(decision) = blocked(state, now) {
            return (decision, state);
        }
        let attempts = state.attempts.saturating_add(1);
        let blocked_until = (attempts >= self.max_attempts_per_address)
            .then(|| state.window_start.plus(self.address_window));
        (
            ThrottleDecision::Allowed,
            ThrottleState {
                attempts,
                window_start: state.window_start,
                blocked_until,
            },
        )
    }

    /// A successful login from an address: its attempt no longer counts against the budget,
    /// but earlier failures still do.
    #[must_use]
    pub fn address_success(&self, state: ThrottleState) -> ThrottleState {
        let attempts = state.attempts.saturating_sub(1);
        let blocked_until = if attempts < self.max_attempts_per_address {
            None
        } else {
            state.blocked_until
        };
        ThrottleState {
            attempts,
            window_start: state.window_start,
            blocked_until,
        }
    }

    fn backoff(&self, doublings: u32) -> Duration {
        let factor = 1_u32.checked_shl(doublings.min(31)).unwrap_or(u32::MAX);
        self.base_backoff
            .saturating_mul(factor)
            .min(self.max_backoff)
    }
}

fn blocked(state: ThrottleState, now: Timestamp) -> Option<ThrottleDecision> {
    let until = state.blocked_until.filter(|until| *until > now)?;
    let seconds = u64::try_from(until.unix() - now.unix()).unwrap_or(1).max(1);
    Some(ThrottleDecision::Throttled {
        retry_after: Duration::from_secs(seconds),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: Timestamp = Timestamp::from_unix(1_000);

    fn retry_after(decision: ThrottleDecision) -> Option<u64> {
        match decision {
            ThrottleDecision::Allowed => None,
            ThrottleDecision::Throttled { retry_after } => Some(retry_after.as_secs()),
        }
    }

    #[test]
    fn five_failures_are_allowed_then_backoff_starts_at_one_second() {
        let policy = ThrottlePolicy::default();
        let mut state = ThrottleState::default();
        for _ in 0..5 {
            let (decision, next) = policy.username_attempt(state, T0);
            assert_eq!(decision, ThrottleDecision::Allowed);
            state = next;
        }

        let (decision, _) = policy.username_attempt(state, T0);

        assert_eq!(retry_after(decision), Some(1));
    }

    #[test]
    fn backoff_doubles_with_each_further_failure_up_to_fifteen_minutes() {
        let policy = ThrottlePolicy::default();
        let mut state = ThrottleState {
            attempts: 4,
            ..ThrottleState::default()
        };
        let mut now = T0;
        let mut waits = Vec::new();
        for _ in 0..14 {
            let (decision, next) = policy.username_attempt(state, now);
            assert_eq!(decision, ThrottleDecision::Allowed);
            state = next;
            let wait = retry_after(policy.username_attempt(state, now).0).expect("blocked");
            waits.push(wait);
            now = now.plus(Duration::from_secs(wait));
        }

        assert_eq!(&waits[..6], &[1, 2, 4, 8, 16, 32]);
        assert_eq!(waits.last(), Some(&900));
    }

    #[test]
    fn a_success_resets_the_username_and_is_never_permanent() {
        let policy = ThrottlePolicy::default();
        let (_, state) = policy.username_attempt(
            ThrottleState {
                attempts: 40,
                ..ThrottleState::default()
            },
            T0,
        );
        let blocked_until = state.blocked_until.expect("blocked");

        assert_eq!(
            policy.username_attempt(state, blocked_until).0,
            ThrottleDecision::Allowed
        );
        assert_eq!(policy.username_success(), ThrottleState::default());
    }

    #[test]
    fn a_given_back_attempt_leaves_the_username_as_it_was() {
        let policy = ThrottlePolicy::default();
        let before = ThrottleState {
            attempts: 4,
            ..ThrottleState::default()
        };
        let (_, counted) = policy.username_attempt(before, T0);
        assert!(counted.blocked_until.is_some());

        let after = policy.username_give_back(counted);

        assert_eq!(after, before);
        assert_eq!(
            policy.username_attempt(after, T0).0,
            ThrottleDecision::Allowed
        );
    }

    #[test]
    fn an_address_gets_fifty_attempts_a_minute() {
        let policy = ThrottlePolicy::default();
        let mut state = ThrottleState {
            window_start: T0,
            ..ThrottleState::default()
        };
        for _ in 0..50 {
            let (decision, next) = policy.address_attempt(state, T0.plus(Duration::from_secs(10)));
            assert_eq!(decision, ThrottleDecision::Allowed);
            state = next;
        }

        let (decision, _) = policy.address_attempt(state, T0.plus(Duration::from_secs(10)));
        let (later, _) = policy.address_attempt(state, T0.plus(Duration::from_secs(60)));

        assert_eq!(retry_after(decision), Some(50));
        assert_eq!(later, ThrottleDecision::Allowed, "a new window starts");
    }

    #[test]
    fn a_successful_login_gives_its_address_attempt_back() {
        let policy = ThrottlePolicy::default();
        let (_, state) = policy.address_attempt(
            ThrottleState {
                attempts: 49,
                window_start: T0,
                blocked_until: None,
            },
            T0,
        );
        assert!(state.blocked_until.is_some());

        let after = policy.address_success(state);

        assert_eq!(after.attempts, 49);
        assert_eq!(after.blocked_until, None);
    }
}
