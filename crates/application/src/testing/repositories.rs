//! In-memory fakes of the repository ports, with the same semantics as the SQL adapters.
//!
//! Each fake keeps its state behind one `std::sync::Mutex` and does a whole port call under
//! one lock, so every call is atomic just as the adapters' transactions are. They pass the
//! persistence crate's contract suite. What they cannot show is what spans stores: deleting a
//! user here does not delete their refresh-token families, as the database's cascade does.
//! The one fake that reads across stores, [`InMemoryBearerLookup`], is built over the user
//! and denylist fakes it reads.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use authgate_domain::{PasswordHash, Scope, SessionEpoch, Timestamp, User, UserId, Username};
use uuid::Uuid;

use crate::ports::{
    AccessTokenDenylist, BearerLookup, BearerSubject, HealthProbe, KeyMaterial, KeyStore, NewUser,
    RefreshFamily, RefreshTokenHash, RefreshTokenStore, RepositoryError, RotateOutcome, StoredKey,
    UserPatch, UserRepository,
};

/// Locks `mutex`, carrying on after a panic in another test thread: every fake's state is
/// consistent between port calls, and a poisoned fake would turn one failure into many.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A user as the fake stores them.
#[derive(Debug, Clone)]
struct StoredUser {
    user: User,
    password_hash: PasswordHash,
}

/// [`UserRepository`] in memory, ordered by username like the SQL adapters' keyset pages.
#[derive(Debug, Default)]
pub struct InMemoryUserRepository {
    users: Mutex<BTreeMap<Username, StoredUser>>,
}

impl InMemoryUserRepository {
    /// An empty repository.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }
}

/// Whether `user` counts for the last-administrator rule: enabled and holding `users:write`.
fn is_administrator(user: &User) -> bool {
    !user.disabled && user.scopes.contains(Scope::UsersWrite)
}

/// How many enabled users hold `users:write`.
fn count_administrators(users: &BTreeMap<Username, StoredUser>) -> usize {
    users
        .values()
        .filter(|stored| is_administrator(&stored.user))
        .count()
}

/// The user a [`NewUser`] becomes, at session epoch 0.
fn stored_user(new_user: &NewUser) -> StoredUser {
    StoredUser {
        user: User {
            id: new_user.id,
            username: new_user.username.clone(),
            profile: new_user.profile.clone(),
            disabled: false,
            scopes: new_user.scopes,
            created_at: new_user.created_at,
            session_epoch: SessionEpoch::default(),
        },
        password_hash: new_user.password_hash.clone(),
    }
}

#[async_trait]
impl UserRepository for InMemoryUserRepository {
    async fn find_by_username(&self, username: &Username) -> Result<Option<User>, RepositoryError> {
        Ok(lock(&self.users)
            .get(username)
            .map(|stored| stored.user.clone()))
    }

    async fn find_by_id(&self, id: UserId) -> Result<Option<User>, RepositoryError> {
        Ok(lock(&self.users)
            .values()
            .find(|stored| stored.user.id == id)
            .map(|stored| stored.user.clone()))
    }

    async fn find_credentials(
        &self,
        username: &Username,
    ) -> Result<Option<(User, PasswordHash)>, RepositoryError> {
        Ok(lock(&self.users)
            .get(username)
            .map(|stored| (stored.user.clone(), stored.password_hash.clone())))
    }

    async fn insert(&self, new_user: &NewUser) -> Result<User, RepositoryError> {
        let mut users = lock(&self.users);
        if users.contains_key(&new_user.username) {
            return Err(RepositoryError::UsernameTaken);
        }
        let stored = stored_user(new_user);
        let user = stored.user.clone();
        users.insert(new_user.username.clone(), stored);
        Ok(user)
    }

    async fn insert_if_empty(&self, new_user: &NewUser) -> Result<bool, RepositoryError> {
        let mut users = lock(&self.users);
        if !users.is_empty() {
            return Ok(false);
        }
        users.insert(new_user.username.clone(), stored_user(new_user));
        Ok(true)
    }

    async fn change_password(
        &self,
        id: UserId,
        password_hash: &PasswordHash,
    ) -> Result<User, RepositoryError> {
        let mut users = lock(&self.users);
        let stored = users
            .values_mut()
            .find(|stored| stored.user.id == id)
            .ok_or(RepositoryError::NotFound)?;
        stored.password_hash = password_hash.clone();
        stored.user.session_epoch = stored.user.session_epoch.next();
        Ok(stored.user.clone())
    }

    async fn upgrade_password_hash(
        &self,
        id: UserId,
        password_hash: &PasswordHash,
    ) -> Result<(), RepositoryError> {
        if let Some(stored) = lock(&self.users)
            .values_mut()
            .find(|stored| stored.user.id == id)
        {
            stored.password_hash = password_hash.clone();
        }
        Ok(())
    }

    async fn update(
        &self,
        username: &Username,
        patch: &UserPatch,
    ) -> Result<User, RepositoryError> {
        let mut users = lock(&self.users);
        let administrators = count_administrators(&users);
        let stored = users.get_mut(username).ok_or(RepositoryError::NotFound)?;
        let mut changed = stored.user.clone();
        if let Some(disabled) = patch.disabled {
            changed.disabled = disabled;
        }
        if let Some(scopes) = patch.scopes {
            changed.scopes = scopes;
        }
        if let Some(email) = &patch.email {
            changed.profile.email.clone_from(email);
        }
        if let Some(full_name) = &patch.full_name {
            changed.profile.full_name.clone_from(full_name);
        }
        let remaining = administrators - usize::from(is_administrator(&stored.user))
            + usize::from(is_administrator(&changed));
        if administrators > 0 && remaining == 0 {
            return Err(RepositoryError::LastAdministrator);
        }
        stored.user = changed.clone();
        Ok(changed)
    }

    async fn delete(&self, username: &Username) -> Result<User, RepositoryError> {
        let mut users = lock(&self.users);
        let administrators = count_administrators(&users);
        let stored = users.get(username).ok_or(RepositoryError::NotFound)?;
        if administrators > 0 && administrators - usize::from(is_administrator(&stored.user)) == 0 {
            return Err(RepositoryError::LastAdministrator);
        }
        let removed = users.remove(username).ok_or(RepositoryError::NotFound)?;
        Ok(removed.user)
    }

    async fn list(
        &self,
        after: Option<Username>,
        limit: u32,
    ) -> Result<Vec<User>, RepositoryError> {
        let users = lock(&self.users);
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        let page = users
            .iter()
            .filter(|(username, _)| after.as_ref().is_none_or(|after| *username > after))
            .take(limit)
            .map(|(_, stored)| stored.user.clone())
            .collect();
        Ok(page)
    }
}

/// A family as the fake stores it.
#[derive(Debug, Clone)]
struct StoredFamily {
    family: RefreshFamily,
    revoked: Option<(Timestamp, String)>,
}

impl StoredFamily {
    fn is_live(&self, now: Timestamp) -> bool {
        self.revoked.is_none() && self.family.expires_at > now
    }
}

/// A token as the fake stores it: rotated ones are kept to recognise reuse.
#[derive(Debug, Clone)]
struct StoredToken {
    family_id: Uuid,
    rotation: Option<(Timestamp, RefreshTokenHash)>,
}

#[derive(Debug, Default)]
struct RefreshTokenState {
    families: HashMap<Uuid, StoredFamily>,
    tokens: HashMap<RefreshTokenHash, StoredToken>,
}

impl RefreshTokenState {
    fn revoke(&mut self, family_id: Uuid, reason: &str, now: Timestamp) {
        if let Some(stored) = self.families.get_mut(&family_id) {
            // A family keeps the first reason it was revoked for, as in the database.
            stored
                .revoked
                .get_or_insert_with(|| (now, reason.to_owned()));
        }
    }
}

/// [`RefreshTokenStore`] in memory.
#[derive(Debug, Default)]
pub struct InMemoryRefreshTokenStore {
    state: Mutex<RefreshTokenState>,
}

impl InMemoryRefreshTokenStore {
    /// An empty store.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Why the family of `token` was revoked, if it was: for tests of the use cases that
    /// revoke (`reuse`, `password_changed`, …). The SQL stores keep the same record.
    #[must_use]
    pub fn revocation_reason(&self, token: &RefreshTokenHash) -> Option<String> {
        let state = lock(&self.state);
        let family_id = state.tokens.get(token)?.family_id;
        state
            .families
            .get(&family_id)?
            .revoked
            .as_ref()
            .map(|(_, reason)| reason.clone())
    }
}

#[async_trait]
impl RefreshTokenStore for InMemoryRefreshTokenStore {
    async fn create_family(
        &self,
        family: &RefreshFamily,
        token: &RefreshTokenHash,
    ) -> Result<(), RepositoryError> {
        let mut state = lock(&self.state);
        state.families.insert(
            family.id,
            StoredFamily {
                family: family.clone(),
                revoked: None,
            },
        );
        state.tokens.insert(
            *token,
            StoredToken {
                family_id: family.id,
                rotation: None,
            },
        );
        Ok(())
    }

    async fn rotate(
        &self,
        token: &RefreshTokenHash,
        successor: &RefreshTokenHash,
        now: Timestamp,
        grace: Duration,
    ) -> Result<RotateOutcome, RepositoryError> {
        let mut state = lock(&self.state);
        let Some(presented) = state.tokens.get(token).cloned() else {
            return Ok(RotateOutcome::Invalid);
        };
        let Some(stored) = state
            .families
            .get(&presented.family_id)
            .filter(|stored| stored.is_live(now))
        else {
            return Ok(RotateOutcome::Invalid);
        };
        let family = stored.family.clone();
        match presented.rotation {
            None => {
                state.tokens.insert(
                    *token,
                    StoredToken {
                        family_id: family.id,
                        rotation: Some((now, *successor)),
                    },
                );
                state.tokens.insert(
                    *successor,
                    StoredToken {
                        family_id: family.id,
                        rotation: None,
                    },
                );
                Ok(RotateOutcome::Rotated(family))
            }
            Some((rotated_at, stored_successor))
                if stored_successor == *successor && rotated_at.plus(grace) > now =>
            {
                Ok(RotateOutcome::Replayed(family))
            }
            Some(_) => {
                state.revoke(family.id, "reuse", now);
                Ok(RotateOutcome::Reused)
            }
        }
    }

    async fn find_current(
        &self,
        token: &RefreshTokenHash,
        now: Timestamp,
    ) -> Result<Option<RefreshFamily>, RepositoryError> {
        let state = lock(&self.state);
        let current = state
            .tokens
            .get(token)
            .filter(|stored| stored.rotation.is_none())
            .and_then(|stored| state.families.get(&stored.family_id))
            .filter(|stored| stored.is_live(now))
            .map(|stored| stored.family.clone());
        Ok(current)
    }

    async fn revoke_family_of(
        &self,
        token: &RefreshTokenHash,
        reason: &str,
        now: Timestamp,
    ) -> Result<(), RepositoryError> {
        let mut state = lock(&self.state);
        if let Some(family_id) = state.tokens.get(token).map(|stored| stored.family_id) {
            state.revoke(family_id, reason, now);
        }
        Ok(())
    }

    async fn revoke_user_families(
        &self,
        user_id: UserId,
        reason: &str,
        now: Timestamp,
    ) -> Result<(), RepositoryError> {
        let mut state = lock(&self.state);
        let family_ids: Vec<Uuid> = state
            .families
            .values()
            .filter(|stored| stored.family.user_id == user_id)
            .map(|stored| stored.family.id)
            .collect();
        for family_id in family_ids {
            state.revoke(family_id, reason, now);
        }
        Ok(())
    }

    async fn purge_expired(&self, now: Timestamp) -> Result<u64, RepositoryError> {
        let mut state = lock(&self.state);
        let before = state.families.len();
        state
            .families
            .retain(|_, stored| stored.family.expires_at >= now);
        let purged = before - state.families.len();
        let RefreshTokenState { families, tokens } = &mut *state;
        tokens.retain(|_, stored| families.contains_key(&stored.family_id));
        Ok(u64::try_from(purged).unwrap_or(u64::MAX))
    }
}

/// [`AccessTokenDenylist`] in memory.
#[derive(Debug, Default)]
pub struct InMemoryDenylist {
    denied: Mutex<HashMap<String, Timestamp>>,
}

impl InMemoryDenylist {
    /// An empty denylist.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl AccessTokenDenylist for InMemoryDenylist {
    async fn deny(&self, jwt_id: &str, expires_at: Timestamp) -> Result<(), RepositoryError> {
        let mut denied = lock(&self.denied);
        let until = denied.entry(jwt_id.to_owned()).or_insert(expires_at);
        *until = (*until).max(expires_at);
        Ok(())
    }

    async fn purge_expired(&self, now: Timestamp) -> Result<u64, RepositoryError> {
        let mut denied = lock(&self.denied);
        let before = denied.len();
        denied.retain(|_, expires_at| *expires_at >= now);
        Ok(u64::try_from(before - denied.len()).unwrap_or(u64::MAX))
    }
}

/// [`BearerLookup`] in memory, reading the [`InMemoryUserRepository`] and
/// [`InMemoryDenylist`] it was built over, so that it sees what they store.
#[derive(Debug)]
pub struct InMemoryBearerLookup {
    users: Arc<InMemoryUserRepository>,
    denylist: Arc<InMemoryDenylist>,
}

impl InMemoryBearerLookup {
    /// A lookup over `users` and `denylist`, which the caller keeps using to write.
    #[must_use]
    pub fn new(users: Arc<InMemoryUserRepository>, denylist: Arc<InMemoryDenylist>) -> Self {
        Self { users, denylist }
    }
}

#[async_trait]
impl BearerLookup for InMemoryBearerLookup {
    async fn bearer_subject(
        &self,
        user_id: UserId,
        jwt_id: &str,
    ) -> Result<BearerSubject, RepositoryError> {
        // Both locks at once, so that the answer is one snapshot, as the adapters' single
        // statement is. Nothing else takes both, so the order cannot deadlock.
        let users = lock(&self.users.users);
        let denied = lock(&self.denylist.denied);
        Ok(BearerSubject {
            user: users
                .values()
                .find(|stored| stored.user.id == user_id)
                .map(|stored| stored.user.clone()),
            revoked: denied.contains_key(jwt_id),
        })
    }
}

#[derive(Debug, Default)]
struct KeyState {
    keys: Vec<StoredKey>,
    secrets: HashMap<String, KeyMaterial>,
}

/// [`KeyStore`] in memory.
#[derive(Debug, Default)]
pub struct InMemoryKeyStore {
    state: Mutex<KeyState>,
}

impl InMemoryKeyStore {
    /// An empty store.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }
}

/// `key` as stored: active, whatever its `retired_at` said.
fn active(key: &StoredKey) -> StoredKey {
    StoredKey {
        retired_at: None,
        ..key.clone()
    }
}

#[async_trait]
impl KeyStore for InMemoryKeyStore {
    async fn list(&self) -> Result<Vec<StoredKey>, RepositoryError> {
        let mut keys = lock(&self.state).keys.clone();
        // Oldest first, ties broken by `kid`, as the SQL stores order them.
        keys.sort_by(|left, right| {
            (left.created_at, &left.kid).cmp(&(right.created_at, &right.kid))
        });
        Ok(keys)
    }

    async fn insert_if_no_active(&self, key: &StoredKey) -> Result<bool, RepositoryError> {
        let mut state = lock(&self.state);
        if state
            .keys
            .iter()
            .any(|stored| stored.algorithm == key.algorithm && stored.retired_at.is_none())
        {
            return Ok(false);
        }
        state.keys.push(active(key));
        Ok(true)
    }

    async fn rotate(&self, key: &StoredKey) -> Result<(), RepositoryError> {
        let mut state = lock(&self.state);
        for stored in &mut state.keys {
            if stored.algorithm == key.algorithm && stored.retired_at.is_none() {
                stored.retired_at = Some(key.created_at);
            }
        }
        state.keys.push(active(key));
        Ok(())
    }

    async fn rotate_if_due(
        &self,
        key: &StoredKey,
        created_before: Timestamp,
    ) -> Result<bool, RepositoryError> {
        let mut state = lock(&self.state);
        let mut active_keys = state
            .keys
            .iter_mut()
            .filter(|stored| stored.algorithm == key.algorithm && stored.retired_at.is_none());
        match active_keys.next() {
            Some(current) if current.created_at >= created_before => return Ok(false),
            Some(current) => current.retired_at = Some(key.created_at),
            None => {}
        }
        state.keys.push(active(key));
        Ok(true)
    }

    async fn secret(
        &self,
        name: &str,
        candidate: &KeyMaterial,
    ) -> Result<KeyMaterial, RepositoryError> {
        Ok(lock(&self.state)
            .secrets
            .entry(name.to_owned())
            .or_insert_with(|| candidate.clone())
            .clone())
    }
}

/// [`HealthProbe`] in memory: healthy until told otherwise.
#[derive(Debug)]
pub struct InMemoryHealthProbe {
    available: AtomicBool,
}

impl InMemoryHealthProbe {
    /// A probe that answers healthy.
    #[must_use]
    pub fn new() -> Self {
        Self {
            available: AtomicBool::new(true),
        }
    }

    /// Makes later pings succeed (`true`) or fail as unavailable (`false`), to test readiness.
    pub fn set_available(&self, available: bool) {
        self.available.store(available, Ordering::SeqCst);
    }
}

impl Default for InMemoryHealthProbe {
    fn default() -> Self {
        Self::new()
    }
}

/// The failure an unavailable [`InMemoryHealthProbe`] reports.
#[derive(Debug, thiserror::Error)]
#[error("the in-memory database is set to be unavailable")]
struct SimulatedOutage;

#[async_trait]
impl HealthProbe for InMemoryHealthProbe {
    async fn ping(&self) -> Result<(), RepositoryError> {
        if self.available.load(Ordering::SeqCst) {
            Ok(())
        } else {
            Err(RepositoryError::Unavailable(Box::new(SimulatedOutage)))
        }
    }
}
