//! Login throttling counters: in process memory (SQLite, one instance) or shared through
//! PostgreSQL (several instances enforce one limit).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

use async_trait::async_trait;
use authgate_application::ports::{LoginThrottle, RepositoryError};
use authgate_domain::{ThrottleDecision, ThrottlePolicy, ThrottleState, Timestamp};

/// The most keys kept in memory; beyond it the oldest-blocked entries are evicted, so an
/// attacker spraying usernames or addresses cannot grow memory without bound.
const MAX_KEYS: usize = 100_000;

/// Throttling counters in process memory, behind one mutex, so each decision is atomic.
#[derive(Debug, Default)]
pub struct MemoryLoginThrottle {
    policy: ThrottlePolicy,
    state: Mutex<Counters>,
}

#[derive(Debug, Default)]
struct Counters {
    usernames: HashMap<String, ThrottleState>,
    addresses: HashMap<IpAddr, ThrottleState>,
}

impl MemoryLoginThrottle {
    /// Counters enforcing `policy`.
    #[must_use]
    pub fn new(policy: ThrottlePolicy) -> Self {
        Self {
            policy,
            state: Mutex::new(Counters::default()),
        }
    }
}

fn poisoned() -> RepositoryError {
    RepositoryError::Unavailable("throttle counters lock poisoned".into())
}

impl Counters {
    /// Drops entries that no longer block anything, when the maps grow too large.
    fn prune(&mut self, now: Timestamp) {
        if self.usernames.len() + self.addresses.len() < MAX_KEYS {
            return;
        }
        self.usernames
            .retain(|_, state| state.blocked_until.is_some_and(|until| until > now));
        self.addresses
            .retain(|_, state| state.blocked_until.is_some_and(|until| until > now));
        if self.usernames.len() + self.addresses.len() >= MAX_KEYS {
            // Everything is blocked: still bounded, at the price of forgetting.
            self.usernames.clear();
            self.addresses.clear();
        }
    }
}

#[async_trait]
impl LoginThrottle for MemoryLoginThrottle {
    async fn begin_attempt(
        &self,
        username: &str,
        address: Option<IpAddr>,
        now: Timestamp,
    ) -> Result<ThrottleDecision, RepositoryError> {
        let mut counters = self.state.lock().map_err(|_| poisoned())?;
        counters.prune(now);
        let username_state = counters
            .usernames
            .get(username)
            .copied()
            .unwrap_or_default();
        let (username_decision, next_username) = self.policy.username_attempt(username_state, now);
        if username_decision != ThrottleDecision::Allowed {
            return Ok(username_decision);
        }
        if let Some(address) = address {
            let address_state = counters
                .addresses
                .get(&address)
                .copied()
                .unwrap_or_default();
            let (address_decision, next_address) = self.policy.address_attempt(address_state, now);
            if address_decision != ThrottleDecision::Allowed {
                return Ok(address_decision);
            }
            counters.addresses.insert(address, next_address);
        }
        counters
            .usernames
            .insert(username.to_owned(), next_username);
        Ok(ThrottleDecision::Allowed)
    }

    async fn record_success(
        &self,
        username: &str,
        address: Option<IpAddr>,
        _now: Timestamp,
    ) -> Result<(), RepositoryError> {
        let mut counters = self.state.lock().map_err(|_| poisoned())?;
        counters.usernames.remove(username);
        if let Some(address) = address
            && let Some(state) = counters.addresses.get(&address).copied()
        {
            counters
                .addresses
                .insert(address, self.policy.address_success(state));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Timestamp = Timestamp::from_unix(1_000);

    #[tokio::test]
    async fn parallel_guesses_cannot_slip_past_the_limit() {
        let throttle = std::sync::Arc::new(MemoryLoginThrottle::new(ThrottlePolicy::default()));

        let handles: Vec<_> = (0..20)
            .map(|_| {
                let throttle = throttle.clone();
                tokio::spawn(async move { throttle.begin_attempt("alice", None, NOW).await })
            })
            .collect();
        let mut allowed = 0;
        for handle in handles {
            if matches!(handle.await.expect("task"), Ok(ThrottleDecision::Allowed)) {
                allowed += 1;
            }
        }

        assert_eq!(allowed, 5);
    }

    #[tokio::test]
    async fn throttling_one_username_does_not_block_another_or_other_addresses() {
        let throttle = MemoryLoginThrottle::new(ThrottlePolicy::default());
        let attacker: IpAddr = "192.0.2.1".parse().expect("ip");
        let other: IpAddr = "192.0.2.2".parse().expect("ip");
        for _ in 0..6 {
            let _ = throttle.begin_attempt("alice", Some(attacker), NOW).await;
        }

        assert!(matches!(
            throttle.begin_attempt("alice", Some(other), NOW).await,
            Ok(ThrottleDecision::Throttled { .. })
        ));
        assert_eq!(
            throttle
                .begin_attempt("bob", Some(attacker), NOW)
                .await
                .ok(),
            Some(ThrottleDecision::Allowed)
        );
        assert_eq!(
            throttle.begin_attempt("carol", Some(other), NOW).await.ok(),
            Some(ThrottleDecision::Allowed)
        );
    }

    #[tokio::test]
    async fn a_success_resets_the_username() {
        let throttle = MemoryLoginThrottle::new(ThrottlePolicy::default());
        for _ in 0..5 {
            let _ = throttle.begin_attempt("alice", None, NOW).await;
        }

        throttle
            .record_success("alice", None, NOW)
            .await
            .expect("recorded");

        assert_eq!(
            throttle.begin_attempt("alice", None, NOW).await.ok(),
            Some(ThrottleDecision::Allowed)
        );
    }

    #[tokio::test]
    async fn one_address_is_limited_to_fifty_attempts_a_minute() {
        let throttle = MemoryLoginThrottle::new(ThrottlePolicy::default());
        let address: IpAddr = "2001:db8::1".parse().expect("ip");
        for index in 0..50 {
            let decision = throttle
                .begin_attempt(&format!("user{index}"), Some(address), NOW)
                .await;
            assert_eq!(decision.ok(), Some(ThrottleDecision::Allowed));
        }

        let decision = throttle.begin_attempt("user50", Some(address), NOW).await;

        assert!(matches!(decision, Ok(ThrottleDecision::Throttled { .. })));
    }
}
