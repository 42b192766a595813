//! The `lockstep` command line: serve (the default), worker, migrate, schema,
//! token, seed, import, bench.

use anyhow::Context;
use api::Config;
use api::auth::JwtKeys;
use api::http::App;
use api::jobs::{CancellationToken, Runner};
use clap::{Parser, Subcommand};
use entity::enums::Role;
use migration::MigratorTrait;
use std::time::Duration;

/// mimalloc instead of glibc's malloc: a profile of the server under load
/// (100 leads a request) put ~30% of its CPU in glibc's allocator and its
/// consolidation of freed chunks.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "lockstep",
    version,
    about = "One revenue-operations hub for marketing, SDR and sales: a GraphQL API"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(clap::Args, Default)]
struct ServeArgs {
    /// Address to listen on (`127.0.0.1:0` picks a free port).
    #[arg(long)]
    bind: Option<String>,
    /// `sqlite://…` or `postgres://…` (default: the SQLite file lockstep.db).
    #[arg(long)]
    database_url: Option<String>,
    /// Do not seed a fresh embedded database with demo data.
    #[arg(long)]
    no_demo: bool,
    /// Do not run the job runner in this process (run `lockstep worker` elsewhere).
    #[arg(long)]
    no_jobs: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Run migrations, then serve GraphQL and run background jobs (the default).
    Serve(ServeArgs),
    /// Run migrations, then only the background job runner (no HTTP).
    Worker {
        #[arg(long)]
        database_url: Option<String>,
    },
    /// Apply or roll back migrations.
    Migrate {
        #[arg(value_enum, default_value = "up")]
        action: MigrateAction,
        #[arg(long)]
        database_url: Option<String>,
    },
    /// Print the GraphQL SDL.
    Schema,
    /// Print a signed JWT (HS256, with the configured or generated secret).
    Token {
        #[arg(long, value_parser = parse_role)]
        role: Role,
        #[arg(long)]
        sub: String,
        /// Lifetime, e.g. `8h`, `30m`, `7d`.
        #[arg(long, default_value = "8h", value_parser = humantime::parse_duration)]
        ttl: Duration,
        /// Team id to put in the token.
        #[arg(long)]
        team: Option<String>,
    },
    /// Benchmark the metrics through HTTP against plain SQL (seeds first if needed).
    Bench {
        #[arg(long)]
        database_url: String,
        #[arg(long, default_value_t = 1_000_000)]
        leads: u64,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        #[arg(long, default_value_t = 20)]
        requests: usize,
        /// Concurrent writers to try (comma-separated; empty for none).
        #[arg(long, value_delimiter = ',', default_value = "8,32")]
        writers: Vec<usize>,
        /// Seconds each concurrent-writer run lasts.
        #[arg(long, default_value_t = 15)]
        write_secs: u64,
        /// Only the concurrent writers.
        #[arg(long)]
        only_writes: bool,
        /// Only webhook ingestion: this many generic events (see docs/webhooks.md).
        #[arg(long)]
        webhooks: Option<usize>,
        /// Concurrent webhook senders.
        #[arg(long, default_value_t = 16)]
        webhook_senders: usize,
        /// Jobs the runner applies at once during the webhook bench.
        #[arg(long, default_value_t = 4)]
        webhook_concurrency: usize,
    },
    /// The plain read workloads (one lead by id with its history; 100 leads
    /// with account and owner; 100 MQL leads of one source) against a
    /// running server, optionally beside PostGraphile and plain SQL on the
    /// same database (same rows checked first) and with the dashboard mix:
    /// requests/s, p50 and p99 per client count, and the ratios.
    BenchReads {
        /// The server's GraphQL endpoint, e.g. http://127.0.0.1:8080/graphql.
        #[arg(long)]
        url: String,
        /// The server's JWT secret (an ADMIN token is made with it).
        #[arg(long, env = "LOCKSTEP_JWT_SECRET", hide_env_values = true)]
        jwt_secret: String,
        /// Concurrent clients to try (comma-separated).
        #[arg(long, value_delimiter = ',', default_value = "8,32")]
        clients: Vec<usize>,
        /// Seconds each run lasts.
        #[arg(long, default_value_t = 10)]
        secs: u64,
        /// Times the whole set of runs is repeated.
        #[arg(long, default_value_t = 1)]
        rounds: usize,
        /// PostGraphile's GraphQL endpoint on the same database, to compare
        /// with (`bench/compare.sh` starts one).
        #[arg(long, value_name = "URL")]
        postgraphile: Option<String>,
        /// The database, for the plain-SQL floor (runs `pgbench`).
        #[arg(long, value_name = "URL")]
        pgbench: Option<String>,
        /// Also run the dashboard mix (metrics over varied periods; turn the
        /// server's metric cache off).
        #[arg(long)]
        dashboard: bool,
        /// Only the read workloads whose name contains this text ("by id",
        /// "by creation", "MQL"), to profile one at a time.
        #[arg(long)]
        only: Option<String>,
    },
    /// Fill the database with deterministic demo data of any size, or
    /// write the same data as an import file (`--jsonl FILE`, see docs/import.md).
    Seed {
        #[arg(long, default_value_t = 10_000)]
        leads: u64,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        #[arg(long)]
        database_url: Option<String>,
        /// Write a `lockstep import` file instead of filling a database.
        #[arg(long, value_name = "FILE")]
        jsonl: Option<std::path::PathBuf>,
    },
    /// Import a CRM export: JSON Lines of users, accounts, campaigns, leads,
    /// opportunities, touchpoints and stage histories keyed by external id
    /// (docs/import.md). Safe to rerun: records already there are matched
    /// by external id, histories are not duplicated.
    ///
    /// Exit status: 0 when every line was imported, 1 when some lines were
    /// refused (each is listed with its line number and reason; the others
    /// are imported), 2 when the import could not run (file, database).
    #[command(verbatim_doc_comment)]
    Import {
        /// The JSON Lines file.
        file: std::path::PathBuf,
        /// Lines per batch: a batch is written all or nothing (one transaction).
        #[arg(long, default_value_t = api::import::DEFAULT_BATCH)]
        batch_size: usize,
        /// Batches written side by side at most, when their lines do not
        /// depend on each other (0: 4 on PostgreSQL, 1 on SQLite).
        #[arg(long, default_value_t = 0)]
        parallel: usize,
        #[arg(long)]
        database_url: Option<String>,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum MigrateAction {
    /// Apply the pending migrations, then rebuild the metric rollups if they predate this build.
    Up,
    Down,
    Status,
}

fn parse_role(s: &str) -> Result<Role, String> {
    Role::ALL
        .iter()
        .copied()
        .find(|r| r.as_str().eq_ignore_ascii_case(s))
        .ok_or_else(|| "one of ADMIN, REVOPS, MEMBER, VIEWER, INTEGRATION".to_owned())
}

/// Logging per `LOCKSTEP_LOG`, else `default` (the bench stays quiet: a log
/// line per request would be part of what it times), in the configured
/// format (`LOCKSTEP_LOG_FORMAT=json`), with OpenTelemetry export when an
/// OTLP endpoint is configured. Keep the guard: dropping it flushes spans.
fn init_tracing_with(default: &str) -> api::telemetry::logging::TelemetryGuard {
    use api::telemetry::logging::{LogFormat, init};
    // A configuration error is reported by the command itself, once logging works.
    let config = Config::load().unwrap_or_default();
    match init(
        default,
        LogFormat::parse(&config.log_format),
        config.otel_endpoint.as_deref(),
        &config.otel_service_name,
    ) {
        Ok(guard) => guard,
        Err(e) => {
            eprintln!("logging could not be set up: {e}");
            std::process::exit(2);
        }
    }
}

fn init_tracing() -> api::telemetry::logging::TelemetryGuard {
    init_tracing_with("info,sqlx=warn,sea_orm=warn,sea_orm_migration=warn")
}

fn config_with(database_url: Option<String>) -> anyhow::Result<Config> {
    let mut config = Config::load().context("reading configuration")?;
    if database_url.is_some() {
        config.database_url = database_url;
    }
    Ok(config)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Serve(ServeArgs::default())) {
        Command::Serve(args) => serve(args).await,
        Command::Worker { database_url } => worker(database_url).await,
        Command::Migrate {
            action,
            database_url,
        } => {
            let _telemetry = init_tracing();
            let config = config_with(database_url)?;
            let counter = Default::default();
            let db = api::db::connect(config.database_url(), counter).await?;
            match action {
                // The migrations, then the metric rollups if they predate this build.
                MigrateAction::Up => api::setup::migrate(&db).await?,
                MigrateAction::Down => migration::Migrator::down(&db, Some(1)).await?,
                MigrateAction::Status => migration::Migrator::status(&db).await?,
            }
            Ok(())
        }
        Command::Schema => {
            print!("{}", api::graphql::sdl());
            Ok(())
        }
        Command::Token {
            role,
            sub,
            ttl,
            team,
        } => {
            let config = Config::load()?;
            let keys = JwtKeys::from_config(&config)?;
            println!(
                "{}",
                keys.issue(role, &sub, ttl, team)
                    .map_err(api::error::Failure)?
            );
            Ok(())
        }
        Command::Bench {
            database_url,
            leads,
            seed,
            requests,
            writers,
            write_secs,
            only_writes,
            webhooks,
            webhook_senders,
            webhook_concurrency,
        } => {
            let _telemetry = init_tracing_with("warn");
            if let Some(events) = webhooks {
                let report = tools::webhook_bench::run(tools::webhook_bench::WebhookBenchOptions {
                    database_url,
                    events,
                    senders: webhook_senders,
                    concurrency: webhook_concurrency,
                })
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
                println!("{}", report.markdown());
                return Ok(());
            }
            let report = tools::bench::run(tools::bench::BenchOptions {
                database_url,
                leads,
                seed,
                requests,
                writers,
                write_secs,
                only_writes,
            })
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
            println!("{}", report.markdown());
            Ok(())
        }
        Command::BenchReads {
            url,
            jwt_secret,
            clients,
            secs,
            rounds,
            postgraphile,
            pgbench,
            dashboard,
            only,
        } => {
            let _telemetry = init_tracing_with("warn");
            let rows = tools::read_bench::run(tools::read_bench::ReadBenchOptions {
                url,
                jwt_secret,
                clients,
                secs,
                rounds,
                postgraphile,
                database_url: pgbench,
                dashboard,
                only,
            })
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
            println!("{}", tools::read_bench::markdown(&rows));
            Ok(())
        }
        Command::Import {
            file,
            batch_size,
            parallel,
            database_url,
        } => {
            let _telemetry = init_tracing_with("warn");
            match import(file, batch_size, parallel, database_url).await {
                Ok(0) => Ok(()),
                Ok(_) => std::process::exit(1),
                Err(e) => {
                    eprintln!("import failed: {e:#}");
                    std::process::exit(2);
                }
            }
        }
        Command::Seed {
            leads,
            seed,
            jsonl: Some(path),
            database_url: _,
        } => {
            let started = std::time::Instant::now();
            let out = std::fs::File::create(&path)
                .with_context(|| format!("creating {}", path.display()))?;
            let report = tools::seed::write_jsonl(
                std::io::BufWriter::new(out),
                &tools::seed::SeedOptions {
                    leads,
                    seed,
                    progress: true,
                },
            )
            .await
            .with_context(|| format!("writing {}", path.display()))?;
            eprintln!(
                "wrote {} in {:.1}s: {report:?}",
                path.display(),
                started.elapsed().as_secs_f64()
            );
            Ok(())
        }
        Command::Seed {
            leads,
            seed,
            database_url,
            jsonl: None,
        } => {
            let _telemetry = init_tracing();
            let config = config_with(database_url)?;
            let db = api::db::connect_bulk(config.database_url(), Default::default()).await?;
            api::setup::migrate(&db).await?;
            let started = std::time::Instant::now();
            let report = tools::seed::seed(
                &db,
                &tools::seed::SeedOptions {
                    leads,
                    seed,
                    progress: true,
                },
            )
            .await
            .map_err(api::error::Failure)?;
            eprintln!(
                "seeded in {:.1}s: {report:?}",
                started.elapsed().as_secs_f64()
            );
            Ok(())
        }
    }
}

/// `lockstep import`: returns how many lines were refused.
async fn import(
    file: std::path::PathBuf,
    batch_size: usize,
    parallel: usize,
    database_url: Option<String>,
) -> anyhow::Result<usize> {
    let config = config_with(database_url)?;
    let input =
        std::fs::File::open(&file).with_context(|| format!("opening {}", file.display()))?;
    let total = input.metadata().map(|m| m.len()).unwrap_or(0);
    let counter = std::sync::Arc::new(api::db::StatementCounter::default());
    let db = api::db::connect_bulk(config.database_url(), counter.clone()).await?;
    api::setup::migrate(&db).await?;
    let before = counter.get();
    let started = std::time::Instant::now();
    let report = api::import::run(
        &db,
        std::io::BufReader::new(input),
        total,
        &api::import::ImportOptions {
            batch_size,
            progress: true,
            currency: config.currency.clone(),
            parallel,
        },
    )
    .await
    .map_err(api::error::Failure)?;
    let secs = started.elapsed().as_secs_f64().max(1e-9);
    let leads = report.applied.get("lead").copied().unwrap_or(0);
    println!(
        "imported {} of {} lines in {secs:.1}s ({:.0} lines/s, {:.0} leads/s) in {} batches",
        report.applied_total(),
        report.lines,
        report.applied_total() as f64 / secs,
        leads as f64 / secs,
        report.batches,
    );
    println!(
        "  {:.2} SQL statements per line",
        (counter.get() - before) as f64 / report.lines.max(1) as f64
    );
    for (ty, n) in &report.applied {
        println!("  {ty}: {n}");
    }
    if !report.refused.is_empty() {
        println!("refused {} lines:", report.refused.len());
        for r in &report.refused {
            println!("  line {}: {}", r.line, r.reason);
        }
    }
    db.close().await?;
    Ok(report.refused.len())
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let _telemetry = init_tracing();
    api::telemetry::prom::mark_start();
    let mut config = config_with(args.database_url)?;
    if let Some(bind) = args.bind {
        config.bind = bind;
    }
    if args.no_demo {
        config.demo = false;
    }
    if args.no_jobs {
        config.jobs = false;
    }
    let jobs = config.jobs;
    let runner_config = config.clone();
    let embedded = config.is_embedded_default();
    let bind = config.bind.clone();
    let demo = config.demo && config.database_url().starts_with("sqlite:");
    let mut app = App::build(config).await?;
    if demo
        && tools::seed::is_empty(&app.state.db)
            .await
            .map_err(api::error::Failure)?
    {
        tracing::info!("fresh embedded database: seeding demo data");
        let report = tools::seed::demo(&app.state.db)
            .await
            .map_err(api::error::Failure)?;
        tracing::info!(
            leads = report.leads,
            opportunities = report.opportunities,
            "demo data ready"
        );
    }
    let listener = tokio::net::TcpListener::bind(&bind)
        .await
        .with_context(|| format!("binding {bind}"))?;
    let addr = listener.local_addr()?;
    tracing::info!("listening on http://{addr}");
    let metrics_server = spawn_metrics_listener(&app.state).await?;
    println!("\n  Lockstep is running.\n  GraphiQL:  http://{addr}/graphql");
    if embedded && app.state.keys.generated_secret {
        let token = app
            .state
            .keys
            .issue(
                Role::Admin,
                tools::seed::DEMO_ADMIN_EMAIL,
                Duration::from_secs(8 * 3600),
                None,
            )
            .map_err(api::error::Failure)?;
        println!("  Paste this into GraphiQL's Headers tab (an ADMIN token, valid 8 hours):\n");
        println!("  {{\"Authorization\": \"Bearer {token}\"}}\n");
        println!("  More tokens: cargo run --release -- token --role VIEWER --sub bi-tool\n");
    } else {
        println!("  Get a token: lockstep token --role ADMIN --sub you@example.com\n");
    }
    let shutdown = CancellationToken::new();
    let runner = if jobs {
        let runner = Runner::from_config(app.state.db.clone(), &runner_config)
            .with_metrics(app.state.telemetry.clone());
        app = app.with_jobs(runner.health());
        Some(runner.spawn(shutdown.clone()))
    } else {
        tracing::info!("the job runner is off in this process (jobs = false)");
        None
    };
    tokio::spawn(cancel_on_signal(shutdown.clone()));
    let served = app
        .serve(listener, shutdown.clone().cancelled_owned())
        .await;
    // However serving ended, the runner stops too (finishing or releasing its jobs).
    shutdown.cancel();
    if let Some(runner) = runner {
        runner
            .await
            .context("job runner task")?
            .map_err(api::error::Failure)?;
    }
    if let Some(m) = metrics_server {
        m.abort();
    }
    served?;
    tracing::info!("shut down cleanly");
    Ok(())
}

async fn axum_serve(
    listener: tokio::net::TcpListener,
    router: axum::Router,
) -> std::io::Result<()> {
    axum::serve(listener, router).await
}

/// `/metrics` on `metrics_bind`, when one is configured.
async fn spawn_metrics_listener(
    state: &api::http::AppState,
) -> anyhow::Result<Option<tokio::task::JoinHandle<()>>> {
    let Some(metrics_bind) = state.config.metrics_bind.clone() else {
        return Ok(None);
    };
    let metrics_listener = tokio::net::TcpListener::bind(&metrics_bind)
        .await
        .with_context(|| format!("binding {metrics_bind} (metrics_bind)"))?;
    let metrics_addr = metrics_listener.local_addr()?;
    tracing::info!("metrics on http://{metrics_addr}/metrics");
    let router = api::http::metrics_router(state.clone());
    Ok(Some(tokio::spawn(async move {
        if let Err(e) = axum_serve(metrics_listener, router).await {
            tracing::error!(error = %e, "the metrics listener stopped");
        }
    })))
}

/// `lockstep worker`: the job runner alone, until SIGINT/SIGTERM, with
/// `/metrics` on `metrics_bind` when one is configured (it has no GraphQL
/// port to share).
async fn worker(database_url: Option<String>) -> anyhow::Result<()> {
    let _telemetry = init_tracing();
    api::telemetry::prom::mark_start();
    let mut config = config_with(database_url)?;
    // A worker verifies no token (its /metrics is on metrics_bind, which asks
    // for none): without a configured key, a throwaway one lets it start.
    config.ensure_some_jwt_key();
    let runner_config = config.clone();
    let app = App::build(config).await?;
    let metrics_server = spawn_metrics_listener(&app.state).await?;
    if metrics_server.is_none() {
        tracing::info!("no metrics_bind: this worker serves no /metrics");
    }
    let shutdown = CancellationToken::new();
    tokio::spawn(cancel_on_signal(shutdown.clone()));
    let runner = Runner::from_config(app.state.db.clone(), &runner_config)
        .with_metrics(app.state.telemetry.clone());
    tracing::info!(runner = runner.id(), "worker started");
    let ran = runner.run(shutdown).await.map_err(api::error::Failure);
    if let Some(m) = metrics_server {
        m.abort();
    }
    ran?;
    app.state.db.close().await?;
    tracing::info!("shut down cleanly");
    Ok(())
}

async fn cancel_on_signal(shutdown: CancellationToken) {
    shutdown_signal().await;
    shutdown.cancel();
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
    tracing::info!("shutdown signal received: finishing in-flight requests and jobs");
}
