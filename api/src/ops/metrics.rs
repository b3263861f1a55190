//! `GET /metrics`: the Prometheus text exposition of the fleet (seed 000's series), the
//! healing loop and the interop layer (seed 001's), outbound delivery (seed 003's) and the
//! patch registry. Aggregates only: no tenant, install
//! or secret appears in a label, so a scraper on the internal network needs no token.

use super::Service;
use crate::db::StoreError;
use crate::delivery::OutboxCounts;
use crate::fleet::Overview;
use crate::healing::{HealingCounts, HealingStatus};
use crate::interop::InteropCounts;
use std::fmt::Write;
use std::sync::Arc;

/// What `/metrics` reads from the store: a snapshot the refresher replaces every
/// `--metrics-refresh-ms`, so a scrape never passes over the fleet.
pub struct StoreFigures {
    healing: HealingCounts,
    interop: InteropCounts,
    overview: Overview,
    outbox: OutboxCounts,
}

/// Label values are escaped as the exposition format requires.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

impl Service {
    /// Reads the store's figures anew, the fleet's error rates first (the refresher's step).
    pub async fn refresh_figures(&self) -> Result<(), StoreError> {
        self.fleet.refresh_rates().await?;
        self.figures
            .refresh(|| self.store_figures())
            .await
            .map(drop)
    }

    async fn store_figures(&self) -> Result<StoreFigures, StoreError> {
        let rates = *self.fleet.rates().await?;
        Ok(StoreFigures {
            healing: self.store.healing_counts().await?,
            interop: self.store.interop_counts().await?,
            overview: self.store.overview(rates, self.clock.now()).await?,
            outbox: self.store.outbox_counts().await?,
        })
    }

    /// The exposition, in Prometheus' text format.
    pub async fn metrics(&self) -> Result<String, StoreError> {
        let figures: Arc<StoreFigures> = self.figures.get(|| self.store_figures()).await?;
        let StoreFigures {
            healing,
            interop,
            overview,
            outbox,
        } = &*figures;
        let mut out = String::with_capacity(4096);

        family(
            &mut out,
            "plugin_autoheal_patches_total",
            "gauge",
            "Healing logs by status.",
        );
        for status in HealingStatus::ALL {
            let count = healing
                .by_status
                .iter()
                .find(|(s, _)| s == status.as_str())
                .map_or(0, |(_, n)| *n);
            let _ = writeln!(
                out,
                "plugin_autoheal_patches_total{{status=\"{}\"}} {count}",
                status.as_str()
            );
        }
        family(
            &mut out,
            "plugin_autoheal_avg_confidence",
            "gauge",
            "Mean Sira confidence of all detections, in percent.",
        );
        let _ = writeln!(
            out,
            "plugin_autoheal_avg_confidence {:.2}",
            healing.avg_confidence
        );

        family(
            &mut out,
            "plugin_interop_events_total",
            "gauge",
            "Interop events stored, by platform, category and processing status.",
        );
        for (platform, n) in &interop.by_platform {
            let _ = writeln!(
                out,
                "plugin_interop_events_total{{platform=\"{}\"}} {n}",
                label(platform)
            );
        }
        for (category, n) in &interop.by_category {
            let _ = writeln!(
                out,
                "plugin_interop_events_total{{category=\"{}\"}} {n}",
                label(category)
            );
        }
        for (status, n) in &interop.by_status {
            let _ = writeln!(
                out,
                "plugin_interop_events_total{{processing_status=\"{}\"}} {n}",
                label(status)
            );
        }
        let total: i64 = interop.by_status.iter().map(|(_, n)| n).sum();
        let processed = interop
            .by_status
            .iter()
            .find(|(s, _)| s == "processed")
            .map_or(0, |(_, n)| *n);
        family(
            &mut out,
            "plugin_interop_success_rate",
            "gauge",
            "Processed interop events, in percent of all.",
        );
        let rate = if total == 0 {
            100.0
        } else {
            processed as f64 * 100.0 / total as f64
        };
        let _ = writeln!(out, "plugin_interop_success_rate {rate:.2}");

        family(
            &mut out,
            "plugin_installations_total",
            "gauge",
            "Plugin installations by platform.",
        );
        for cms in &overview.cms_breakdown {
            let _ = writeln!(
                out,
                "plugin_installations_total{{cms=\"{}\"}} {}",
                label(&cms.cms),
                cms.count
            );
        }
        let total: i64 = overview.cms_breakdown.iter().map(|c| c.count).sum();
        family(
            &mut out,
            "plugin_outdated_percentage",
            "gauge",
            "Installations below their platform's latest version, in percent.",
        );
        let outdated = if total == 0 {
            0.0
        } else {
            overview.outdated_count as f64 * 100.0 / total as f64
        };
        let _ = writeln!(out, "plugin_outdated_percentage {outdated:.2}");
        family(
            &mut out,
            "plugin_error_rate_avg",
            "gauge",
            "Mean 24 h error rate of the installations, in percent.",
        );
        let _ = writeln!(out, "plugin_error_rate_avg {:.2}", overview.avg_error_rate);
        family(
            &mut out,
            "plugin_high_error_rate_installs",
            "gauge",
            "Installations with a 24 h error rate above 5 %.",
        );
        let _ = writeln!(
            out,
            "plugin_high_error_rate_installs {}",
            overview.high_error_rate_count
        );
        self.fleet.heartbeat_latency().render(
            &mut out,
            "plugin_heartbeat_latency_seconds",
            "Time to answer a heartbeat.",
        );
        self.healing.detection_latency().render(
            &mut out,
            "plugin_autoheal_detection_seconds",
            "Time from a detection's arrival to its durable decision, snapshot and command.",
        );
        self.delivery.outbox().render_metrics(&mut out);
        self.logs.render_metrics(&mut out);
        family(
            &mut out,
            "outbox_messages",
            "gauge",
            "Outbound messages by status.",
        );
        for (status, n) in [
            ("pending", outbox.pending),
            ("delivered", outbox.delivered),
            ("dead", outbox.dead),
        ] {
            let _ = writeln!(out, "outbox_messages{{status=\"{status}\"}} {n}");
        }

        family(
            &mut out,
            "autoheal_command_certificate_expiry_timestamp_seconds",
            "gauge",
            "When the command key's certificate expires (Unix time): renew it before, or no command is handed out.",
        );
        let _ = writeln!(
            out,
            "autoheal_command_certificate_expiry_timestamp_seconds {}",
            self.healing.command_certificate_expiry().timestamp()
        );

        let registry = self.healing.registry();
        family(
            &mut out,
            "autoheal_patch_bundles",
            "gauge",
            "Patch bundles loaded and refused by the registry.",
        );
        let _ = writeln!(
            out,
            "autoheal_patch_bundles{{state=\"loaded\"}} {}",
            registry.patches.len()
        );
        let _ = writeln!(
            out,
            "autoheal_patch_bundles{{state=\"refused\"}} {}",
            registry.refused.len()
        );
        family(
            &mut out,
            "autoheal_patch_dry_runs_total",
            "counter",
            "Dry runs per patch since start.",
        );
        family(
            &mut out,
            "autoheal_patch_dry_run_failures_total",
            "counter",
            "Failed dry runs per patch and kind since start.",
        );
        family(
            &mut out,
            "autoheal_patch_dry_run_seconds_sum",
            "counter",
            "Time spent in dry runs per patch since start.",
        );
        for patch in registry.patches.iter().filter(|p| p.current) {
            let name = label(&patch.name);
            let runs = &patch.runs;
            let _ = writeln!(
                out,
                "autoheal_patch_dry_runs_total{{patch=\"{name}\"}} {}",
                runs.runs
            );
            for (kind, n) in &runs.failures_by_kind {
                let _ = writeln!(
                    out,
                    "autoheal_patch_dry_run_failures_total{{patch=\"{name}\",kind=\"{}\"}} {n}",
                    label(kind)
                );
            }
            let _ = writeln!(
                out,
                "autoheal_patch_dry_run_seconds_sum{{patch=\"{name}\"}} {:.6}",
                runs.total_micros as f64 / 1e6
            );
        }
        Ok(out)
    }
}
