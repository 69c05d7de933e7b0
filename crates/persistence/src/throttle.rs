//! Login-throttling counters in process memory: the SQLite deployment's, where one instance
//! per database file is the supported set-up (PostgreSQL shares them: `postgres/throttle.rs`).

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;

use async_trait::async_trait;
use authgate_application::ports::{LOGIN_THROTTLE_RETENTION, LoginThrottle, RepositoryError};
use authgate_domain::{ThrottleDecision, ThrottlePolicy, ThrottleState, Timestamp};

/// The most keys kept in memory; beyond it the entries that block nothing are evicted, so an
/// attacker spraying usernames or addresses cannot grow memory without bound.
const MAX_KEYS: usize = 100_000;

/// Throttling counters in process memory, behind one mutex, so each decision is atomic.
///
/// Each process counts on its own: several instances on one database would each allow the
/// full limit. That is why PostgreSQL, the multi-instance backend, uses shared counters.
#[derive(Debug, Default)]
pub struct MemoryLoginThrottle {
    policy: ThrottlePolicy,
    state: Mutex<Counters>,
}

#[derive(Debug, Default)]
struct Counters {
    usernames: HashMap<String, Entry>,
    addresses: HashMap<IpAddr, Entry>,
}

/// The counters of one key, and when an attempt or a success last changed them.
#[derive(Debug, Clone, Copy)]
struct Entry {
    state: ThrottleState,
    updated_at: Timestamp,
}

impl Entry {
    fn blocks_at(&self, now: Timestamp) -> bool {
        self.state.blocked_until.is_some_and(|until| until > now)
    }
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

/// The counters of `key` in `entries`, empty when it has none.
fn state_of<Key, Lookup>(entries: &HashMap<Key, Entry>, key: &Lookup) -> ThrottleState
where
    Key: Borrow<Lookup> + Eq + Hash,
    Lookup: Eq + Hash + ?Sized,
{
    entries
        .get(key)
        .map(|entry| entry.state)
        .unwrap_or_default()
}

impl Counters {
    /// Drops entries that no longer block anything, when the maps grow too large.
    fn prune(&mut self, now: Timestamp) {
        if self.usernames.len() + self.addresses.len() < MAX_KEYS {
            return;
        }
        self.usernames.retain(|_, entry| entry.blocks_at(now));
        self.addresses.retain(|_, entry| entry.blocks_at(now));
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
        let username_state = state_of(&counters.usernames, username);
        let (username_decision, next_username) = self.policy.username_attempt(username_state, now);
        if username_decision != ThrottleDecision::Allowed {
            return Ok(username_decision);
        }
        if let Some(address) = address {
            let address_state = state_of(&counters.addresses, &address);
            let (address_decision, next_address) = self.policy.address_attempt(address_state, now);
            if address_decision != ThrottleDecision::Allowed {
                return Ok(address_decision);
            }
            counters.addresses.insert(
                address,
                Entry {
                    state: next_address,
                    updated_at: now,
                },
            );
        }
        counters.usernames.insert(
            username.to_owned(),
            Entry {
                state: next_username,
                updated_at: now,
            },
        );
        Ok(ThrottleDecision::Allowed)
    }

    async fn record_success(
        &self,
        username: &str,
        address: Option<IpAddr>,
        now: Timestamp,
    ) -> Result<(), RepositoryError> {
        let mut counters = self.state.lock().map_err(|_| poisoned())?;
        counters.usernames.remove(username);
        if let Some(address) = address
            && let Some(entry) = counters.addresses.get_mut(&address)
        {
            *entry = Entry {
                state: self.policy.address_success(entry.state),
                updated_at: now,
            };
        }
        Ok(())
    }

    async fn give_back(
        &self,
        username: &str,
        address: Option<IpAddr>,
        now: Timestamp,
    ) -> Result<(), RepositoryError> {
        let mut counters = self.state.lock().map_err(|_| poisoned())?;
        if let Some(entry) = counters.usernames.get_mut(username) {
            *entry = Entry {
                state: self.policy.username_give_back(entry.state),
                updated_at: now,
            };
        }
        if let Some(address) = address
            && let Some(entry) = counters.addresses.get_mut(&address)
        {
            // Giving an address its attempt back is what a success does to it.
            *entry = Entry {
                state: self.policy.address_success(entry.state),
                updated_at: now,
            };
        }
        Ok(())
    }

    async fn purge_expired(&self, now: Timestamp) -> Result<u64, RepositoryError> {
        let idle_before = now.minus(LOGIN_THROTTLE_RETENTION);
        let expired = |entry: &Entry| entry.updated_at < idle_before && !entry.blocks_at(now);
        let mut counters = self.state.lock().map_err(|_| poisoned())?;
        let before = counters.usernames.len() + counters.addresses.len();
        counters.usernames.retain(|_, entry| !expired(entry));
        counters.addresses.retain(|_, entry| !expired(entry));
        let after = counters.usernames.len() + counters.addresses.len();
        Ok(u64::try_from(before - after).unwrap_or(u64::MAX))
    }
}
