//! `autoheal`: the control plane's one binary. `serve` runs the API; the
//! other commands manage the store and credentials from a shell.

use anyhow::{Context, Result};
use api::store::{Role, Store, StoreOptions};
use api::{AppState, Clock, ServerConfig};
use clap::{Parser, Subcommand, ValueEnum};
use serde_json::json;
use std::net::SocketAddr;
use std::path::PathBuf;

mod flags_cmd;
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

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
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
    /// Validate every rule file; exit 1 with file:line:col messages on error.
    Check {
        #[arg(default_value = "./rules")]
        dir: PathBuf,
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
    /// Write autoheal.key (private, mode 0600) and autoheal.pub into DIR.
    Generate {
        #[arg(long)]
        out: PathBuf,
    },
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
    /// Folder of signed patch bundles.
    #[arg(long, env = "AUTOHEAL_PATCHES", default_value = "./patches")]
    patches: PathBuf,
    /// Largest request body accepted, in bytes (larger: 413).
    #[arg(long, env = "AUTOHEAL_MAX_BODY_BYTES", default_value_t = ServerConfig::default().max_body_bytes)]
    max_body_bytes: usize,
    /// How long a verified credential is trusted without asking the store, in ms.
    #[arg(long, env = "AUTOHEAL_AUTH_CACHE_TTL_MS", default_value_t = ServerConfig::default().auth_cache_ttl_ms)]
    auth_cache_ttl_ms: u64,
    /// Size of the database connection pool.
    #[arg(long, env = "AUTOHEAL_MAX_CONNECTIONS", default_value_t = StoreOptions::default().max_connections)]
    max_connections: u32,
    /// Most telemetry writes committed in one transaction (group commit).
    #[arg(long, env = "AUTOHEAL_MAX_BATCH", default_value_t = StoreOptions::default().writer.max_batch)]
    max_batch: usize,
    /// How often the rules folder is checked for changes, in ms (0: never;
    /// SIGHUP and POST /api/v1/rules/reload still reload).
    #[arg(long, env = "AUTOHEAL_RULES_POLL_MS", default_value_t = 2_000)]
    rules_poll_ms: u64,
    /// Telemetry batches written at once [default: 1 on SQLite, 2 on PostgreSQL].
    #[arg(long, env = "AUTOHEAL_WRITERS")]
    writers: Option<usize>,
    /// How often flags are rebuilt from files and the store without a change
    /// notice, in ms (the fallback for a missed NOTIFY).
    #[arg(long, env = "AUTOHEAL_FLAGS_REFRESH_MS", default_value_t = ServerConfig::default().flags_refresh_ms)]
    flags_refresh_ms: u64,
    /// How often the staged-rollout job runs, in ms.
    #[arg(long, env = "AUTOHEAL_ROLLOUT_TICK_MS", default_value_t = ServerConfig::default().rollout_tick_ms)]
    rollout_tick_ms: u64,
}

#[derive(Subcommand)]
enum MerchantCommand {
    /// Create a merchant and its API key (printed once).
    Create {
        #[arg(long)]
        name: String,
        #[arg(long)]
        email: String,
    },
}

#[derive(Subcommand)]
enum OpsAgentCommand {
    /// Create an Ops agent and its token (printed once).
    Create {
        #[arg(long)]
        email: String,
        #[arg(long, value_enum)]
        role: RoleArg,
    },
}

#[derive(Subcommand)]
enum SiraTokenCommand {
    /// Create a Sira token (printed once).
    Create {
        #[arg(long)]
        name: String,
    },
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

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
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
    init_logging(cli.log_format);
    let now = Clock::system().now();
    match cli.command {
        Command::Serve(args) => serve(&cli.database_url, args).await?,
        Command::Migrate => {
            let store = open_store(&cli.database_url, &StoreOptions::default()).await?;
            store.close().await;
            println!("{}", json!({"status": "migrated"}));
        }
        Command::Merchant {
            command: MerchantCommand::Create { name, email },
        } => {
            let store = open_store(&cli.database_url, &StoreOptions::default()).await?;
            let (merchant_id, key) = store.create_merchant(&name, &email, now).await?;
            store.close().await;
            println!(
                "{}",
                json!({"merchant_id": merchant_id, "api_key": key.secret})
            );
        }
        Command::OpsAgent {
            command: OpsAgentCommand::Create { email, role },
        } => {
            let store = open_store(&cli.database_url, &StoreOptions::default()).await?;
            let (agent_id, token) = store.create_ops_agent(&email, role.into(), now).await?;
            store.close().await;
            println!("{}", json!({"agent_id": agent_id, "token": token.secret}));
        }
        Command::SiraToken {
            command: SiraTokenCommand::Create { name },
        } => {
            let store = open_store(&cli.database_url, &StoreOptions::default()).await?;
            let token = store.create_sira_token(&name, now).await?;
            store.close().await;
            println!("{}", json!({"token": token.secret}));
        }
        Command::Rules { command } => match command {
            RulesCommand::Check { dir } => rules_cmd::check(&dir)?,
            RulesCommand::Explain {
                detection,
                rules,
                threshold,
            } => rules_cmd::explain(&rules, &detection, threshold)?,
            RulesCommand::Test { dir } => rules_cmd::test(&dir)?,
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
        Command::Keys {
            command: KeysCommand::Generate { out },
        } => patch_cmd::generate_keys(&out)?,
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
    options.writer.max_batch = args.max_batch;
    options.writer.writers = args.writers;
    let store = open_store(database_url, &options).await?;
    let config = ServerConfig {
        max_body_bytes: args.max_body_bytes,
        auth_cache_ttl_ms: args.auth_cache_ttl_ms,
        flags_refresh_ms: args.flags_refresh_ms,
        rollout_tick_ms: args.rollout_tick_ms,
    };
    let clock = Clock::system();
    let rules = if args.rules.is_dir() {
        api::rules::Rules::load(&args.rules, clock.now()).map_err(|errors| {
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
        api::rules::Rules::empty()
    };
    let state = AppState::new(store.clone(), clock, config).with_rules(rules);
    if args.rules_poll_ms > 0 {
        api::rules::spawn_watcher(
            state.clone(),
            std::time::Duration::from_millis(args.rules_poll_ms),
        );
    }
    spawn_sighup_reload(state.clone());
    api::flags::start(&state)
        .await
        .context("cannot load the feature flags")?;
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
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown_signal())
        .await
        .context("server failed")?;
    // In-flight requests have finished; commit whatever they queued.
    store.close().await;
    tracing::info!(event = "stopped", "autoheal stopped");
    Ok(())
}

/// SIGHUP reloads the rules, as daemons do with their configuration.
fn spawn_sighup_reload(state: AppState) {
    #[cfg(unix)]
    tokio::spawn(async move {
        let Ok(mut hangup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        else {
            return;
        };
        while hangup.recv().await.is_some() {
            let _ = state.rules.reload(state.clock.now());
        }
    });
    #[cfg(not(unix))]
    let _ = state;
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
