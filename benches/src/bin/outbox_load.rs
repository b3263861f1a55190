//! Outbound delivery (issue 6): notifications delivered per second through the outbox
//! (durable rows in SQLite, leased, sent, recorded) to a local webhook receiver, against the
//! same messages sent directly with the same HTTP client and concurrency, in the same run;
//! and the time from a destination's recovery to its circuit breaker closing.
//!
//! `cargo run --release -p benches --bin outbox_load` (bounded: a few thousand messages to a
//! receiver on loopback).

use api::db::{Store, StoreOptions};
use api::delivery::outbox::BreakerState;
use api::delivery::{NewOutboxMessage, Outbox, OutboxConfig};
use api::tasks::Tasks;
use api::{AppState, Clock};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const MESSAGES: usize = 4_000;

/// A receiver that answers 200, or 503 while `failing` is set, and counts what it got.
async fn receiver(failing: Arc<AtomicBool>, received: Arc<AtomicU64>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let app = axum::Router::new().fallback(move || {
        let (failing, received) = (failing.clone(), received.clone());
        async move {
            received.fetch_add(1, Ordering::Relaxed);
            if failing.load(Ordering::Relaxed) {
                axum::http::StatusCode::SERVICE_UNAVAILABLE
            } else {
                axum::http::StatusCode::OK
            }
        }
    });
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

fn payload(i: usize) -> serde_json::Value {
    serde_json::json!({"type": "plugin.upgrade_available", "plugin_id": i, "latest_version": "1.3.5",
                       "priority": "normal", "upgrade_url": "https://dashboard.example/plugins/upgrade/x"})
}

async fn app_state(config: OutboxConfig, dir: &std::path::Path) -> AppState {
    let url = format!("sqlite://{}", dir.join("bench.db").display());
    let store = Store::connect(&url, &StoreOptions::default())
        .await
        .unwrap();
    store.migrate().await.unwrap();
    AppState::builder(store, Clock::system())
        .outbox(Outbox::try_new(config).unwrap())
        .build()
}

#[tokio::main]
async fn main() {
    let failing = Arc::new(AtomicBool::new(false));
    let received = Arc::new(AtomicU64::new(0));
    let url = receiver(failing.clone(), received.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let config = OutboxConfig {
        batch: 64,
        ..OutboxConfig::default()
    };
    let state = app_state(config.clone(), dir.path()).await;
    let messages: Vec<NewOutboxMessage> = (0..MESSAGES)
        .map(|i| NewOutboxMessage {
            channel: "webhook",
            destination: url.clone(),
            payload: payload(i),
            source_type: "bench",
            source_id: None,
        })
        .collect();

    for round in 1..=3 {
        // Through the outbox: written durably (one transaction per message, as a
        // notification's is), then delivered by rounds of 64 concurrent sends.
        let started = Instant::now();
        for message in &messages {
            state
                .store
                .enqueue(std::slice::from_ref(message), state.clock.now())
                .await
                .unwrap();
        }
        let written = started.elapsed();
        let mut delivered = 0;
        while delivered < MESSAGES {
            delivered += state.delivery.deliver_due().await.unwrap().delivered;
        }
        let outbox = started.elapsed();

        // Directly: the same bodies, the same client settings, 64 at a time, nothing stored.
        let client = reqwest::Client::builder()
            .timeout(config.request_timeout)
            .build()
            .unwrap();
        let started = Instant::now();
        for chunk in messages.chunks(64) {
            let sends = chunk.iter().map(|m| {
                let body = serde_json::to_vec(&m.payload).unwrap();
                client
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
            });
            for response in futures_util::future::join_all(sends).await {
                assert!(response.unwrap().status().is_success());
            }
        }
        let direct = started.elapsed();
        let rate = |d: Duration| MESSAGES as f64 / d.as_secs_f64();
        let sending = outbox - written;
        println!(
            "round {round}: outbox {:.0} msg/s end to end ({:.2?}: durable writes {:.2?}, delivery {:.2?} = {:.0} msg/s); \
             direct {:.0} msg/s ({:.2?}); outbox/direct time {:.1}x, delivery alone {:.1}x",
            rate(outbox), outbox, written, sending, rate(sending), rate(direct), direct,
            outbox.as_secs_f64() / direct.as_secs_f64(), sending.as_secs_f64() / direct.as_secs_f64()
        );
    }

    // Recovery to close: the breaker (threshold 5, cool-down 1 s) is open; the destination
    // recovers; how long until the breaker is closed again, with the delivery loop polling
    // every 50 ms.
    let config = OutboxConfig {
        breaker_threshold: 5,
        breaker_cooldown: chrono::Duration::seconds(1),
        backoff_base: chrono::Duration::milliseconds(50),
        ..OutboxConfig::default()
    };
    let breaker_dir = tempfile::tempdir().unwrap();
    let state = app_state(config, breaker_dir.path()).await;
    let mut delivery = Tasks::default();
    let sender = state.delivery.clone();
    delivery.spawn_every("outbox_delivery", Duration::from_millis(50), move || {
        let sender = sender.clone();
        async move { sender.deliver_all_due().await }
    });
    for trial in 1..=3 {
        failing.store(true, Ordering::Relaxed);
        for message in messages.iter().take(20) {
            state
                .store
                .enqueue(std::slice::from_ref(message), state.clock.now())
                .await
                .unwrap();
        }
        while !state
            .outbox
            .breakers()
            .iter()
            .any(|b| b.state == BreakerState::Open)
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        failing.store(false, Ordering::Relaxed);
        let recovered = Instant::now();
        while state
            .outbox
            .breakers()
            .iter()
            .any(|b| b.state != BreakerState::Closed)
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        println!(
            "breaker trial {trial}: recovery → closed in {:.0?} (cool-down 1 s, poll 50 ms)",
            recovered.elapsed()
        );
        while state.store.outbox_counts().await.unwrap().pending > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
