//! Who owns an installation and on which platform. An installation is identified by
//! (merchant, cms, site), so neither ever changes once it exists: the answer is cached for
//! the life of the process and the hot paths (interop events) skip a query per request.

use crate::db::{Store, StoreError};
use std::collections::HashMap;
use std::sync::RwLock;
use uuid::Uuid;

#[derive(Clone, Debug)]
pub struct InstallIdentity {
    pub id: Uuid,
    pub merchant_id: Uuid,
    pub cms: String,
}

pub struct InstallDirectory {
    /// Entries kept before the cache starts over (about 100 bytes each).
    max_entries: usize,
    known: RwLock<HashMap<Uuid, InstallIdentity>>,
}

impl InstallDirectory {
    pub fn new(max_entries: usize) -> Self {
        Self {
            max_entries,
            known: RwLock::default(),
        }
    }

    /// The installation's identity; None when it does not exist (not cached, so an install
    /// created later is found).
    pub async fn get(
        &self,
        store: &Store,
        id: Uuid,
    ) -> Result<Option<InstallIdentity>, StoreError> {
        if let Some(hit) = self.known.read().expect("install directory").get(&id) {
            return Ok(Some(hit.clone()));
        }
        let Some(target) = store.healing_target(id).await? else {
            return Ok(None);
        };
        let identity = InstallIdentity {
            id,
            merchant_id: target.merchant_id,
            cms: target.cms,
        };
        let mut known = self.known.write().expect("install directory");
        if known.len() >= self.max_entries {
            known.clear();
        }
        known.insert(id, identity.clone());
        Ok(Some(identity))
    }
}
