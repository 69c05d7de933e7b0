//! A small in-memory key store for this crate's tests, counting how often keys are listed.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use authgate_application::ports::{KeyMaterial, KeyStore, RepositoryError, StoredKey};

/// Keys and secrets in memory; `lists()` tells how many times the signer read the keys.
#[derive(Default)]
pub(crate) struct CountingKeyStore {
    keys: Mutex<Vec<StoredKey>>,
    secrets: Mutex<HashMap<String, KeyMaterial>>,
    lists: AtomicUsize,
}

impl CountingKeyStore {
    /// How many times [`KeyStore::list`] was called.
    pub(crate) fn lists(&self) -> usize {
        self.lists.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl KeyStore for CountingKeyStore {
    async fn list(&self) -> Result<Vec<StoredKey>, RepositoryError> {
        self.lists.fetch_add(1, Ordering::SeqCst);
        Ok(self.keys.lock().unwrap().clone())
    }

    async fn insert_if_no_active(&self, key: &StoredKey) -> Result<bool, RepositoryError> {
        let mut keys = self.keys.lock().unwrap();
        if keys
            .iter()
            .any(|stored| stored.algorithm == key.algorithm && stored.retired_at.is_none())
        {
            return Ok(false);
        }
        keys.push(key.clone());
        Ok(true)
    }

    async fn rotate(&self, key: &StoredKey) -> Result<(), RepositoryError> {
        let mut keys = self.keys.lock().unwrap();
        for stored in keys
            .iter_mut()
            .filter(|stored| stored.algorithm == key.algorithm && stored.retired_at.is_none())
        {
            stored.retired_at = Some(key.created_at);
        }
        keys.push(key.clone());
        Ok(())
    }

    async fn rotate_if_due(
        &self,
        key: &StoredKey,
        created_before: authgate_domain::Timestamp,
    ) -> Result<bool, RepositoryError> {
        let mut keys = self.keys.lock().unwrap();
        let due = keys
            .iter()
            .filter(|stored| stored.algorithm == key.algorithm && stored.retired_at.is_none())
            .all(|stored| stored.created_at < created_before);
        if !due {
            return Ok(false);
        }
        for stored in keys
            .iter_mut()
            .filter(|stored| stored.algorithm == key.algorithm && stored.retired_at.is_none())
        {
            stored.retired_at = Some(key.created_at);
        }
        keys.push(key.clone());
        Ok(true)
    }

    async fn secret(
        &self,
        name: &str,
        candidate: &KeyMaterial,
    ) -> Result<KeyMaterial, RepositoryError> {
        Ok(self
            .secrets
            .lock()
            .unwrap()
            .entry(name.to_owned())
            .or_insert_with(|| candidate.clone())
            .clone())
    }
}
