//! The platform log's writer: one task per replica takes entries from the buffer, up to
//! `batch_entries` or whatever came within `linger` of the first, fills in the merchants'
//! slugs, inserts the batch in one statement and then publishes its entries to the live
//! stream. Asked to stop, it writes what the buffer still holds first.

use super::{slug, LogEntry, Shared};
use crate::db::Store;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use uuid::Uuid;

/// Merchants whose slug the writer keeps before it starts over.
const SLUGS_CACHED: usize = 10_000;

pub(super) struct Writer {
    pub(super) store: Store,
    pub(super) shared: Arc<Shared>,
    pub(super) batch_entries: usize,
    pub(super) linger: Duration,
}

impl Writer {
    pub(super) async fn run(self, mut entries: mpsc::Receiver<LogEntry>) {
        // A merchant's slug is read once, then kept (a merchant's name does not change).
        let mut slugs: HashMap<Uuid, Option<String>> = HashMap::new();
        loop {
            let first = tokio::select! {
                entry = entries.recv() => match entry {
                    Some(entry) => entry,
                    None => return,
                },
                () = self.shared.stop_writer.notified() => break,
            };
            let mut batch = vec![first];
            let linger_ends = tokio::time::Instant::now() + self.linger;
            while batch.len() < self.batch_entries {
                match tokio::time::timeout_at(linger_ends, entries.recv()).await {
                    Ok(Some(entry)) => batch.push(entry),
                    Ok(None) | Err(_) => break,
                }
            }
            self.write(batch, &mut slugs).await;
        }
        // Stopping: no entry is taken any more; what was taken is written.
        entries.close();
        let mut batch = Vec::new();
        while let Some(entry) = entries.recv().await {
            batch.push(entry);
            if batch.len() == self.batch_entries {
                self.write(std::mem::take(&mut batch), &mut slugs).await;
            }
        }
        if !batch.is_empty() {
            self.write(batch, &mut slugs).await;
        }
    }

    async fn write(&self, mut batch: Vec<LogEntry>, slugs: &mut HashMap<Uuid, Option<String>>) {
        let mut unknown: Vec<Uuid> = batch
            .iter()
            .filter_map(|entry| entry.tenant_id)
            .filter(|id| !slugs.contains_key(id))
            .collect();
        unknown.sort_unstable();
        unknown.dedup();
        let written = async {
            if !unknown.is_empty() {
                if slugs.len() + unknown.len() > SLUGS_CACHED {
                    slugs.clear();
                }
                let names = self.store.merchant_names(&unknown).await?;
                for id in unknown {
                    slugs.insert(id, names.get(&id).map(|name| slug(name)));
                }
            }
            for entry in &mut batch {
                entry.tenant_slug = entry
                    .tenant_id
                    .and_then(|id| slugs.get(&id).cloned().flatten());
            }
            self.store.insert_platform_logs(&batch).await
        };
        match written.await {
            Ok(()) => {
                self.shared
                    .written
                    .fetch_add(batch.len() as u64, Ordering::Relaxed);
                for entry in batch {
                    // No subscriber is no error: nobody is watching.
                    let _ = self.shared.published.send(Arc::new(entry));
                }
            }
            Err(error) => {
                tracing::warn!(event = "platform_logs_write_failed", entries = batch.len(), error = %error,
                    "a batch of platform log entries could not be stored; it is dropped");
                self.shared
                    .dropped
                    .write_failed
                    .fetch_add(batch.len() as u64, Ordering::Relaxed);
            }
        }
    }
}
