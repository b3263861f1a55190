//! Normalizing interop events: which mapping applies, and the store-held mappings kept
//! compiled in memory.
//!
//! Precedence, for an event of platform P and source type T:
//! 1. an active mapping for (P, T) held in the store (created through the API);
//! 2. the mapping for (P, T) in the rule files (`rules/interop/`);
//! 3. an event already in the normalized vocabulary (`checkout.created`, …) passes as it is;
//! 4. otherwise the event is stored as `failed` (`no_mapping`), never dropped.

use crate::store::{Store, StoreError, StoredMapping};
use engine::{
    InteropEvent, LoadErrorKind, Mapping, MappingSpec, NormalizeError, NormalizedEvent, RuleSet,
};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// Store-held mappings are re-read at most this often (a change made through another
/// replica shows within this time; one made here shows at once).
const REFRESH_EVERY: Duration = Duration::from_secs(5);

type Compiled = HashMap<(String, String), Arc<Mapping>>;

/// The store's active mappings, compiled, keyed by (platform, source event type).
#[derive(Default)]
pub struct StoreMappings {
    compiled: RwLock<Option<(Instant, Arc<Compiled>)>>,
}

impl StoreMappings {
    /// Compiles `rows` (active ones only). A stored mapping that no longer compiles (an
    /// engine upgrade tightened a check) is skipped and logged, not fatal.
    fn compile(rows: &[StoredMapping]) -> Compiled {
        rows.iter()
            .filter(|row| row.is_active)
            .filter_map(|row| {
                let label = format!("store:{}", row.id);
                match Mapping::from_json(&label, &row.spec.0) {
                    Ok(mapping) => Some((
                        (row.source_platform.clone(), row.source_event_type.clone()),
                        Arc::new(mapping),
                    )),
                    Err(errors) => {
                        tracing::warn!(event = "stored_mapping_invalid", mapping = %label, errors = errors.len(), "a stored mapping no longer compiles; skipped");
                        None
                    }
                }
            })
            .collect()
    }

    async fn current(&self, store: &Store) -> Result<Arc<Compiled>, StoreError> {
        if let Some((at, compiled)) = self.compiled.read().expect("mappings lock").as_ref() {
            if at.elapsed() < REFRESH_EVERY {
                return Ok(compiled.clone());
            }
        }
        self.refresh(store).await
    }

    /// Re-reads the store now (after a change made through this process).
    pub async fn refresh(&self, store: &Store) -> Result<Arc<Compiled>, StoreError> {
        let rows = store.list_mappings(None).await?;
        let compiled = Arc::new(Self::compile(&rows));
        *self.compiled.write().expect("mappings lock") = Some((Instant::now(), compiled.clone()));
        Ok(compiled)
    }
}

/// The outcome of normalizing one event, with the mapping that decided it.
pub struct Normalized {
    pub result: Result<NormalizedEvent, NormalizeError>,
    /// `store:<id>`, `file:<path>`, `already_normalized`, or None when nothing applied.
    pub mapping: Option<String>,
}

/// Normalizes `event` by the precedence above.
pub async fn normalize(
    store: &Store,
    mappings: &StoreMappings,
    rules: &RuleSet,
    event: &InteropEvent,
) -> Result<Normalized, StoreError> {
    let deadline = Some(Instant::now() + Duration::from_millis(50));
    let stored = mappings.current(store).await?;
    if let Some(mapping) = stored.get(&(event.platform.clone(), event.event_type.clone())) {
        return Ok(Normalized {
            result: mapping.normalize_with_deadline(event, deadline),
            mapping: Some(mapping.file.clone()),
        });
    }
    if let Some(mapping) = rules.mapping_for(&event.platform, &event.event_type) {
        return Ok(Normalized {
            result: mapping.normalize_with_deadline(event, deadline),
            mapping: Some(format!("file:{}", mapping.file)),
        });
    }
    let result = engine::already_normalized(event);
    let mapping = result.is_ok().then(|| "already_normalized".to_owned());
    Ok(Normalized { result, mapping })
}

/// Validates a mapping from the API with the engine's own checks (the same as a file's).
/// Returns every problem as (field, message).
pub fn validate(spec: &MappingSpec) -> Result<Mapping, Vec<(String, String)>> {
    Mapping::from_spec("request", spec).map_err(|errors| {
        errors
            .into_iter()
            .map(|error| {
                let field = match &error.kind {
                    LoadErrorKind::UnknownPlatform { .. } => "source_platform".to_owned(),
                    LoadErrorKind::UnknownEventType { .. } => "normalized_event_type".to_owned(),
                    LoadErrorKind::UnknownCurrency { .. } => "default_currency".to_owned(),
                    kind => serde_json::to_value(kind).unwrap_or_default()["field"]
                        .as_str()
                        .unwrap_or("mapping")
                        .to_owned(),
                };
                (field, error.kind.to_string())
            })
            .collect()
    })
}
