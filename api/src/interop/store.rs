//! Interop events (raw and normalized, deduplicated by their CloudEvents id) and the event
//! mappings Ops keep in the store.

use crate::db::{insert_audit, on_pool, on_tx, AuditContext, Batched, Store, StoreError, Tx};
use crate::delivery::{insert_outbox, NewOutboxMessage};
use crate::errors::{record_occurrences, Occurrence, OccurrenceSource};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{json, Value};
use sqlx::types::Json;
use sqlx::QueryBuilder;
use std::collections::{HashMap, HashSet};
use uuid::Uuid;

/// An interop event to store, normalized or failed.
#[derive(Clone, Debug)]
pub struct InteropRecord {
    pub installation_id: Uuid,
    pub merchant_id: Uuid,
    /// The deterministic CloudEvents id: the same source event always gets the same one.
    pub event_id: String,
    pub source_platform: String,
    pub source_event_type: String,
    pub event_type: Option<String>,
    pub event_category: Option<String>,
    pub payload: Value,
    pub normalized_payload: Option<Value>,
    pub cloud_event: Option<Value>,
    pub mapping: Option<String>,
    pub processing_status: &'static str,
    pub failure_code: Option<String>,
    pub failure_reason: Option<String>,
    /// Outbox messages to write with the event (the CloudEvent forwarded to webhooks):
    /// written only the first time the event is stored.
    pub forwards: Vec<NewOutboxMessage>,
}

#[derive(Clone, Debug)]
pub struct InteropOutcome {
    pub id: Uuid,
    /// The event had been stored before: nothing was written.
    pub duplicate: bool,
}

/// An interop event as Ops read it (seed 001's fields, plus the failure and mapping).
#[derive(Clone, Debug, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct StoredInteropEvent {
    pub id: Uuid,
    pub plugin_id: Uuid,
    pub merchant_id: Uuid,
    pub event_id: String,
    pub event_type: Option<String>,
    pub event_category: Option<String>,
    pub source_event_type: String,
    #[schema(value_type = serde_json::Value)]
    pub payload: Json<Value>,
    #[schema(value_type = Option<serde_json::Value>)]
    pub normalized_payload: Option<Json<Value>>,
    pub source_platform: String,
    pub received_at: DateTime<Utc>,
    pub processing_status: String,
    pub mapping: Option<String>,
    pub failure_code: Option<String>,
    pub failure_reason: Option<String>,
}

#[derive(Clone, Debug, Default)]
pub struct InteropFilter {
    pub event_category: Option<String>,
    pub event_type: Option<String>,
    pub source_platform: Option<String>,
    pub processing_status: Option<String>,
    pub plugin_id: Option<Uuid>,
    pub since: Option<DateTime<Utc>>,
    pub limit: i64,
    pub offset: i64,
}

#[derive(Clone, Debug, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct CategoryCount {
    pub event_category: String,
    pub count: i64,
}

#[derive(Clone, Debug, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct PlatformCount {
    pub source_platform: String,
    pub count: i64,
}

/// Seed 001's interop stats, exactly its fields.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct InteropStats {
    pub total_events: i64,
    pub processed: i64,
    pub failed: i64,
    /// Processed events (counted in `processed` too) whose forward to a subscriber is still
    /// waiting in the outbox: normalized, not yet delivered.
    pub pending: i64,
    pub unique_plugins: i64,
    pub platforms: i64,
    pub success_rate: f64,
    pub by_category: Vec<CategoryCount>,
    pub by_platform: Vec<PlatformCount>,
}

/// A mapping kept in the store.
#[derive(Clone, Debug, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct StoredMapping {
    pub id: Uuid,
    pub source_platform: String,
    pub source_event_type: String,
    pub normalized_event_type: String,
    #[schema(value_type = serde_json::Value)]
    pub field_mappings: Json<Value>,
    #[serde(skip)]
    #[schema(value_type = serde_json::Value)]
    pub spec: Json<Value>,
    pub is_active: bool,
    pub created_by: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const EVENT_COLUMNS: &str = "id, installation_id AS plugin_id, merchant_id, event_id, event_type, \
     event_category, source_event_type, payload, normalized_payload, source_platform, received_at, \
     processing_status, mapping, failure_code, failure_reason";

const MAPPING_COLUMNS: &str = "id, source_platform, source_event_type, normalized_event_type, \
     field_mappings, spec, is_active, created_by, created_at, updated_at";

impl Store {
    pub async fn list_interop_events(
        &self,
        filter: &InteropFilter,
    ) -> Result<Vec<StoredInteropEvent>, StoreError> {
        Ok(
            on_pool!(self, pool => sqlx::query_as::<_, StoredInteropEvent>(&format!(
            "SELECT {EVENT_COLUMNS} FROM plugin_interop_events \
             WHERE ($1 IS NULL OR event_category = $1) AND ($2 IS NULL OR event_type = $2) \
               AND ($3 IS NULL OR source_platform = $3) AND ($4 IS NULL OR processing_status = $4) \
               AND ($5 IS NULL OR installation_id = $5) AND ($6 IS NULL OR received_at >= $6) \
             ORDER BY received_at DESC, id DESC LIMIT $7 OFFSET $8"
        ))
        .bind(&filter.event_category)
        .bind(&filter.event_type)
        .bind(&filter.source_platform)
        .bind(&filter.processing_status)
        .bind(filter.plugin_id)
        .bind(filter.since)
        .bind(filter.limit)
        .bind(filter.offset)
        .fetch_all(pool)
        .await?),
        )
    }

    /// Forwards of normalized interop events still waiting in the outbox (not delivered,
    /// not dead): the backlog `InteropProcessingBacklog` watches.
    pub async fn interop_forwards_pending(&self) -> Result<i64, StoreError> {
        Ok(on_pool!(self, pool => sqlx::query_scalar(
            "SELECT COUNT(*) FROM outbox_messages WHERE status = 'pending' AND source_type = 'interop_event'",
        )
        .fetch_one(pool)
        .await?))
    }

    /// Seed 001's stats over the events received since `since`; `success_rate` is
    /// processed ÷ total, in percent with one decimal.
    pub async fn interop_stats(&self, since: DateTime<Utc>) -> Result<InteropStats, StoreError> {
        let stats = on_pool!(self, pool => {
            let (total, processed, failed, pending, plugins, platforms): (i64, i64, i64, i64, i64, i64) =
                sqlx::query_as(
                    "SELECT COUNT(*), \
                            COALESCE(SUM(CASE WHEN processing_status = 'processed' THEN 1 ELSE 0 END), 0), \
                            COALESCE(SUM(CASE WHEN processing_status = 'failed' THEN 1 ELSE 0 END), 0), \
                            COALESCE(SUM(CASE WHEN processing_status = 'processed' AND EXISTS ( \
                                SELECT 1 FROM outbox_messages o WHERE o.source_type = 'interop_event' \
                                  AND o.source_id = e.event_id AND o.status = 'pending') \
                              THEN 1 ELSE 0 END), 0), \
                            COUNT(DISTINCT installation_id), COUNT(DISTINCT source_platform) \
                     FROM plugin_interop_events e WHERE received_at >= $1",
                )
                .bind(since)
                .fetch_one(pool)
                .await?;
            let by_category = sqlx::query_as::<_, CategoryCount>(
                "SELECT event_category, COUNT(*) AS count FROM plugin_interop_events \
                 WHERE received_at >= $1 AND event_category IS NOT NULL \
                 GROUP BY event_category ORDER BY count DESC, event_category",
            )
            .bind(since)
            .fetch_all(pool)
            .await?;
            let by_platform = sqlx::query_as::<_, PlatformCount>(
                "SELECT source_platform, COUNT(*) AS count FROM plugin_interop_events \
                 WHERE received_at >= $1 GROUP BY source_platform ORDER BY count DESC, source_platform",
            )
            .bind(since)
            .fetch_all(pool)
            .await?;
            InteropStats {
                total_events: total,
                processed,
                failed,
                pending,
                unique_plugins: plugins,
                platforms,
                success_rate: if total == 0 {
                    0.0
                } else {
                    (processed as f64 * 1000.0 / total as f64).round() / 10.0
                },
                by_category,
                by_platform,
            }
        });
        Ok(stats)
    }

    /// Creates or replaces the mapping of (platform, source event); audited. The flag
    /// says whether it was created (rather than replaced).
    pub async fn upsert_mapping(
        &self,
        spec: &engine::MappingSpec,
        is_active: bool,
        audit: &AuditContext,
        now: DateTime<Utc>,
    ) -> Result<(StoredMapping, bool), StoreError> {
        let id = Uuid::now_v7();
        let spec_json = serde_json::to_value(spec).expect("a mapping spec serializes");
        let mut transaction = self.begin().await?;
        let tx = &mut transaction.tx();
        let upsert = format!(
            "INSERT INTO interop_event_mappings (id, source_platform, source_event_type, \
               normalized_event_type, field_mappings, spec, is_active, created_by, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9) \
             ON CONFLICT (source_platform, source_event_type) DO UPDATE SET \
               normalized_event_type = excluded.normalized_event_type, \
               field_mappings = excluded.field_mappings, spec = excluded.spec, \
               is_active = excluded.is_active, updated_at = excluded.updated_at \
             RETURNING {MAPPING_COLUMNS}"
        );
        let mapping = on_tx!(tx, c => sqlx::query_as::<_, StoredMapping>(&upsert)
            .bind(id)
            .bind(&spec.source_platform)
            .bind(&spec.source_event_type)
            .bind(&spec.normalized_event_type)
            .bind(Json(&spec.field_mappings))
            .bind(Json(&spec_json))
            .bind(is_active)
            .bind(audit.actor_id)
            .bind(now)
            .fetch_one(c)
            .await)?;
        insert_audit(
            tx,
            audit,
            "interop.mapping_upsert",
            "interop_mapping",
            Some(mapping.id.to_string()),
            json!({"spec": spec_json, "is_active": is_active}),
            now,
        )
        .await?;
        transaction.commit().await?;
        let created = mapping.id == id;
        Ok((mapping, created))
    }

    pub async fn list_mappings(
        &self,
        source_platform: Option<&str>,
    ) -> Result<Vec<StoredMapping>, StoreError> {
        Ok(
            on_pool!(self, pool => sqlx::query_as::<_, StoredMapping>(&format!(
            "SELECT {MAPPING_COLUMNS} FROM interop_event_mappings \
             WHERE ($1 IS NULL OR source_platform = $1) ORDER BY source_platform, source_event_type"
        ))
        .bind(source_platform)
        .fetch_all(pool)
        .await?),
        )
    }
}

/// Interop events by platform, category and processing status, over all time (for the
/// Prometheus exposition).
#[derive(Clone, Debug, Default)]
pub struct InteropCounts {
    pub by_platform: Vec<(String, i64)>,
    pub by_category: Vec<(String, i64)>,
    pub by_status: Vec<(String, i64)>,
}

impl Store {
    pub async fn interop_counts(&self) -> Result<InteropCounts, StoreError> {
        let counts = on_pool!(self, pool => {
            let grouped = |sql: &'static str| sqlx::query_as::<_, (String, i64)>(sql).fetch_all(pool);
            InteropCounts {
                by_platform: grouped(
                    "SELECT source_platform, COUNT(*) FROM plugin_interop_events GROUP BY source_platform ORDER BY source_platform",
                )
                .await?,
                by_category: grouped(
                    "SELECT event_category, COUNT(*) FROM plugin_interop_events \
                     WHERE event_category IS NOT NULL GROUP BY event_category ORDER BY event_category",
                )
                .await?,
                by_status: grouped(
                    "SELECT processing_status, COUNT(*) FROM plugin_interop_events GROUP BY processing_status ORDER BY processing_status",
                )
                .await?,
            }
        });
        Ok(counts)
    }
}

/// Interop events are group committed with the telemetry: one statement for a batch's
/// events, once per (merchant, CloudEvents id); a redelivery — of an event stored before,
/// or twice in one batch — answers with the row stored the first time. The forwards of an
/// event are written only with the event.
impl Batched for InteropRecord {
    type Outcome = InteropOutcome;
    const ORDER: u8 = 2;

    /// Stores the batch's interop events, one statement for them all, once per
    /// (merchant, CloudEvents id): a redelivery — of an event stored before, or
    /// twice in one batch — answers with the row stored the first time. The
    /// forwards of an event are written only with the event.
    async fn write_all(
        tx: &mut Tx<'_>,
        records: &[(&Self, DateTime<Utc>)],
        _commits_itself: bool,
    ) -> Result<Vec<InteropOutcome>, sqlx::Error> {
        if records.is_empty() {
            return Ok(Vec::new());
        }
        let mut first: HashMap<(Uuid, &str), usize> = HashMap::new();
        for (index, (record, _)) in records.iter().enumerate() {
            first
                .entry((record.merchant_id, record.event_id.as_str()))
                .or_insert(index);
        }
        let ids: Vec<Uuid> = records.iter().map(|_| Uuid::now_v7()).collect();
        let mut candidates: Vec<usize> = first.values().copied().collect();
        candidates.sort_unstable();
        let inserted: HashSet<Uuid> = on_tx!(tx, connection, Db => {
            let mut insert = QueryBuilder::<Db>::new(
                "INSERT INTO plugin_interop_events (id, installation_id, merchant_id, event_id, \
                   source_platform, source_event_type, event_type, event_category, payload, \
                   normalized_payload, cloud_event, mapping, processing_status, failure_code, \
                   failure_reason, received_at) ",
            );
            insert.push_values(&candidates, |mut row, &index| {
                let (record, now) = records[index];
                row.push_bind(ids[index])
                    .push_bind(record.installation_id)
                    .push_bind(record.merchant_id)
                    .push_bind(&record.event_id)
                    .push_bind(&record.source_platform)
                    .push_bind(&record.source_event_type)
                    .push_bind(record.event_type.as_deref())
                    .push_bind(record.event_category.as_deref())
                    .push_bind(Json(&record.payload))
                    .push_bind(record.normalized_payload.as_ref().map(Json))
                    .push_bind(record.cloud_event.as_ref().map(Json))
                    .push_bind(record.mapping.as_deref())
                    .push_bind(record.processing_status)
                    .push_bind(record.failure_code.as_deref())
                    .push_bind(record.failure_reason.as_deref())
                    .push_bind(now);
            });
            insert.push(" ON CONFLICT (merchant_id, event_id) DO NOTHING RETURNING id");
            insert.build_query_scalar().fetch_all(connection).await
        })?
        .into_iter()
        .collect();
        let mut outcomes = Vec::with_capacity(records.len());
        for (index, (record, now)) in records.iter().enumerate() {
            let stored = first[&(record.merchant_id, record.event_id.as_str())];
            if inserted.contains(&ids[stored]) {
                if stored == index {
                    for message in &record.forwards {
                        insert_outbox(tx, message, Uuid::now_v7(), *now).await?;
                    }
                }
                outcomes.push(InteropOutcome {
                    id: ids[stored],
                    duplicate: stored != index,
                });
                continue;
            }
            let id = on_tx!(tx, c => sqlx::query_scalar(
                "SELECT id FROM plugin_interop_events WHERE merchant_id = $1 AND event_id = $2",
            )
            .bind(record.merchant_id)
            .bind(&record.event_id)
            .fetch_one(c)
            .await)?;
            outcomes.push(InteropOutcome {
                id,
                duplicate: true,
            });
        }
        write_error_occurrences(tx, records, &outcomes).await?;
        Ok(outcomes)
    }
}

/// Groups the batch's `plugin.error` events, stored the first time (a redelivery is not
/// another occurrence), in the batch's transaction. The error is the normalized data's
/// `message` (a string; an event without one is not grouped) and its `stack_trace`, if any.
async fn write_error_occurrences(
    tx: &mut Tx<'_>,
    records: &[(&InteropRecord, DateTime<Utc>)],
    outcomes: &[InteropOutcome],
) -> Result<(), sqlx::Error> {
    fn text<'a>(data: &'a Value, field: &str) -> Option<&'a str> {
        data.get(field)
            .and_then(Value::as_str)
            .filter(|text| !text.trim().is_empty())
    }
    let occurrences: Vec<Occurrence> = records
        .iter()
        .zip(outcomes)
        .filter(|((record, _), outcome)| {
            !outcome.duplicate && record.event_type.as_deref() == Some("plugin.error")
        })
        .filter_map(|((record, now), outcome)| {
            let data = record.normalized_payload.as_ref()?;
            Some(Occurrence {
                source: OccurrenceSource::Interop,
                source_id: outcome.id,
                installation_id: Some(record.installation_id),
                merchant_id: Some(record.merchant_id),
                cms: Some(&record.source_platform),
                message: text(data, "message")?,
                stack_trace: text(data, "stack_trace"),
                received_at: *now,
            })
        })
        .collect();
    record_occurrences(tx, &occurrences).await
}
