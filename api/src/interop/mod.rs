//! The interop layer (seed 001): plugins post their platform's events, which are
//! normalized to one vocabulary (CloudEvents) by the interop mappings and stored raw and
//! normalized, forwarded to the configured webhooks; Ops read them and manage the
//! store-held mappings. [`Service`] is the feature's entry; `http.rs` its routes, `store.rs`
//! its SQL.
//!
//! Precedence, for an event of platform P and source type T:
//! 1. an active mapping for (P, T) held in the store (created through the API);
//! 2. the mapping for (P, T) in the rule files (`rules/interop/`);
//! 3. an event already in the normalized vocabulary (`checkout.created`, …) passes as it is;
//! 4. otherwise the event is stored as `failed` (`no_mapping`), never dropped.

mod http;
mod store;

pub(crate) use http::{mapping_request, routes, ProcessingStatus};
pub use store::*;

use crate::db::{AuditContext, Store, StoreError};
use crate::delivery::{NewOutboxMessage, Outbox};
use crate::error::ApiError;
use crate::fleet::installs::InstallDirectory;
use crate::rules::Rules;
use crate::Clock;
use chrono::{DateTime, Utc};
use engine::{
    InteropEvent, LoadErrorKind, Mapping, MappingSpec, NormalizeError, NormalizedEvent, RuleSet,
};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// Settings of the interop layer; each has a `serve` flag.
#[derive(Clone, Debug)]
pub struct InteropConfig {
    /// Store-held mappings are re-read at most this often: a change made through another
    /// replica shows within this time; one made here shows at once.
    pub mappings_max_age: Duration,
    /// Installations whose owner and platform are cached (they never change).
    pub installs_cache_entries: usize,
}

impl Default for InteropConfig {
    fn default() -> Self {
        Self {
            mappings_max_age: Duration::from_secs(5),
            installs_cache_entries: 200_000,
        }
    }
}

type Compiled = HashMap<(String, String), Arc<Mapping>>;

/// The store's active mappings, compiled, keyed by (platform, source event type).
struct StoreMappings {
    max_age: Duration,
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
            if at.elapsed() < self.max_age {
                return Ok(compiled.clone());
            }
        }
        self.refresh(store).await
    }

    /// Re-reads the store now (after a change made through this process).
    async fn refresh(&self, store: &Store) -> Result<Arc<Compiled>, StoreError> {
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

/// Validates a mapping from the API with the engine's own checks (the same as a file's).
/// Returns every problem as (field, message).
fn validate(spec: &MappingSpec) -> Result<Mapping, Vec<(String, String)>> {
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

/// An interop event a plugin posts, checked.
pub struct NewInteropEvent {
    pub plugin_id: Uuid,
    pub event_type: String,
    pub payload: serde_json::Map<String, Value>,
    /// The platform's own id of this delivery (webhook id), if it has one: the strongest
    /// deduplication key.
    pub source_event_id: Option<String>,
    pub occurred_at: Option<DateTime<Utc>>,
}

/// What became of an interop event.
pub struct Ingested {
    pub stored: InteropOutcome,
    /// The CloudEvent, or why nothing maps the event (then it is stored as `failed`).
    pub normalized: Result<NormalizedEvent, NormalizeError>,
}

/// The interop layer's operations, built from the handles they use.
pub struct Service {
    store: Store,
    clock: Clock,
    rules: Arc<Rules>,
    mappings: StoreMappings,
    installs: InstallDirectory,
    outbox: Arc<Outbox>,
    /// Longest a mapping's script may run per event.
    script_deadline: Duration,
}

impl Service {
    pub fn new(
        store: Store,
        clock: Clock,
        config: &InteropConfig,
        rules: Arc<Rules>,
        outbox: Arc<Outbox>,
        script_deadline: Duration,
    ) -> Self {
        Self {
            store,
            clock,
            rules,
            mappings: StoreMappings {
                max_age: config.mappings_max_age,
                compiled: RwLock::default(),
            },
            installs: InstallDirectory::new(config.installs_cache_entries),
            outbox,
            script_deadline,
        }
    }

    /// Normalizes and stores an event of one of the merchant's installs, once per source
    /// event (a redelivery answers with the row stored the first time). An event nothing
    /// maps, or whose payload does not fit its mapping, is stored as `failed`, never dropped.
    pub async fn ingest(
        &self,
        merchant_id: Uuid,
        request: NewInteropEvent,
    ) -> Result<Ingested, ApiError> {
        let target = self
            .installs
            .get(&self.store, request.plugin_id)
            .await?
            .filter(|t| t.merchant_id == merchant_id)
            .ok_or_else(|| {
                ApiError::invalid("plugin_id", "no such installation of this merchant")
            })?;
        let now = self.clock.now();
        let event = InteropEvent {
            platform: target.cms.clone(),
            shop: target.id.to_string(),
            event_type: request.event_type,
            event_id: request.source_event_id,
            time: request.occurred_at.unwrap_or(now),
            payload: Value::Object(request.payload),
        };
        let normalized = self.normalize(&event).await?;
        let base = InteropRecord {
            installation_id: target.id,
            merchant_id: target.merchant_id,
            event_id: String::new(),
            source_platform: target.cms.clone(),
            source_event_type: event.event_type.clone(),
            event_type: None,
            event_category: None,
            payload: event.payload.clone(),
            normalized_payload: None,
            cloud_event: None,
            mapping: normalized.mapping.clone(),
            processing_status: "processed",
            failure_code: None,
            failure_reason: None,
            forwards: Vec::new(),
        };
        let record = match &normalized.result {
            Ok(cloud_event) => InteropRecord {
                event_id: cloud_event.id.clone(),
                event_type: Some(cloud_event.event_type.clone()),
                event_category: Some(cloud_event.category.clone()),
                normalized_payload: Some(Value::Object(cloud_event.data.clone())),
                cloud_event: serde_json::to_value(cloud_event).ok(),
                forwards: self.forwards(cloud_event),
                ..base
            },
            Err(error) => InteropRecord {
                event_id: engine::event_id(
                    &event.platform,
                    &event.shop,
                    &event.event_type,
                    event.event_id.as_deref(),
                    None,
                    &event.payload,
                ),
                processing_status: "failed",
                failure_code: Some(error.code().to_owned()),
                failure_reason: Some(error.to_string()),
                ..base
            },
        };
        let stored = self.store.write(record, now).await?;
        Ok(Ingested {
            stored,
            normalized: normalized.result,
        })
    }

    /// Normalizes `event` by the precedence above.
    async fn normalize(&self, event: &InteropEvent) -> Result<Normalized, StoreError> {
        let deadline = Some(Instant::now() + self.script_deadline);
        let stored = self.mappings.current(&self.store).await?;
        if let Some(mapping) = stored.get(&(event.platform.clone(), event.event_type.clone())) {
            return Ok(Normalized {
                result: mapping.normalize_with_deadline(event, deadline),
                mapping: Some(mapping.file.clone()),
            });
        }
        let rules: RuleSet = self.rules.current();
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

    /// The normalized event, as a CloudEvent, for each configured webhook.
    fn forwards(&self, cloud_event: &NormalizedEvent) -> Vec<NewOutboxMessage> {
        let webhooks = &self.outbox.config.cloudevents_webhooks;
        if webhooks.is_empty() {
            return Vec::new();
        }
        let payload = serde_json::to_value(cloud_event).unwrap_or_default();
        webhooks
            .iter()
            .map(|url| NewOutboxMessage {
                channel: "cloudevents",
                destination: url.clone(),
                payload: payload.clone(),
                source_type: "interop_event",
                source_id: Some(cloud_event.id.clone()),
            })
            .collect()
    }

    pub async fn events(
        &self,
        filter: &InteropFilter,
    ) -> Result<Vec<StoredInteropEvent>, ApiError> {
        Ok(self.store.list_interop_events(filter).await?)
    }

    pub async fn stats(&self, since: DateTime<Utc>) -> Result<InteropStats, ApiError> {
        Ok(self.store.interop_stats(since).await?)
    }

    /// Creates or replaces the mapping of (platform, source event), validated by the same
    /// engine code as a mapping file; audited. In force at once on this server, within
    /// `mappings_max_age` on the others. True when it was created.
    pub async fn upsert_mapping(
        &self,
        spec: &MappingSpec,
        is_active: bool,
        audit: &AuditContext,
    ) -> Result<(StoredMapping, bool), ApiError> {
        if let Err(problems) = validate(spec) {
            let (field, message) = problems.into_iter().next().expect("at least one problem");
            return Err(ApiError::invalid(field, message));
        }
        let stored = self
            .store
            .upsert_mapping(spec, is_active, audit, self.clock.now())
            .await?;
        self.mappings.refresh(&self.store).await?;
        Ok(stored)
    }

    /// The store's mappings and the files', each with `source` and whether it is the one
    /// `in_force` for its (platform, event).
    pub async fn mappings(&self, platform: Option<&str>) -> Result<Vec<Value>, ApiError> {
        let stored = self.store.list_mappings(platform).await?;
        let mut out: Vec<Value> = stored
            .iter()
            .map(|m| {
                let mut value = mapping_json(m);
                value["in_force"] = json!(m.is_active);
                value
            })
            .collect();
        let rules = self.rules.current();
        for mapping in rules.mappings() {
            let platform_name = mapping.source_platform.as_str();
            if platform.is_some_and(|p| p != platform_name) {
                continue;
            }
            let overridden = stored.iter().any(|m| {
                m.is_active
                    && m.source_platform == platform_name
                    && m.source_event_type == mapping.source_event_type
            });
            let spec = mapping.spec();
            out.push(json!({
                "id": null,
                "source_platform": platform_name,
                "source_event_type": spec.source_event_type,
                "normalized_event_type": spec.normalized_event_type,
                "field_mappings": spec.field_mappings,
                "is_active": true,
                "source": format!("file:{}", mapping.file),
                "in_force": !overridden,
            }));
        }
        Ok(out)
    }
}

/// A stored mapping as the API shows it.
pub fn mapping_json(mapping: &StoredMapping) -> Value {
    let mut value = serde_json::to_value(mapping).unwrap_or_default();
    value["source"] = json!("store");
    value
}
