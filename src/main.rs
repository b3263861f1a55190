//! `autoheal`: the control plane's one binary. `serve` runs the API; the
//! other commands manage the store and credentials from a shell.

use anyhow::{Context, Result};
use api::auth::{CredentialKind, Role};
use api::db::{Store, StoreOptions};
use api::delivery::{NotificationConfig, Outbox, OutboxConfig};
use api::flags::FlagsConfig;
use api::healing::patches::PatchRegistry;
use api::healing::{DetectorConfig, HealingConfig};
use api::interop::InteropConfig;
use api::logs::LogsConfig;
use api::ops::retention::{LogRetention, RetentionConfig};
use api::ops::{AlertChannels, JobsConfig};
use api::quotas::QuotaConfig;
use api::rules::Rules;
use api::tasks::Tasks;
use api::{AppState, Clock, ServerConfig};
use clap::{Parser, Subcommand, ValueEnum};
use serde_json::json;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use logging::LogFormat;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod credentials_cmd;
mod files;
mod flags_cmd;
mod logging;
mod patch_cmd;
mod rules_cmd;

#[derive(Parser)]
#[command(
    name = "autoheal",
    version,
    about = "Keeps a fleet of e-commerce payment plugins healthy"
)]
struct Cli {
    /// The store: sqlite://PATH (created if missing) or postgres://USER@HOST/DB.
    #[arg(
        long,
        global = true,
        env = "DATABASE_URL",
        default_value = "sqlite://autoheal.db"
    )]
    database_url: String,

    /// Log line format.
    #[arg(long, global = true, env = "AUTOHEAL_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
#[expect(clippy::large_enum_variant, reason = "parsed once per process")]
enum Command {
    /// Run the HTTP API (applies pending migrations first).
    Serve(ServeArgs),
    /// Apply pending migrations and exit.
    Migrate,
    /// Manage merchants (tenants).
    Merchant {
        #[command(subcommand)]
        command: MerchantCommand,
    },
    /// Manage Ops agents.
    OpsAgent {
        #[command(subcommand)]
        command: OpsAgentCommand,
    },
    /// Manage the tokens Sira posts detections with.
    SiraToken {
        #[command(subcommand)]
        command: SiraTokenCommand,
    },
    /// List, revoke and rotate merchant keys, Ops tokens and Sira tokens.
    Credentials {
        #[command(subcommand)]
        command: CredentialsCommand,
    },
    /// Check, explain and test Ops' rule files.
    Rules {
        #[command(subcommand)]
        command: RulesCommand,
    },
    /// Normalize a platform event with the interop mappings.
    Interop {
        #[command(subcommand)]
        command: InteropCommand,
    },
    /// Signing keys for patch bundles (kept off the server).
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Build, sign, verify and dry-run patch bundles.
    Patch {
        #[command(subcommand)]
        command: PatchCommand,
    },
    /// The conformance kit every plugin SDK runs (sdk/conformance/).
    Conformance {
        #[command(subcommand)]
        command: ConformanceCommand,
    },
    /// Evaluate feature flags from Ops' files.
    Flags {
        #[command(subcommand)]
        command: FlagsCommand,
    },
}

#[derive(Subcommand)]
enum FlagsCommand {
    /// Print the evaluation (value, variant, reason, error_code) of flag KEY
    /// for the context in FILE, from RULES/flags/*.json and their policies.
    Eval {
        key: String,
        #[arg(long)]
        context: PathBuf,
        #[arg(long, default_value = "./rules")]
        rules: PathBuf,
        /// Evaluate at this time (RFC 3339) instead of now, e.g. for a schedule.
        #[arg(long)]
        at: Option<chrono::DateTime<chrono::Utc>>,
    },
}

#[derive(Subcommand)]
enum RulesCommand {
    /// Validate every rule file; exit 1 with file:line:col messages on error. With
    /// --patches, also hold each healing rule against its patch: the patch must be among the
    /// verified bundles, and the parameters the rule gives for every case in DIR/tests must
    /// fit the patch's params_schema (a required parameter a case leaves out is reported as
    /// what Ops would be asked for, not as an error).
    Check {
        #[arg(default_value = "./rules")]
        dir: PathBuf,
        /// Folder of signed patch bundles (`*.bundle.json`).
        #[arg(long)]
        patches: Option<PathBuf>,
        /// Public key(s) the bundles must be signed by [default: the development key,
        /// ./patches/dev-key/autoheal.pub].
        #[arg(long = "trusted-key")]
        trusted_keys: Vec<PathBuf>,
    },
    /// Print the decision for a detection and the trace of every check.
    Explain {
        #[arg(long)]
        detection: PathBuf,
        #[arg(long, default_value = "./rules")]
        rules: PathBuf,
        /// Global auto-apply threshold, in percent.
        #[arg(long, default_value_t = engine::DEFAULT_GLOBAL_THRESHOLD)]
        threshold: f64,
    },
    /// Run the cases in DIR/tests; exit 1 on a mismatch, showing the difference.
    Test {
        #[arg(default_value = "./rules")]
        dir: PathBuf,
    },
    /// Decide the detections stored since --since again with the rules under --rules, and
    /// print per detection what the rules decided then and what these decide now, with a
    /// summary. Decisions only: the rule match, confidence thresholds and auto_apply of the
    /// rules; flags, breakers and dry runs are not replayed, and nothing is written.
    Replay {
        #[arg(long, default_value = "./rules")]
        rules: PathBuf,
        /// The oldest detections replayed: a duration before now (30m, 12h, 7d) or an RFC
        /// 3339 time.
        #[arg(long, default_value = api::rules::replay::DEFAULT_SINCE)]
        since: String,
        /// The most detections replayed, newest first.
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..=100_000), default_value_t = 10_000)]
        limit: u64,
        /// Global auto-apply threshold, in percent (as `serve` reads it).
        #[arg(long, env = "AUTOHEAL_AUTO_APPLY_THRESHOLD", value_parser = percent, default_value_t = HealingConfig::default().global_threshold)]
        threshold: f64,
        /// Print the report as JSON (as POST /api/v1/rules/replay answers).
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum InteropCommand {
    /// Print the normalized event (CloudEvents) for a platform event.
    Normalize {
        #[arg(long)]
        platform: String,
        #[arg(long)]
        event: String,
        #[arg(long)]
        payload: PathBuf,
        /// The shop the event comes from (part of the event's source and id).
        #[arg(long, default_value = "cli")]
        shop: String,
        #[arg(long, default_value = "./rules")]
        rules: PathBuf,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Write a key pair into DIR: the offline root (autoheal.key, mode 0600, and autoheal.pub)
    /// or the server's online command key (command.key and command.pub).
    Generate {
        #[arg(long, value_enum, default_value = "root")]
        role: KeyRoleArg,
        #[arg(long)]
        out: PathBuf,
    },
    /// Certify a command key with the root key (run where the root key lives): writes the
    /// certificate the server sends with every command.
    Certify {
        /// The root's private key (autoheal.key).
        #[arg(long)]
        root: PathBuf,
        /// The command key's public half (command.pub).
        #[arg(long)]
        command: PathBuf,
        /// How long the certificate is valid (at most 366d; renew it before then).
        #[arg(long, default_value = "30d")]
        expires_in: String,
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Subcommand)]
enum ConformanceCommand {
    /// Write every case (certificate, command, bundle, expected verdict) under DIR/cases/,
    /// replacing the cases there.
    Generate {
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum KeyRoleArg {
    Root,
    Command,
}

#[derive(Subcommand)]
enum PatchCommand {
    /// Assemble DIR/patch.wat into DIR/patch.wasm.
    Build { dir: PathBuf },
    /// Sign the patch in DIR into a bundle.
    Sign {
        dir: PathBuf,
        #[arg(long)]
        key: PathBuf,
        #[arg(long)]
        version: String,
        /// How long the bundle stays valid (e.g. 30d, 12h).
        #[arg(long, default_value = "90d")]
        expires_in: String,
        #[arg(long)]
        out: PathBuf,
    },
    /// Verify a bundle's signature, hash, size and expiry.
    Verify {
        bundle: PathBuf,
        #[arg(long = "trusted-key", required = true)]
        trusted_keys: Vec<PathBuf>,
    },
    /// Dry-run a bundle against a snapshot: prints operations and new state,
    /// or the typed failure with a non-zero exit.
    Run {
        bundle: PathBuf,
        #[arg(long = "trusted-key", required = true)]
        trusted_keys: Vec<PathBuf>,
        #[arg(long)]
        snapshot: PathBuf,
        #[arg(long)]
        params: Option<PathBuf>,
    },
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "AUTOHEAL_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Folder of Rhai rule files.
    #[arg(long, env = "AUTOHEAL_RULES", default_value = "./rules")]
    rules: PathBuf,
    /// Folder of signed patch bundles (`*.bundle.json`), verified at start and on change.
    #[arg(long, env = "AUTOHEAL_PATCHES", default_value = "./patches/bundles")]
    patches: PathBuf,
    /// Public key(s) whose signatures the server trusts (repeat for rotation). Without one,
    /// the repository's DEVELOPMENT key (./patches/dev-key/autoheal.pub) when it is there, so
    /// a fresh clone runs the shipped patches; a production deployment passes its own public
    /// key and never the private one.
    #[arg(
        long = "trusted-key",
        env = "AUTOHEAL_TRUSTED_KEYS",
        value_delimiter = ','
    )]
    trusted_keys: Vec<PathBuf>,
    /// The server's online command key (command.key), which signs every command it hands
    /// out. Without one, the repository's DEVELOPMENT command key
    /// (./patches/dev-key/command.key) when it is there (the server warns).
    #[arg(long, env = "AUTOHEAL_COMMAND_KEY", requires = "command_cert")]
    command_key: Option<PathBuf>,
    /// The root key's certificate of the command key (autoheal keys certify). Checked at
    /// start against --trusted-key; SIGHUP reads both files again (renewal, rotation).
    #[arg(long, env = "AUTOHEAL_COMMAND_CERT", requires = "command_key")]
    command_cert: Option<PathBuf>,
    /// How long a signed command stays acceptable to a plugin after it is handed out, in s.
    #[arg(long, env = "AUTOHEAL_COMMAND_TTL_SECS", value_parser = clap::value_parser!(i64).range(60..=7 * 24 * 3600), default_value_t = HealingConfig::default().command_ttl.num_seconds())]
    command_ttl_secs: i64,
    /// Mark the console's cookies `Secure`: set it when a proxy in front terminates TLS.
    #[arg(long, env = "AUTOHEAL_CONSOLE_SECURE_COOKIES")]
    console_secure_cookies: bool,
    /// A console session unused this long ends, in s.
    #[arg(long, env = "AUTOHEAL_CONSOLE_IDLE_TIMEOUT_SECS", value_parser = clap::value_parser!(u64).range(60..=24 * 3600), default_value_t = api::console::ConsoleConfig::default().idle_timeout.as_secs())]
    console_idle_timeout_secs: u64,
    /// A console session ends this long after sign-in, however busy, in s.
    #[arg(long, env = "AUTOHEAL_CONSOLE_SESSION_LIFETIME_SECS", value_parser = clap::value_parser!(u64).range(300..=7 * 24 * 3600), default_value_t = api::console::ConsoleConfig::default().absolute_lifetime.as_secs())]
    console_session_lifetime_secs: u64,
    /// How often the patches folder is checked for changes, in ms (0: never).
    #[arg(long, env = "AUTOHEAL_PATCHES_POLL_MS", default_value_t = 2_000)]
    patches_poll_ms: u64,
    /// Sira's confidence needed to auto-apply (and the rule's own minimum), in percent.
    #[arg(long, env = "AUTOHEAL_AUTO_APPLY_THRESHOLD", value_parser = percent, default_value_t = HealingConfig::default().global_threshold)]
    auto_apply_threshold: f64,
    /// How long a command handed to a plugin stays leased before it is handed out again, in s.
    #[arg(long, env = "AUTOHEAL_COMMAND_LEASE_SECS", value_parser = clap::value_parser!(i64).range(1..), default_value_t = HealingConfig::default().command_lease.num_seconds())]
    command_lease_secs: i64,
    /// Most commands one poll of a plugin hands out.
    #[arg(long, env = "AUTOHEAL_COMMANDS_PER_POLL", value_parser = clap::value_parser!(i64).range(1..=1000), default_value_t = HealingConfig::default().commands_per_poll)]
    commands_per_poll: i64,
    /// Window of the post-apply error-rate analysis (compared with the window before), in min.
    #[arg(long, env = "AUTOHEAL_REGRESSION_WINDOW_MINS", value_parser = clap::value_parser!(i64).range(1..), default_value_t = HealingConfig::default().regression_window.num_minutes())]
    regression_window_mins: i64,
    /// Rise of the error rate, in percentage points, that rolls a patch back.
    #[arg(long, env = "AUTOHEAL_REGRESSION_MARGIN", value_parser = percent, default_value_t = HealingConfig::default().regression_margin)]
    regression_margin: f64,
    /// Forward every normalized interop event as a CloudEvent to this URL (repeatable).
    #[arg(
        long = "cloudevents-webhook",
        env = "AUTOHEAL_CLOUDEVENTS_WEBHOOKS",
        value_delimiter = ','
    )]
    cloudevents_webhooks: Vec<String>,
    /// Key of the HMAC-SHA256 signature on outbound webhooks (X-Autoheal-Signature).
    #[arg(long, env = "AUTOHEAL_WEBHOOK_SECRET", hide_env_values = true)]
    webhook_secret: Option<String>,
    /// How often the outbox is checked for due messages, in ms.
    #[arg(long, env = "AUTOHEAL_DELIVERY_POLL_MS", value_parser = clap::value_parser!(u64).range(10..), default_value_t = 250)]
    delivery_poll_ms: u64,
    /// Attempts of a retryable delivery before it becomes a dead letter.
    #[arg(long, env = "AUTOHEAL_DELIVERY_MAX_ATTEMPTS", value_parser = clap::value_parser!(i32).range(1..), default_value_t = OutboxConfig::default().max_attempts)]
    delivery_max_attempts: i32,
    /// First retry delay of a failed delivery, in ms (doubling, with jitter, up to 1 h).
    #[arg(long, env = "AUTOHEAL_DELIVERY_BACKOFF_MS", value_parser = clap::value_parser!(i64).range(1..), default_value_t = OutboxConfig::default().backoff_base.num_milliseconds())]
    delivery_backoff_ms: i64,
    /// Longest a delivery attempt may take, in ms (a message is leased for twice this).
    #[arg(long, env = "AUTOHEAL_DELIVERY_TIMEOUT_MS", value_parser = clap::value_parser!(u64).range(1..), default_value_t = OutboxConfig::default().request_timeout.as_millis() as u64)]
    delivery_timeout_ms: u64,
    /// Consecutive failures that open a destination's circuit breaker.
    #[arg(long, env = "AUTOHEAL_BREAKER_THRESHOLD", value_parser = clap::value_parser!(u32).range(1..), default_value_t = OutboxConfig::default().breaker_threshold)]
    breaker_threshold: u32,
    /// How long an open breaker waits before a probe, in ms.
    #[arg(long, env = "AUTOHEAL_BREAKER_COOLDOWN_MS", value_parser = clap::value_parser!(i64).range(1..), default_value_t = OutboxConfig::default().breaker_cooldown.num_milliseconds())]
    breaker_cooldown_ms: i64,
    /// SMTP server of the email channel: smtp://[user:password@]host[:port][?tls=required]
    /// (STARTTLS) or smtps://… (implicit TLS).
    #[arg(long, env = "AUTOHEAL_SMTP_URL", hide_env_values = true)]
    smtp_url: Option<String>,
    /// A PEM CA certificate to trust for the SMTP server's TLS (a private CA).
    #[arg(long, env = "AUTOHEAL_SMTP_CA_FILE")]
    smtp_ca_file: Option<PathBuf>,
    /// `From:` of notification emails.
    #[arg(long, env = "AUTOHEAL_EMAIL_FROM", default_value_t = NotificationConfig::default().email_from)]
    email_from: String,
    /// Incoming-webhook URL (Slack or compatible) of the slack channel.
    #[arg(long, env = "AUTOHEAL_SLACK_WEBHOOK_URL", hide_env_values = true)]
    slack_webhook_url: Option<String>,
    /// HTTP endpoint of the SMS provider: receives {"to", "message"}.
    #[arg(long, env = "AUTOHEAL_SMS_PROVIDER_URL")]
    sms_provider_url: Option<String>,
    /// The same version is not notified again to an install on a channel within this, in hours.
    #[arg(long, env = "AUTOHEAL_NOTIFY_QUIET_HOURS", value_parser = clap::value_parser!(i64).range(0..), default_value_t = NotificationConfig::default().quiet_period.num_hours())]
    notify_quiet_hours: i64,
    /// Base of the upgrade link in notices (the install id is appended).
    #[arg(long, env = "AUTOHEAL_UPGRADE_URL_BASE", default_value_t = NotificationConfig::default().upgrade_url_base)]
    upgrade_url_base: String,
    /// How often the schedule of jobs is checked, in s (a job runs at its own interval).
    #[arg(long, env = "AUTOHEAL_JOBS_TICK_SECS", value_parser = clap::value_parser!(u64).range(1..), default_value_t = 60)]
    jobs_tick_secs: u64,
    /// Interval of the hourly fleet check (alerts), in s.
    #[arg(long, env = "AUTOHEAL_FLEET_CHECK_SECS", value_parser = clap::value_parser!(i64).range(1..), default_value_t = JobsConfig::default().hourly.num_seconds())]
    fleet_check_secs: i64,
    /// Interval of the daily job (health metrics, security notices), in s.
    #[arg(long, env = "AUTOHEAL_DAILY_JOB_SECS", value_parser = clap::value_parser!(i64).range(1..), default_value_t = JobsConfig::default().daily.num_seconds())]
    daily_job_secs: i64,
    /// Telemetry events of severity error and critical are kept this many days.
    #[arg(long, env = "AUTOHEAL_RETAIN_ERROR_DAYS", value_parser = clap::value_parser!(i64).range(1..=3650), default_value_t = RetentionConfig::default().error.num_days())]
    retain_error_days: i64,
    /// Telemetry events of severity warning are kept this many days.
    #[arg(long, env = "AUTOHEAL_RETAIN_WARN_DAYS", value_parser = clap::value_parser!(i64).range(1..=3650), default_value_t = RetentionConfig::default().warn.num_days())]
    retain_warn_days: i64,
    /// Telemetry events of severity info are kept this many days.
    #[arg(long, env = "AUTOHEAL_RETAIN_INFO_DAYS", value_parser = clap::value_parser!(i64).range(1..=3650), default_value_t = RetentionConfig::default().info.num_days())]
    retain_info_days: i64,
    /// Telemetry events of severity debug are kept this many days.
    #[arg(long, env = "AUTOHEAL_RETAIN_DEBUG_DAYS", value_parser = clap::value_parser!(i64).range(1..=3650), default_value_t = RetentionConfig::default().debug.num_days())]
    retain_debug_days: i64,
    /// Interop events are kept this many days.
    #[arg(long, env = "AUTOHEAL_RETAIN_INTEROP_DAYS", value_parser = clap::value_parser!(i64).range(1..=3650), default_value_t = RetentionConfig::default().interop_events.num_days())]
    retain_interop_days: i64,
    /// Health check results are kept this many days.
    #[arg(long, env = "AUTOHEAL_RETAIN_HEALTH_CHECKS_DAYS", value_parser = clap::value_parser!(i64).range(1..=3650), default_value_t = RetentionConfig::default().health_checks.num_days())]
    retain_health_checks_days: i64,
    /// Delivered outbox messages are kept this many days.
    #[arg(long, env = "AUTOHEAL_RETAIN_DELIVERED_DAYS", value_parser = clap::value_parser!(i64).range(1..=3650), default_value_t = RetentionConfig::default().delivered_messages.num_days())]
    retain_delivered_days: i64,
    /// Finished plugin commands are kept this many days after they were issued.
    #[arg(long, env = "AUTOHEAL_RETAIN_FINISHED_COMMANDS_DAYS", value_parser = clap::value_parser!(i64).range(1..=3650), default_value_t = RetentionConfig::default().finished_commands.num_days())]
    retain_finished_commands_days: i64,
    /// The hourly event rollups (error rates, trends) are kept this many days (at least as long as any event).
    #[arg(long, env = "AUTOHEAL_RETAIN_ROLLUPS_DAYS", value_parser = clap::value_parser!(i64).range(1..=3650), default_value_t = RetentionConfig::default().rollups.num_days())]
    retain_rollups_days: i64,
    /// Grouped error events (what an error group's samples, hourly counts and the detector
    /// read) are kept this many days; the groups and their counts are kept for good.
    #[arg(long, env = "AUTOHEAL_RETAIN_ERROR_OCCURRENCES_DAYS", value_parser = clap::value_parser!(i64).range(1..=3650), default_value_t = RetentionConfig::default().error_occurrences.num_days())]
    retain_error_occurrences_days: i64,
    /// Platform log entries of level error are kept this many days.
    #[arg(long, env = "AUTOHEAL_RETAIN_LOG_ERROR_DAYS", value_parser = clap::value_parser!(i64).range(1..=3650), default_value_t = LogRetention::default().error.num_days())]
    retain_log_error_days: i64,
    /// Platform log entries of level warn are kept this many days.
    #[arg(long, env = "AUTOHEAL_RETAIN_LOG_WARN_DAYS", value_parser = clap::value_parser!(i64).range(1..=3650), default_value_t = LogRetention::default().warn.num_days())]
    retain_log_warn_days: i64,
    /// Platform log entries of level info are kept this many days.
    #[arg(long, env = "AUTOHEAL_RETAIN_LOG_INFO_DAYS", value_parser = clap::value_parser!(i64).range(1..=3650), default_value_t = LogRetention::default().info.num_days())]
    retain_log_info_days: i64,
    /// Platform log entries of level debug are kept this many days.
    #[arg(long, env = "AUTOHEAL_RETAIN_LOG_DEBUG_DAYS", value_parser = clap::value_parser!(i64).range(1..=3650), default_value_t = LogRetention::default().debug.num_days())]
    retain_log_debug_days: i64,
    /// Store platform log entries of level debug (otherwise they are discarded).
    #[arg(long, env = "AUTOHEAL_LOG_STORE_DEBUG")]
    log_store_debug: bool,
    /// Platform log entries buffered for the writer; beyond it an entry is dropped and
    /// counted (platform_logs_dropped_total), never waited for.
    #[arg(long, env = "AUTOHEAL_LOG_BUFFER_ENTRIES", value_parser = clap::value_parser!(u64).range(1..=10_000_000), default_value_t = LogsConfig::default().buffer_entries as u64)]
    log_buffer_entries: u64,
    /// Most platform log entries one INSERT writes.
    #[arg(long, env = "AUTOHEAL_LOG_BATCH_ENTRIES", value_parser = clap::value_parser!(u64).range(1..=2_000), default_value_t = LogsConfig::default().batch_entries as u64)]
    log_batch_entries: u64,
    /// How long the platform log's writer waits for more entries before writing a batch
    /// that is not full, in ms.
    #[arg(long, env = "AUTOHEAL_LOG_LINGER_MS", value_parser = clap::value_parser!(u64).range(0..=10_000), default_value_t = LogsConfig::default().linger.as_millis() as u64)]
    log_linger_ms: u64,
    /// Entries the live log stream keeps for a subscriber that reads slower than they come;
    /// one further behind gets `event: lagged` with how many it missed.
    #[arg(long, env = "AUTOHEAL_LOG_STREAM_ENTRIES", value_parser = clap::value_parser!(u64).range(1..=1_000_000), default_value_t = LogsConfig::default().stream_entries as u64)]
    log_stream_entries: u64,
    /// `InteropProcessingBacklog` fires when more normalized interop events than this
    /// wait in the outbox for their subscribers.
    #[arg(long, env = "AUTOHEAL_INTEROP_BACKLOG_ALERT", value_parser = clap::value_parser!(i64).range(0..), default_value_t = JobsConfig::default().interop_backlog_alert)]
    interop_backlog_alert: i64,
    /// Alerts are posted to this Slack-style incoming webhook.
    #[arg(long, env = "AUTOHEAL_ALERT_SLACK_URL", hide_env_values = true)]
    alert_slack_url: Option<String>,
    /// Alerts are posted (signed JSON) to this webhook.
    #[arg(long, env = "AUTOHEAL_ALERT_WEBHOOK_URL")]
    alert_webhook_url: Option<String>,
    /// Turn the built-in detector off: no detection is raised from error groups.
    #[arg(long, env = "AUTOHEAL_NO_DETECTOR")]
    no_detector: bool,
    /// How often the detector looks at the error groups, in s.
    #[arg(long, env = "AUTOHEAL_DETECTOR_INTERVAL_SECS", value_parser = clap::value_parser!(u64).range(1..=24 * 3600), default_value_t = DetectorConfig::default().interval.as_secs())]
    detector_interval_secs: u64,
    /// The window over which a group's events on one install are counted, in s.
    #[arg(long, env = "AUTOHEAL_DETECTOR_WINDOW_SECS", value_parser = clap::value_parser!(i64).range(60..=7 * 24 * 3600), default_value_t = DetectorConfig::default().window.num_seconds())]
    detector_window_secs: i64,
    /// Events of a group on one install within the window that raise a detection.
    #[arg(long, env = "AUTOHEAL_DETECTOR_MIN_EVENTS", value_parser = clap::value_parser!(i64).range(1..=1_000_000), default_value_t = DetectorConfig::default().min_events)]
    detector_min_events: i64,
    /// Most detections the detector raises fleet-wide in any hour.
    #[arg(long, env = "AUTOHEAL_DETECTOR_MAX_PER_HOUR", value_parser = clap::value_parser!(i64).range(0..=1_000_000), default_value_t = DetectorConfig::default().max_per_hour)]
    detector_max_per_hour: i64,
    /// Failed or rolled-back auto-applied patches of a rule (within 24 h) that suspend its auto-apply
    /// (at one merchant's installs: for that merchant).
    #[arg(long, env = "AUTOHEAL_BREAKER_MIN_FAILURES", value_parser = clap::value_parser!(i64).range(1..), default_value_t = HealingConfig::default().breaker_min_failures)]
    breaker_min_failures: i64,
    /// Share (0–1) of a rule's finished auto-applied patches that must have gone bad to suspend it.
    #[arg(long, env = "AUTOHEAL_BREAKER_FAILURE_RATE", value_parser = fraction, default_value_t = HealingConfig::default().breaker_failure_rate)]
    breaker_failure_rate: f64,
    /// Merchants whose installs must have had a rule's bad patches before it is suspended
    /// fleet-wide (below it, a merchant's own failures suspend it for that merchant only).
    #[arg(long, env = "AUTOHEAL_BREAKER_MIN_MERCHANTS", value_parser = clap::value_parser!(i64).range(1..), default_value_t = HealingConfig::default().breaker_min_merchants)]
    breaker_min_merchants: i64,
    /// How long the suspended rules are trusted without reading them again, in ms (the
    /// fallback for a missed change notice from another replica).
    #[arg(long, env = "AUTOHEAL_RULE_BREAKERS_MAX_AGE_MS", value_parser = clap::value_parser!(u64).range(1..), default_value_t = HealingConfig::default().breakers_max_age.as_millis() as u64)]
    rule_breakers_max_age_ms: u64,
    /// Largest request body accepted, in bytes (larger: 413).
    #[arg(long, env = "AUTOHEAL_MAX_BODY_BYTES", value_parser = clap::value_parser!(u64).range(1..), default_value_t = ServerConfig::default().max_body_bytes as u64)]
    max_body_bytes: u64,
    /// Installations one merchant may have; a first heartbeat from a site beyond it is a
    /// 429 `quota_exceeded`.
    #[arg(long, env = "AUTOHEAL_MAX_INSTALLS_PER_MERCHANT", value_parser = clap::value_parser!(i64).range(1..), default_value_t = QuotaConfig::default().max_installs_per_merchant)]
    max_installs_per_merchant: i64,
    /// Telemetry and interop events one merchant's keys may post per second, per replica
    /// (0: no limit); beyond it a 429 `quota_exceeded` with `Retry-After`.
    #[arg(long, env = "AUTOHEAL_MERCHANT_EVENTS_PER_SECOND", default_value_t = QuotaConfig::default().merchant_events_per_second)]
    merchant_events_per_second: u32,
    /// How long a verified credential is trusted without asking the store, in ms.
    #[arg(long, env = "AUTOHEAL_AUTH_CACHE_TTL_MS", default_value_t = ServerConfig::default().auth_cache_ttl.as_millis() as u64)]
    auth_cache_ttl_ms: u64,
    /// Credentials the auth cache holds before it starts over.
    #[arg(long, env = "AUTOHEAL_AUTH_CACHE_ENTRIES", value_parser = clap::value_parser!(u64).range(1..), default_value_t = ServerConfig::default().auth_cache_entries as u64)]
    auth_cache_entries: u64,
    /// Longest a rule's `params` function or an interop mapping may run per request, in ms.
    #[arg(long, env = "AUTOHEAL_SCRIPT_DEADLINE_MS", value_parser = clap::value_parser!(u64).range(1..), default_value_t = ServerConfig::default().script_deadline.as_millis() as u64)]
    script_deadline_ms: u64,
    /// Rhai operations a rule script may run per call (and at load).
    #[arg(long, env = "AUTOHEAL_SCRIPT_MAX_OPERATIONS", value_parser = clap::value_parser!(u64).range(1..), default_value_t = engine::Limits::default().max_operations)]
    script_max_operations: u64,
    /// Variables a rule script may have in scope at once.
    #[arg(long, env = "AUTOHEAL_SCRIPT_MAX_VARIABLES", value_parser = clap::value_parser!(u64).range(1..), default_value_t = engine::Limits::default().max_variables as u64)]
    script_max_variables: u64,
    /// Functions one rule file may define.
    #[arg(long, env = "AUTOHEAL_SCRIPT_MAX_FUNCTIONS", value_parser = clap::value_parser!(u64).range(1..), default_value_t = engine::Limits::default().max_functions as u64)]
    script_max_functions: u64,
    /// Size of the database connection pool.
    #[arg(long, env = "AUTOHEAL_MAX_CONNECTIONS", value_parser = clap::value_parser!(u32).range(1..), default_value_t = StoreOptions::default().max_connections)]
    max_connections: u32,
    /// Most telemetry writes committed in one transaction (group commit).
    #[arg(long, env = "AUTOHEAL_MAX_BATCH", value_parser = clap::value_parser!(u64).range(1..), default_value_t = StoreOptions::default().writer.max_batch as u64)]
    max_batch: u64,
    /// How often the rules folder is checked for changes, in ms (0: never;
    /// SIGHUP and POST /api/v1/rules/reload still reload).
    #[arg(long, env = "AUTOHEAL_RULES_POLL_MS", default_value_t = 2_000)]
    rules_poll_ms: u64,
    /// Telemetry batches written at once [default: 1 on SQLite, 2 on PostgreSQL].
    #[arg(long, env = "AUTOHEAL_WRITERS", value_parser = clap::value_parser!(u64).range(1..))]
    writers: Option<u64>,
    /// How often flags are rebuilt from files and the store without a change
    /// notice, in ms (the fallback for a missed NOTIFY).
    #[arg(long, env = "AUTOHEAL_FLAGS_REFRESH_MS", value_parser = clap::value_parser!(u64).range(1..), default_value_t = FlagsConfig::default().refresh.as_millis() as u64)]
    flags_refresh_ms: u64,
    /// How often the staged-rollout job runs, in ms.
    #[arg(long, env = "AUTOHEAL_ROLLOUT_TICK_MS", value_parser = clap::value_parser!(u64).range(1..), default_value_t = FlagsConfig::default().rollout_tick.as_millis() as u64)]
    rollout_tick_ms: u64,
    /// How long the flag policies of one request (an evaluation, a batch, a heartbeat's
    /// flags) may run together, in ms; a flag whose policy runs past it answers its default
    /// with reason ERROR. Past 100 µs they are moved off the request workers to a blocking thread.
    #[arg(long, env = "AUTOHEAL_FLAG_POLICY_BUDGET_MS", value_parser = clap::value_parser!(u64).range(1..=1000), default_value_t = FlagsConfig::default().policy_budget.as_millis() as u64)]
    flag_policy_budget_ms: u64,
    /// How long the store-held interop mappings are used before they are read again, in ms
    /// (a change through another replica shows within this time).
    #[arg(long, env = "AUTOHEAL_INTEROP_MAPPINGS_MAX_AGE_MS", value_parser = clap::value_parser!(u64).range(1..), default_value_t = InteropConfig::default().mappings_max_age.as_millis() as u64)]
    interop_mappings_max_age_ms: u64,
    /// Installations whose owner and platform are cached for interop events.
    #[arg(long, env = "AUTOHEAL_INSTALLS_CACHE_ENTRIES", value_parser = clap::value_parser!(u64).range(1..), default_value_t = InteropConfig::default().installs_cache_entries as u64)]
    installs_cache_entries: u64,
    /// How long the set of installs with in-app notices waiting is used before it is read
    /// again, in ms (a notice sent through another replica shows within this time).
    #[arg(long, env = "AUTOHEAL_PENDING_NOTICES_MAX_AGE_MS", value_parser = clap::value_parser!(u64).range(1..), default_value_t = NotificationConfig::default().pending_notices_max_age.as_millis() as u64)]
    pending_notices_max_age_ms: u64,
    /// How often the figures that cost a pass over the fleet (`/metrics`' gauges, the
    /// overview's high-error-rate count and mean error rate) are recomputed in the
    /// background, in ms; 0 computes them on every read (a small fleet's choice).
    #[arg(long, env = "AUTOHEAL_METRICS_REFRESH_MS", default_value_t = 10_000)]
    metrics_refresh_ms: u64,
}

/// A percentage: a finite number from 0 to 100.
fn percent(text: &str) -> Result<f64, String> {
    bounded(text, 100.0)
}

/// A share: a finite number from 0 to 1.
fn fraction(text: &str) -> Result<f64, String> {
    bounded(text, 1.0)
}

fn bounded(text: &str, max: f64) -> Result<f64, String> {
    let value: f64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number"))?;
    if (0.0..=max).contains(&value) {
        Ok(value)
    } else {
        Err(format!("{value} is not between 0 and {max}"))
    }
}

#[derive(Subcommand)]
enum MerchantCommand {
    /// Create a merchant and its API key (printed once).
    Create {
        #[arg(long)]
        name: String,
        #[arg(long)]
        email: String,
        /// Phone number for SMS notices (E.164, e.g. +221771234567).
        #[arg(long)]
        phone: Option<String>,
        /// The merchant's endpoint for webhook notices.
        #[arg(long)]
        webhook_url: Option<String>,
        /// The key stops working after this long (e.g. 90d, 12h; at most 10 years).
        #[arg(long)]
        expires_in: Option<String>,
    },
}

#[derive(Subcommand)]
enum OpsAgentCommand {
    /// Set the password the agent signs in to the console with, read from stdin (one
    /// line; at least 12 characters). Ends the agent's console sessions.
    SetPassword {
        #[arg(long)]
        email: String,
    },
    /// Create an Ops agent and its token (printed once).
    Create {
        #[arg(long)]
        email: String,
        #[arg(long, value_enum)]
        role: RoleArg,
        /// The token stops working after this long (e.g. 90d, 12h; at most 10 years).
        #[arg(long)]
        expires_in: Option<String>,
    },
}

#[derive(Subcommand)]
enum SiraTokenCommand {
    /// Create a Sira token (printed once).
    Create {
        #[arg(long)]
        name: String,
        /// The token stops working after this long (e.g. 90d, 12h; at most 10 years).
        #[arg(long)]
        expires_in: Option<String>,
    },
}

#[derive(Subcommand)]
enum CredentialsCommand {
    /// Every credential, oldest first: id, kind, owner, created, last used, expires and
    /// status (revoked: when and why). Never a secret.
    List {
        #[arg(long, value_enum)]
        kind: Option<KindArg>,
        /// A JSON array (as GET /api/v1/credentials answers) instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a credential for good (every server refuses it within a second).
    Revoke {
        id: uuid::Uuid,
        /// Why (it goes to the audit log).
        #[arg(long)]
        reason: String,
    },
    /// Replace a credential with a new one for the same owner; prints the new secret once.
    Rotate {
        id: uuid::Uuid,
        /// How long the old secret keeps working, so its users can switch (default: it
        /// stops now; at most 30 days).
        #[arg(long, default_value_t = 0)]
        grace_secs: i64,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum KindArg {
    Merchant,
    Ops,
    Sira,
}

impl From<KindArg> for CredentialKind {
    fn from(kind: KindArg) -> Self {
        match kind {
            KindArg::Merchant => CredentialKind::Merchant,
            KindArg::Ops => CredentialKind::Ops,
            KindArg::Sira => CredentialKind::Sira,
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum RoleArg {
    Admin,
    Operator,
    Viewer,
}

impl From<RoleArg> for Role {
    fn from(role: RoleArg) -> Self {
        match role {
            RoleArg::Admin => Role::Admin,
            RoleArg::Operator => Role::Operator,
            RoleArg::Viewer => Role::Viewer,
        }
    }
}

async fn open_store(url: &str, options: &StoreOptions) -> Result<Store> {
    let store = Store::connect(url, options)
        .await
        .context("cannot open the store")?;
    store.migrate().await.context("cannot apply migrations")?;
    Ok(store)
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    logging::init(cli.log_format);
    let now = Clock::system().now();
    match cli.command {
        Command::Serve(args) => serve(&cli.database_url, args).await?,
        Command::Migrate => {
            let store = open_store(&cli.database_url, &StoreOptions::default()).await?;
            store.close().await;
            println!("{}", json!({"status": "migrated"}));
        }
        Command::Merchant {
            command:
                MerchantCommand::Create {
                    name,
                    email,
                    phone,
                    webhook_url,
                    expires_in,
                },
        } => {
            if let Some(url) = &webhook_url {
                anyhow::ensure!(
                    url.starts_with("https://") || url.starts_with("http://"),
                    "--webhook-url {url}: expected an http(s) URL"
                );
            }
            let expires_at = credentials_cmd::expiry(expires_in.as_deref(), now)?;
            let store = open_store(&cli.database_url, &StoreOptions::default()).await?;
            let (merchant_id, key) = store
                .create_merchant_until(&name, &email, expires_at, now)
                .await?;
            if phone.is_some() || webhook_url.is_some() {
                store
                    .set_merchant_contacts(merchant_id, phone.as_deref(), webhook_url.as_deref())
                    .await?;
            }
            credentials_cmd::audit_created(&store, key.credential_id, "merchant", &name, now)
                .await?;
            store.close().await;
            println!(
                "{}",
                json!({"merchant_id": merchant_id, "credential_id": key.credential_id, "api_key": key.secret, "expires_at": expires_at})
            );
        }
        Command::OpsAgent {
            command: OpsAgentCommand::SetPassword { email },
        } => {
            let mut password = String::new();
            std::io::stdin()
                .read_line(&mut password)
                .context("cannot read the password from stdin")?;
            let password = password.strip_suffix('\n').unwrap_or(&password);
            let password = password.strip_suffix('\r').unwrap_or(password);
            let hash = api::console::hash_password(password)?;
            let store = open_store(&cli.database_url, &StoreOptions::default()).await?;
            let set = store
                .set_ops_agent_password(&email, &hash, &api::db::AuditContext::cli(), now)
                .await?;
            store.close().await;
            if !set {
                anyhow::bail!("no enabled Ops agent has the email {email}");
            }
            println!("{}", json!({"email": email, "password_set": true}));
        }
        Command::OpsAgent {
            command:
                OpsAgentCommand::Create {
                    email,
                    role,
                    expires_in,
                },
        } => {
            let expires_at = credentials_cmd::expiry(expires_in.as_deref(), now)?;
            let store = open_store(&cli.database_url, &StoreOptions::default()).await?;
            let (agent_id, token) = store
                .create_ops_agent_until(&email, role.into(), expires_at, now)
                .await?;
            credentials_cmd::audit_created(&store, token.credential_id, "ops", &email, now).await?;
            store.close().await;
            println!(
                "{}",
                json!({"agent_id": agent_id, "credential_id": token.credential_id, "token": token.secret, "expires_at": expires_at})
            );
        }
        Command::SiraToken {
            command: SiraTokenCommand::Create { name, expires_in },
        } => {
            let expires_at = credentials_cmd::expiry(expires_in.as_deref(), now)?;
            let store = open_store(&cli.database_url, &StoreOptions::default()).await?;
            let token = store
                .create_sira_token_until(&name, expires_at, now)
                .await?;
            credentials_cmd::audit_created(&store, token.credential_id, "sira", &name, now).await?;
            store.close().await;
            println!(
                "{}",
                json!({"credential_id": token.credential_id, "token": token.secret, "expires_at": expires_at})
            );
        }
        Command::Credentials { command } => {
            let store = open_store(&cli.database_url, &StoreOptions::default()).await?;
            let done = match command {
                CredentialsCommand::List { kind, json } => {
                    credentials_cmd::list(&store, kind.map(Into::into), json, now).await
                }
                CredentialsCommand::Revoke { id, reason } => {
                    credentials_cmd::revoke(&store, id, &reason, now).await
                }
                CredentialsCommand::Rotate { id, grace_secs } => {
                    credentials_cmd::rotate(&store, id, grace_secs, now).await
                }
            };
            store.close().await;
            done?;
        }
        Command::Rules { command } => match command {
            RulesCommand::Check {
                dir,
                patches,
                trusted_keys,
            } => {
                let patches = match &patches {
                    Some(folder) => Some(verified_manifests(folder, &trusted_keys, now)?),
                    None => None,
                };
                rules_cmd::check(&dir, patches.as_ref())?
            }
            RulesCommand::Explain {
                detection,
                rules,
                threshold,
            } => rules_cmd::explain(&rules, &detection, threshold)?,
            RulesCommand::Test { dir } => rules_cmd::test(&dir)?,
            RulesCommand::Replay {
                rules,
                since,
                limit,
                threshold,
                json,
            } => {
                let args = rules_cmd::ReplayArgs {
                    database_url: &cli.database_url,
                    since: &since,
                    limit: limit as usize,
                    global_threshold: threshold,
                    json,
                };
                rules_cmd::replay(&rules, args, now).await?
            }
        },
        Command::Interop {
            command:
                InteropCommand::Normalize {
                    platform,
                    event,
                    payload,
                    shop,
                    rules,
                },
        } => rules_cmd::normalize(&rules, &platform, &event, &payload, &shop)?,
        Command::Flags {
            command:
                FlagsCommand::Eval {
                    key,
                    context,
                    rules,
                    at,
                },
        } => flags_cmd::eval(&key, &context, &rules, at.unwrap_or(now))?,
        Command::Keys { command } => match command {
            KeysCommand::Generate { role, out } => patch_cmd::generate_keys(
                &out,
                match role {
                    KeyRoleArg::Root => host::tools::KeyRole::Root,
                    KeyRoleArg::Command => host::tools::KeyRole::Command,
                },
            )?,
            KeysCommand::Certify {
                root,
                command,
                expires_in,
                out,
            } => patch_cmd::certify(&root, &command, &expires_in, &out)?,
        },
        Command::Conformance {
            command: ConformanceCommand::Generate { out },
        } => patch_cmd::generate_conformance(&out)?,
        Command::Patch { command } => match command {
            PatchCommand::Build { dir } => patch_cmd::build(&dir)?,
            PatchCommand::Sign {
                dir,
                key,
                version,
                expires_in,
                out,
            } => patch_cmd::sign(&dir, &key, &version, &expires_in, &out)?,
            PatchCommand::Verify {
                bundle,
                trusted_keys,
            } => patch_cmd::verify(&bundle, &trusted_keys)?,
            PatchCommand::Run {
                bundle,
                trusted_keys,
                snapshot,
                params,
            } => patch_cmd::run(&bundle, &trusted_keys, &snapshot, params.as_deref())?,
        },
    }
    Ok(())
}

async fn serve(database_url: &str, args: ServeArgs) -> Result<()> {
    let mut options = StoreOptions {
        max_connections: args.max_connections,
        ..StoreOptions::default()
    };
    options.writer.max_batch = args.max_batch as usize;
    options.writer.writers = args.writers.map(|writers| writers as usize);
    let store = open_store(database_url, &options).await?;
    let config = server_config(&args);
    config
        .jobs
        .retention
        .check()
        .map_err(|problem| anyhow::anyhow!("--retain-rollups-days: {problem}"))?;
    let clock = Clock::system();
    let rules = if args.rules.is_dir() {
        Rules::load(&args.rules, &config.script_limits, clock.now()).map_err(|errors| {
            for error in &errors {
                eprintln!("{error}");
            }
            anyhow::anyhow!(
                "{} error(s) in the rules under {}; fix them (autoheal rules check) and start again",
                errors.len(),
                args.rules.display()
            )
        })?
    } else {
        tracing::warn!(event = "no_rules", rules = %args.rules.display(), "no rules folder: every detection waits for Ops");
        Rules::empty()
    };
    let outbox = OutboxConfig {
        cloudevents_webhooks: args.cloudevents_webhooks.clone(),
        webhook_secret: args.webhook_secret.clone(),
        max_attempts: args.delivery_max_attempts,
        backoff_base: chrono::Duration::milliseconds(args.delivery_backoff_ms),
        breaker_threshold: args.breaker_threshold,
        breaker_cooldown: chrono::Duration::milliseconds(args.breaker_cooldown_ms),
        request_timeout: Duration::from_millis(args.delivery_timeout_ms),
        smtp_url: args.smtp_url.clone(),
        smtp_ca_pem: match &args.smtp_ca_file {
            Some(path) => Some(
                std::fs::read(path)
                    .with_context(|| format!("cannot read --smtp-ca-file {}", path.display()))?,
            ),
            None => None,
        },
        ..OutboxConfig::default()
    };
    for url in &outbox.cloudevents_webhooks {
        anyhow::ensure!(
            url.starts_with("https://") || url.starts_with("http://"),
            "--cloudevents-webhook {url}: expected an http(s) URL"
        );
    }
    // Read once: the bundles and the command key's certificate chain to the same roots.
    let roots = trusted_keys(&args.trusted_keys)?;
    let patches = patch_registry(&args.patches, roots.clone(), &store, clock.now()).await?;
    let command_key = CommandKeyFiles::of(&args, roots)?;
    let signer = command_key.load(clock.now())?;
    let state = AppState::builder(store.clone(), clock)
        .config(config)
        .rules(rules)
        .patches(patches)
        .command_signer(signer)
        .outbox(Outbox::try_new(outbox).map_err(anyhow::Error::msg)?)
        .build();

    // Background work, in the groups it stops in: delivery first (its round in progress
    // finishes), then the jobs, then the watchers.
    let mut delivery = Tasks::default();
    let mut jobs = Tasks::default();
    let mut watchers = Tasks::default();
    let sender = state.delivery.clone();
    delivery.spawn_every(
        "outbox_delivery",
        Duration::from_millis(args.delivery_poll_ms),
        move || {
            let sender = sender.clone();
            async move { sender.deliver_all_due().await }
        },
    );
    let scheduler = state.ops.clone();
    jobs.spawn_every(
        "scheduled_jobs",
        Duration::from_secs(args.jobs_tick_secs),
        move || {
            let scheduler = scheduler.clone();
            async move { scheduler.run_due().await.map(drop) }
        },
    );
    api::ops::spawn_checks(&mut jobs, &state.ops);
    let figures = state.ops.clone();
    if !figures.figures_refresh().is_zero() {
        // The figures pass over the fleet's rollups: at most a tenth of a core, however
        // large the fleet grows (BENCHMARKS.md).
        jobs.spawn_paced(
            "metrics_snapshot",
            figures.figures_refresh(),
            METRICS_SNAPSHOT_BUSY_SHARE,
            move || {
                let figures = figures.clone();
                async move { figures.refresh_figures().await }
            },
        );
    }
    let detector = state.healing.clone();
    jobs.spawn_every(
        "detector",
        Duration::from_secs(args.detector_interval_secs),
        move || {
            let detector = detector.clone();
            async move { detector.run_detector_due().await.map(drop) }
        },
    );
    // The analysis looks at whole windows; checking a few times per window is enough.
    let analysis_every = (args.regression_window_mins as u64 * 60 / 6).max(10);
    let analysis = state.healing.clone();
    jobs.spawn_every(
        "regression_analysis",
        Duration::from_secs(analysis_every),
        move || {
            let analysis = analysis.clone();
            async move { analysis.analyze_regressions().await.map(drop) }
        },
    );
    state
        .flags
        .start(&mut jobs, &mut watchers)
        .await
        .context("cannot load the feature flags")?;
    if args.patches_poll_ms > 0 {
        api::healing::patches::watch(
            &mut watchers,
            state.patches.clone(),
            state.store.clone(),
            state.clock.clone(),
            Duration::from_millis(args.patches_poll_ms),
        );
    }
    if args.rules_poll_ms > 0 {
        api::rules::watch(
            &mut watchers,
            state.rules.clone(),
            state.clock.clone(),
            Duration::from_millis(args.rules_poll_ms),
        );
    }
    state.auth.start(&mut watchers);
    spawn_sighup_reload(&mut watchers, &state, command_key);

    let platform_log = state.platform_log.clone();
    let router = api::app(state);
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    tracing::info!(
        event = "listening",
        address = %listener.local_addr()?,
        backend = ?store.kind(),
        rules = %args.rules.display(),
        patches = %args.patches.display(),
        "autoheal is serving"
    );
    let router = router.into_make_service_with_connect_info::<api::wire::Peer>();
    axum::serve(api::wire::EnvelopedListener(listener), router)
        .with_graceful_shutdown({
            let platform_log = platform_log.clone();
            // A live log stream never ends by itself: it is ended for the server to stop.
            async move {
                shutdown_signal().await;
                platform_log.end_streams();
            }
        })
        .await
        .context("server failed")?;
    // In-flight requests have finished; stop the background work in order, write the
    // platform log entries they recorded, then commit whatever was queued.
    for group in [delivery, jobs, watchers] {
        group.stop().await;
    }
    platform_log.stop().await;
    store.close().await;
    tracing::info!(event = "stopped", "autoheal stopped");
    Ok(())
}

/// The server's settings from `serve`'s flags (outbound delivery's go to its outbox).
fn server_config(args: &ServeArgs) -> ServerConfig {
    let defaults = ServerConfig::default();
    ServerConfig {
        max_body_bytes: args.max_body_bytes as usize,
        auth_cache_ttl: Duration::from_millis(args.auth_cache_ttl_ms),
        auth_cache_entries: args.auth_cache_entries as usize,
        script_deadline: Duration::from_millis(args.script_deadline_ms),
        script_limits: engine::Limits {
            max_operations: args.script_max_operations,
            max_variables: args.script_max_variables as usize,
            max_functions: args.script_max_functions as usize,
            ..defaults.script_limits
        },
        quotas: QuotaConfig {
            max_installs_per_merchant: args.max_installs_per_merchant,
            merchant_events_per_second: args.merchant_events_per_second,
        },
        flags: FlagsConfig {
            refresh: Duration::from_millis(args.flags_refresh_ms),
            rollout_tick: Duration::from_millis(args.rollout_tick_ms),
            policy_budget: Duration::from_millis(args.flag_policy_budget_ms),
        },
        healing: HealingConfig {
            global_threshold: args.auto_apply_threshold,
            command_lease: chrono::Duration::seconds(args.command_lease_secs),
            command_ttl: chrono::Duration::seconds(args.command_ttl_secs),
            commands_per_poll: args.commands_per_poll,
            regression_window: chrono::Duration::minutes(args.regression_window_mins),
            regression_margin: args.regression_margin,
            breaker_min_failures: args.breaker_min_failures,
            breaker_failure_rate: args.breaker_failure_rate,
            breaker_min_merchants: args.breaker_min_merchants,
            breakers_max_age: Duration::from_millis(args.rule_breakers_max_age_ms),
            detector: DetectorConfig {
                enabled: !args.no_detector,
                interval: Duration::from_secs(args.detector_interval_secs),
                window: chrono::Duration::seconds(args.detector_window_secs),
                min_events: args.detector_min_events,
                max_per_hour: args.detector_max_per_hour,
                ..DetectorConfig::default()
            },
            ..defaults.healing
        },
        interop: InteropConfig {
            mappings_max_age: Duration::from_millis(args.interop_mappings_max_age_ms),
            installs_cache_entries: args.installs_cache_entries as usize,
        },
        notifications: NotificationConfig {
            quiet_period: chrono::Duration::hours(args.notify_quiet_hours),
            upgrade_url_base: args.upgrade_url_base.clone(),
            slack_webhook_url: args.slack_webhook_url.clone(),
            sms_provider_url: args.sms_provider_url.clone(),
            email_from: args.email_from.clone(),
            pending_notices_max_age: Duration::from_millis(args.pending_notices_max_age_ms),
        },
        jobs: JobsConfig {
            hourly: chrono::Duration::seconds(args.fleet_check_secs),
            interop_backlog_alert: args.interop_backlog_alert,
            daily: chrono::Duration::seconds(args.daily_job_secs),
            metrics_refresh: Duration::from_millis(args.metrics_refresh_ms),
            retention: RetentionConfig {
                error: chrono::Duration::days(args.retain_error_days),
                warn: chrono::Duration::days(args.retain_warn_days),
                info: chrono::Duration::days(args.retain_info_days),
                debug: chrono::Duration::days(args.retain_debug_days),
                interop_events: chrono::Duration::days(args.retain_interop_days),
                health_checks: chrono::Duration::days(args.retain_health_checks_days),
                delivered_messages: chrono::Duration::days(args.retain_delivered_days),
                finished_commands: chrono::Duration::days(args.retain_finished_commands_days),
                rollups: chrono::Duration::days(args.retain_rollups_days),
                error_occurrences: chrono::Duration::days(args.retain_error_occurrences_days),
                platform_logs: LogRetention {
                    error: chrono::Duration::days(args.retain_log_error_days),
                    warn: chrono::Duration::days(args.retain_log_warn_days),
                    info: chrono::Duration::days(args.retain_log_info_days),
                    debug: chrono::Duration::days(args.retain_log_debug_days),
                },
            },
        },
        alerts: AlertChannels {
            slack_url: args.alert_slack_url.clone(),
            webhook_url: args.alert_webhook_url.clone(),
        },
        console: api::console::ConsoleConfig {
            secure_cookies: args.console_secure_cookies,
            idle_timeout: Duration::from_secs(args.console_idle_timeout_secs),
            absolute_lifetime: Duration::from_secs(args.console_session_lifetime_secs),
            ..defaults.console
        },
        logs: LogsConfig {
            buffer_entries: args.log_buffer_entries as usize,
            batch_entries: args.log_batch_entries as usize,
            linger: Duration::from_millis(args.log_linger_ms),
            store_debug: args.log_store_debug,
            stream_entries: args.log_stream_entries as usize,
        },
    }
}

/// The newest manifest of each patch among the bundles under `dir` that verify against the
/// trusted keys (as `serve` would trust them); a bundle that does not verify is an error.
fn verified_manifests(
    dir: &std::path::Path,
    key_files: &[PathBuf],
    now: chrono::DateTime<chrono::Utc>,
) -> Result<std::collections::BTreeMap<String, host::bundle::Manifest>> {
    let trusted = trusted_keys(key_files)?;
    let mut newest: std::collections::BTreeMap<String, host::bundle::Manifest> = Default::default();
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| path.to_string_lossy().ends_with(".bundle.json"))
        .collect();
    files.sort();
    for path in files {
        let bytes =
            std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        let verified = host::verify_bundle(&bytes, &trusted, &host::AcceptedVersions::new(), now)
            .with_context(|| format!("{}", path.display()))?;
        let manifest = verified.manifest().clone();
        if newest
            .get(&manifest.name)
            .is_none_or(|known| known.version < manifest.version)
        {
            newest.insert(manifest.name.clone(), manifest);
        }
    }
    Ok(newest)
}

/// The bundles the trusted keys verify; bundles that fail verification are refused one by
/// one and listed at GET /api/v1/plugins/autoheal/patches.
async fn patch_registry(
    dir: &std::path::Path,
    trusted: host::TrustedKeys,
    store: &Store,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Arc<PatchRegistry>> {
    let development = host::PublicKey::from_base64(DEV_PUBLIC_KEY.trim())
        .ok()
        .map(|key| key.key_id().to_owned());
    if let Some(dev) = development.filter(|id| trusted.key_ids().any(|k| k == id)) {
        tracing::warn!(event = "development_key_trusted", key_id = %dev,
            "trusting the repository's DEVELOPMENT signing key: fine on a laptop, never in production (pass --trusted-key with your own public key)");
    }
    let host =
        host::Host::new(host::HostConfig::default()).context("cannot start the patch host")?;
    let registry = Arc::new(PatchRegistry::open(host, dir, trusted));
    registry
        .sync(store, now)
        .await
        .context("cannot read or record the accepted patch bundles")?;
    let status = registry.status(now);
    tracing::info!(event = "patches_loaded", dir = %dir.display(), loaded = status.patches.len(), refused = status.refused.len(), "patch bundles verified");
    Ok(registry)
}

/// The keys of `--trusted-key`, or without one the repository's development key when it is
/// here (else none: every bundle is refused).
fn trusted_keys(key_files: &[PathBuf]) -> Result<host::TrustedKeys> {
    let dev_key_file = std::path::Path::new(DEV_PUBLIC_KEY_FILE);
    Ok(if !key_files.is_empty() {
        host::tools::load_trusted_keys(key_files)
            .context("cannot read the trusted public keys (--trusted-key)")?
    } else if dev_key_file.is_file() {
        host::tools::load_trusted_keys(&[dev_key_file])
            .context("cannot read the development public key")?
    } else {
        tracing::warn!(
            event = "no_trusted_keys",
            "no --trusted-key and no development key here: every patch bundle is refused"
        );
        host::TrustedKeys::new()
    })
}

/// The most of the time the `metrics_snapshot` refresher may spend recomputing: a refresh
/// that took `d` waits at least `d / share` before the next, beyond `--metrics-refresh-ms`.
const METRICS_SNAPSHOT_BUSY_SHARE: f64 = 0.1;

/// The public half of the repository's development signing key, to warn when it is trusted.
const DEV_PUBLIC_KEY: &str = include_str!("../patches/dev-key/autoheal.pub");
/// Where a checkout keeps it: trusted when no `--trusted-key` is given.
const DEV_PUBLIC_KEY_FILE: &str = "./patches/dev-key/autoheal.pub";

/// Where the command key and its certificate are read from, and the roots it must chain to.
struct CommandKeyFiles {
    key: PathBuf,
    certificate: PathBuf,
    roots: host::TrustedKeys,
}

const DEV_COMMAND_KEY_FILE: &str = "./patches/dev-key/command.key";
const DEV_COMMAND_CERT_FILE: &str = "./patches/dev-key/command.cert.json";

impl CommandKeyFiles {
    fn of(args: &ServeArgs, roots: host::TrustedKeys) -> Result<Self> {
        let (key, certificate) = match (&args.command_key, &args.command_cert) {
            (Some(key), Some(certificate)) => (key.clone(), certificate.clone()),
            _ if std::path::Path::new(DEV_COMMAND_KEY_FILE).is_file() => {
                (DEV_COMMAND_KEY_FILE.into(), DEV_COMMAND_CERT_FILE.into())
            }
            _ => anyhow::bail!(
                "no --command-key and --command-cert: the server signs every command it hands out \
                 (autoheal keys generate --role command, then autoheal keys certify with the root key)"
            ),
        };
        Ok(Self {
            key,
            certificate,
            roots,
        })
    }

    /// The signer, if the certificate chains to a trusted root, is for this key and is
    /// valid now: a server whose every command plugins would refuse does not start.
    fn load(&self, now: chrono::DateTime<chrono::Utc>) -> Result<host::command::CommandSigner> {
        let signer =
            host::tools::load_command_signer(&self.key, &self.certificate, &self.roots, now)
                .with_context(|| {
                    format!(
                        "cannot sign commands with {} and {}",
                        self.key.display(),
                        self.certificate.display()
                    )
                })?;
        if signer.key_id() == api::healing::signing::development_key_id() {
            tracing::warn!(event = "development_command_key", key_id = %signer.key_id(),
                "signing commands with the repository's DEVELOPMENT command key: fine on a laptop, never in production (pass --command-key and --command-cert)");
        }
        let left = signer.not_after() - now;
        if left < chrono::Duration::days(7) {
            tracing::warn!(event = "command_certificate_expiring", not_after = %signer.not_after(),
                "the command key's certificate expires within 7 days: renew it (autoheal keys certify), then SIGHUP");
        }
        tracing::info!(event = "command_key_loaded", key_id = %signer.key_id(), not_after = %signer.not_after(), "commands are signed");
        Ok(signer)
    }
}

/// SIGHUP reloads the rules, the patch bundles and the command key with its certificate,
/// as daemons do with their configuration. A command key that no longer loads is kept.
fn spawn_sighup_reload(tasks: &mut Tasks, state: &AppState, command_key: CommandKeyFiles) {
    #[cfg(unix)]
    {
        let (rules, patches, signing, store, clock) = (
            state.rules.clone(),
            state.patches.clone(),
            state.signing.clone(),
            state.store.clone(),
            state.clock.clone(),
        );
        tasks.spawn("sighup_reload", move |mut stopping| async move {
            let Ok(mut hangup) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            else {
                return;
            };
            loop {
                tokio::select! {
                    () = stopping.requested() => return,
                    signal = hangup.recv() => if signal.is_none() { return },
                }
                let _ = rules.reload(clock.now());
                if let Err(error) = patches.sync(&store, clock.now()).await {
                    tracing::warn!(event = "patches_not_reloaded", error = %error, "patch bundles not reloaded");
                }
                match command_key.load(clock.now()) {
                    Ok(signer) => signing.replace(Arc::new(signer)),
                    Err(error) => {
                        tracing::warn!(event = "command_key_not_reloaded", error = %format!("{error:#}"), "the command key in force is kept");
                    }
                }
            }
        });
    }
    #[cfg(not(unix))]
    let _ = (tasks, state, command_key);
}

async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {},
        () = terminate => {},
    }
    tracing::info!(
        event = "shutting_down",
        "signal received; finishing in-flight requests"
    );
}
