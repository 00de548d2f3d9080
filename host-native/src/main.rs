//! `cairn`: the CairnDB server and command line.

mod cli;
mod db;
mod drive;
mod fs_storage;
mod fsutil;
mod http;
mod http_admin;
mod http_v2;
mod observe;
mod openapi;
mod s3_target;
mod scheduler;
mod wire;

use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;

/// Large blocks mapped 2 MiB-aligned, so full vector blocks can become huge pages (module doc).
#[global_allocator]
static ALLOC: cairn_native::hugepage_alloc::HugePageAlloc =
    cairn_native::hugepage_alloc::HugePageAlloc;

/// CairnDB: an Endee-compatible vector database with background, crash-safe backups.
#[derive(Parser)]
#[command(name = "cairn", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP server (Endee's /api/v1 and /api/v2, plus job and archive extensions).
    Serve(ServeArgs),
    /// Check or read a backup archive, without a server.
    #[command(subcommand)]
    Backup(cli::BackupCommand),
    /// Restore a backup archive into a data directory no server is using.
    Restore(cli::RestoreArgs),
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Data directory (indexes, backups, jobs file). Created if missing.
    #[arg(long, env = "NDD_DATA_DIR", default_value = "./cairn-data")]
    data_dir: PathBuf,
    /// Address to listen on.
    #[arg(long, env = "CAIRN_HOST", default_value = "127.0.0.1")]
    host: String,
    /// Port to listen on (0 picks a free port and prints it).
    #[arg(long, env = "NDD_SERVER_PORT", default_value_t = 8080)]
    port: u16,
    /// Require this token in the Authorization header (raw or "Bearer <token>") on every route
    /// but /api/v1/health and /api/v1/stats. Unset: no auth.
    #[arg(long, env = "NDD_AUTH_TOKEN")]
    auth_token: Option<String>,
    /// Serve the playground (static files) from this directory at `/`. Default: `./web` when it
    /// holds index.html (build its wasm first with scripts/build-web.sh).
    #[arg(long, env = "CAIRN_PLAYGROUND")]
    playground: Option<PathBuf>,
    /// Write a checkpoint of an index once its log reaches this many MiB. Larger: fewer
    /// checkpoints, longer restarts, and (int8, binary) more float32 originals held in memory until
    /// the next checkpoint.
    #[arg(long, env = "CAIRN_CHECKPOINT_AFTER_MIB", default_value_t = 64)]
    checkpoint_after_mib: u64,
    /// Pace backups to at most this many MiB read a second, so they never crowd out
    /// searches and writes on a busy disk (0: as fast as the disk goes).
    #[arg(long, env = "CAIRN_BACKUP_MAX_MIB_PER_S", default_value_t = 0)]
    backup_max_mib_per_s: u64,
    /// Largest request body (inserts, searches; not uploads), in MiB. The default fits the
    /// official Python client's largest batch: 10,000 vectors of 8,000 float32 as msgpack
    /// (~381 MiB), with room for ids, meta and filters. A request's peak memory is about three
    /// times its body.
    #[arg(long, env = "CAIRN_MAX_BODY_MIB", default_value_t = 512)]
    max_body_mib: usize,
    /// A backup target besides the data directory's backups/: NAME=s3://BUCKET[/PREFIX]
    /// [?endpoint=URL&region=R] (S3-compatible: AWS, MinIO, SeaweedFS...; credentials from
    /// AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY). Repeat for several. Backups name one with
    /// "target": NAME; the name "local" is the data directory.
    #[arg(long = "backup-target", value_name = "NAME=URL")]
    backup_targets: Vec<String>,
    /// Back an index up on a schedule: "index=NAME every=1h [keep=24] [target=NAME]
    /// [full_every=N]" (every N-th archive full, the others incremental on the one before;
    /// retention keeps the newest `keep` and every base they need). Repeat for several. A
    /// run missed while the server was down happens once at start.
    #[arg(long = "backup-schedule", value_name = "SPEC")]
    backup_schedules: Vec<String>,
    /// Keep archives here instead of DATA_DIR/backups (another volume).
    #[arg(long, env = "CAIRN_BACKUP_DIR")]
    backup_dir: Option<PathBuf>,
    /// Scratch space (archives fetched from a target before a restore) instead of
    /// DATA_DIR/tmp.
    #[arg(long, env = "CAIRN_TEMP_DIR")]
    temp_dir: Option<PathBuf>,
    /// Largest backup upload, in MiB (413 beyond it).
    #[arg(long, env = "CAIRN_MAX_UPLOAD_MIB", default_value_t = 65536)]
    max_upload_mib: u64,
    /// Free disk space an upload must leave, in MiB (507 when it would not).
    #[arg(long, env = "CAIRN_UPLOAD_RESERVE_MIB", default_value_t = 256)]
    upload_reserve_mib: u64,
    /// Log lines as text or as one JSON object each (RUST_LOG filters, default info). A
    /// request is logged with its method, route, status, latency and bytes — never its query
    /// string, so never a token.
    #[arg(long, env = "CAIRN_LOG_FORMAT", value_enum, default_value_t = observe::LogFormat::Text)]
    log_format: observe::LogFormat,
    /// Let browser pages from this origin call the API (e.g. https://app.example.com;
    /// repeat for several; "*" for any). Unset: no CORS headers, same-origin only.
    #[arg(long = "cors-origin", value_name = "ORIGIN")]
    cors_origins: Vec<String>,
}

fn main() -> std::process::ExitCode {
    // A write past a file-size limit must fail with EFBIG (and be rolled back like any failed
    // append), not kill the process with SIGXFSZ.
    // SAFETY: setting a signal's disposition to SIG_IGN before any thread starts.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
    cairn_core::set_sealed_block_hook(cairn_native::hugepage_alloc::collapse_into_huge_pages);
    let cli = Cli::parse();
    let args = match cli.command {
        Command::Serve(args) => args,
        Command::Backup(cmd) => return tool(cli::backup(cmd)),
        // The tools say what they found on stdout / stderr; they log nothing.
        Command::Restore(args) => return tool(cli::restore(args)),
    };
    observe::init_logs(args.log_format);
    observe::init_metrics();
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match rt.block_on(serve(args)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn serve(args: ServeArgs) -> Result<(), String> {
    let token = args.auth_token.filter(|t| !t.is_empty());
    let data = args.data_dir.clone();
    let after = args.checkpoint_after_mib.max(1).saturating_mul(1 << 20);
    let rate = (args.backup_max_mib_per_s > 0).then_some(args.backup_max_mib_per_s << 20);
    let targets = args
        .backup_targets
        .iter()
        .map(|t| s3_target::S3Config::parse(t).map(std::sync::Arc::new))
        .collect::<Result<Vec<_>, _>>()?;
    for t in &targets {
        tracing::info!(target = %t.name, location = %t.location, "backup target");
    }
    let schedules = args
        .backup_schedules
        .iter()
        .map(|s| cairn_core::control::schedule::Schedule::parse(s).map_err(|e| e.to_string()))
        .collect::<Result<Vec<_>, _>>()?;
    for s in &schedules {
        if let Some(t) = &s.target
            && !targets.iter().any(|c| &c.name == t)
        {
            return Err(format!(
                "backup schedule for {}: no --backup-target named {t:?}",
                s.index
            ));
        }
    }
    let opts = db::DbOptions {
        roots: fs_storage::Roots {
            root: data.clone(),
            backups: args.backup_dir.clone(),
            tmp: args.temp_dir.clone(),
        },
        checkpoint_after: after,
        backup_rate: rate,
        targets,
    };
    let db = tokio::task::spawn_blocking(move || db::Db::open(opts))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| {
            format!(
                "cannot open data directory {}: {e}",
                args.data_dir.display()
            )
        })?;
    // An object store may be slow or away: the sweep never holds up serving.
    let db_sweep = db.clone();
    let _ = std::thread::Builder::new()
        .name("upload-sweep".into())
        .spawn(move || db_sweep.sweep_uploads());
    scheduler::start(db.clone(), schedules).map_err(|e| format!("backup scheduler: {e}"))?;
    let playground = args.playground.or_else(|| {
        let p = PathBuf::from("web");
        p.join("index.html").exists().then_some(p)
    });
    let limits = http::Limits {
        max_body: args.max_body_mib.max(1).saturating_mul(1 << 20),
        max_upload: args.max_upload_mib.max(1).saturating_mul(1 << 20),
        upload_reserve: args.upload_reserve_mib.saturating_mul(1 << 20),
    };
    let app = http::router(
        db.clone(),
        token.clone(),
        playground,
        limits,
        &args.cors_origins,
    );
    let addr: SocketAddr = format!("{}:{}", args.host, args.port)
        .parse()
        .map_err(|e| format!("bad address {}:{}: {e}", args.host, args.port))?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    tracing::info!(addr = %local, data_dir = %args.data_dir.display(), auth = token.is_some(), "cairn listening");
    println!("cairn listening on http://{local}");
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await
        .map_err(|e| e.to_string())?;
    // Running jobs: cancel them so they end cleanly (temp files removed, jobs file written).
    let active: Vec<String> = db::lock(&db.engine)
        .registry
        .active()
        .map(|j| j.job_id.clone())
        .collect();
    for id in active {
        let _ = drive::cancel(&db, &id);
    }
    // A checkpoint of every index with a log to replay, so the next start loads and goes.
    let t0 = std::time::Instant::now();
    let db2 = db.clone();
    let _ = tokio::task::spawn_blocking(move || db2.checkpoint_all()).await;
    tracing::info!(
        ms = t0.elapsed().as_millis() as u64,
        "checkpoints written at shutdown"
    );
    tracing::info!("cairn stopped");
    Ok(())
}

/// A tool's outcome: its message on stdout (exit 0) or its error on stderr (exit 1).
fn tool(r: Result<String, String>) -> std::process::ExitCode {
    match r {
        Ok(msg) => {
            println!("{msg}");
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutdown signal received");
}
