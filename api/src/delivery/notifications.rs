//! Upgrade notifications (seed 000): the priority and channels from the semver distance and
//! the security flag, the seed's email template, and the message each channel sends through
//! the outbox.

use super::{NewNotification, NewOutboxMessage, NotificationTarget};
use crate::db::{Store, StoreError};
use serde_json::json;
use std::collections::HashSet;
use std::sync::RwLock;
use std::time::{Duration, Instant};

/// Which installations have in-app notices waiting, so a heartbeat asks the store for them
/// only when there are some (most never do). Re-read every `max_age`, so a notice created
/// through another replica shows in the heartbeats within that time; one created here at once.
pub struct PendingNotices {
    max_age: Duration,
    known: RwLock<Option<(Instant, HashSet<uuid::Uuid>)>>,
}

impl PendingNotices {
    pub fn new(max_age: Duration) -> Self {
        Self {
            max_age,
            known: RwLock::default(),
        }
    }

    pub async fn may_have(&self, store: &Store, install: uuid::Uuid) -> Result<bool, StoreError> {
        if let Some((at, set)) = self.known.read().expect("pending notices").as_ref() {
            if at.elapsed() < self.max_age {
                return Ok(set.contains(&install));
            }
        }
        let set: HashSet<uuid::Uuid> = store
            .installs_with_pending_in_app()
            .await?
            .into_iter()
            .collect();
        let has = set.contains(&install);
        *self.known.write().expect("pending notices") = Some((Instant::now(), set));
        Ok(has)
    }

    /// A notice was just created here for `install`.
    pub fn add(&self, install: uuid::Uuid) {
        if let Some((_, set)) = self.known.write().expect("pending notices").as_mut() {
            set.insert(install);
        }
    }
}

/// Settings of the notification channels; each has a `serve` flag.
#[derive(Clone, Debug)]
pub struct NotificationConfig {
    /// The same version is not sent again to the same install on the same channel within
    /// this time.
    pub quiet_period: chrono::Duration,
    /// Where the upgrade link points: `{base}/{plugin_id}`.
    pub upgrade_url_base: String,
    /// An incoming-webhook URL (Slack or compatible) for Ops' channel.
    pub slack_webhook_url: Option<String>,
    /// The SMS provider's HTTP endpoint: receives `{"to", "message"}`.
    pub sms_provider_url: Option<String>,
    /// `From:` of the emails.
    pub email_from: String,
    /// How long the set of installs with in-app notices waiting is trusted without reading
    /// it again (a notice sent through another replica shows within this time).
    pub pending_notices_max_age: Duration,
}

impl NotificationConfig {
    /// The upgrade link of an install's notices.
    pub fn upgrade_url(&self, installation_id: uuid::Uuid) -> String {
        format!(
            "{}/{installation_id}",
            self.upgrade_url_base.trim_end_matches('/')
        )
    }
}

impl Default for NotificationConfig {
    fn default() -> Self {
        Self {
            quiet_period: chrono::Duration::days(7),
            upgrade_url_base: "https://dashboard.molam.com/plugins/upgrade".into(),
            slack_webhook_url: None,
            sms_provider_url: None,
            email_from: "Molam Team <noreply@molam.com>".into(),
            pending_notices_max_age: Duration::from_secs(5),
        }
    }
}

/// The channels of the API.
pub const CHANNELS: [&str; 5] = ["email", "in-app", "webhook", "sms", "slack"];

/// The channel named `name`, or a 422 listing them.
pub fn channel(name: &str) -> Result<&'static str, crate::error::ApiError> {
    CHANNELS.into_iter().find(|c| *c == name).ok_or_else(|| {
        crate::error::ApiError::invalid(
            "channel",
            format!("must be one of {}", CHANNELS.join(", ")),
        )
    })
}

/// Seed 000's table: patch → in-app, low; minor → email + in-app, normal; major → email +
/// in-app, high; a security release → email + SMS, critical, whatever the distance.
pub fn priority(
    current: &semver::Version,
    target: &semver::Version,
    security: bool,
) -> (&'static str, &'static [&'static str]) {
    if security {
        ("critical", &["email", "sms"])
    } else if target.major != current.major {
        ("high", &["email", "in-app"])
    } else if target.minor != current.minor {
        ("normal", &["email", "in-app"])
    } else {
        ("low", &["in-app"])
    }
}

fn platform_name(cms: &str) -> &str {
    match cms {
        "woocommerce" => "WooCommerce",
        "prestashop" => "PrestaShop",
        "shopify" => "Shopify",
        "magento" => "Magento",
        _ => "your site",
    }
}

/// What a notice says, whatever carries it.
pub struct Notice<'a> {
    pub target: &'a NotificationTarget,
    pub latest_version: &'a str,
    pub release_notes: &'a str,
    pub priority: &'static str,
    pub security: bool,
    pub upgrade_url: String,
}

impl Notice<'_> {
    /// The seed's email template, filled in.
    pub fn email(&self) -> (String, String) {
        let platform = platform_name(&self.target.cms);
        let subject = format!(
            "Molam Form {platform} Update Available (v{})",
            self.latest_version
        );
        let notes: String = self
            .release_notes
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty())
            .map(|line| format!("- {}\n", line.trim_start_matches(['-', '*', ' '])))
            .collect();
        let body =
            format!(
            "Hi {name},\n\nA new version of the Molam Form plugin for {platform} is available.\n\n\
             Current Version: {current}\nLatest Version: {latest}\n\nWhat's New:\n{notes}\n\
             Upgrade Priority: {priority}\n\n[Upgrade Now] → {url}\n\nBest regards,\nMolam Team\n",
            name = self.target.merchant_name,
            current = self.target.plugin_version,
            latest = self.latest_version,
            notes = if notes.is_empty() { "- See the release notes\n".into() } else { notes },
            priority = self.priority.to_uppercase(),
            url = self.upgrade_url,
        );
        (subject, body)
    }

    /// The notice on `channel`, or why that channel cannot reach this merchant.
    pub fn on(
        &self,
        channel: &'static str,
        config: &NotificationConfig,
        automatic: bool,
    ) -> Result<NewNotification, String> {
        let (subject, body) = self.email();
        let short = format!(
            "Molam Form {} {} is available (you run {}). Priority: {}. {}",
            platform_name(&self.target.cms),
            self.latest_version,
            self.target.plugin_version,
            self.priority,
            self.upgrade_url
        );
        let message = |channel: &'static str, destination: String, payload| NewOutboxMessage {
            channel,
            destination,
            payload,
            source_type: "upgrade_notification",
            source_id: Some(self.target.installation_id.to_string()),
        };
        let delivery = match channel {
            "in-app" => None,
            "email" => Some(message(
                "email",
                self.target.email.clone(),
                json!({"from": config.email_from, "to": self.target.email, "subject": subject, "body": body}),
            )),
            "webhook" => {
                let url = self
                    .target
                    .webhook_url
                    .clone()
                    .ok_or("the merchant has no webhook URL")?;
                Some(message(
                    "webhook",
                    url,
                    json!({
                        "type": "plugin.upgrade_available",
                        "plugin_id": self.target.installation_id,
                        "cms": self.target.cms,
                        "current_version": self.target.plugin_version,
                        "latest_version": self.latest_version,
                        "priority": self.priority,
                        "security": self.security,
                        "release_notes": self.release_notes,
                        "upgrade_url": self.upgrade_url,
                    }),
                ))
            }
            "sms" => {
                let phone = self
                    .target
                    .phone
                    .clone()
                    .ok_or("the merchant has no phone number")?;
                let url = config
                    .sms_provider_url
                    .clone()
                    .ok_or("no SMS provider is configured (--sms-provider-url)")?;
                Some(message("sms", url, json!({"to": phone, "message": short})))
            }
            "slack" => {
                let url = config
                    .slack_webhook_url
                    .clone()
                    .ok_or("no Slack webhook is configured (--slack-webhook-url)")?;
                Some(message(
                    "slack",
                    url,
                    json!({"text": format!("{} — {} ({})", short, self.target.merchant_name, self.target.installation_id)}),
                ))
            }
            other => return Err(format!("unknown channel {other}")),
        };
        Ok(NewNotification {
            channel,
            priority: self.priority,
            current_version: self.target.plugin_version.clone(),
            target_version: self.latest_version.to_owned(),
            security: self.security,
            subject,
            body,
            automatic,
            delivery,
        })
    }
}
