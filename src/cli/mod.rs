//! The command line. One file per command; adding one means a file here, a variant in
//! [`Command`] and a line in [`run`].
//!
//! - `serve`: MCP over stdio or HTTP ([`serve`])
//! - `plugins`, `tools`, `check`: what is loaded and published, and whether the services
//!   accept their keys ([`plugins`], [`tools`], [`check`])
//! - `call`: one tool from the shell ([`call`])
//! - `import airtable`: a bulk import with a progress bar ([`import`])
//! - `organize`: a folder into Airtable with AI, planned or applied ([`organize`])
//! - `ask`, `consensus`: the agents plugin's tools, streamed ([`ask`], [`consensus`])
//!
//! Every command works on a [`Manager`] built by [`start_manager`], the one place that
//! constructs it.

mod ask;
mod call;
mod check;
mod consensus;
mod import;
mod import_config;
mod log;
mod organize;
mod plugins;
mod serve;
mod stream;
mod tools;
mod watch;

use std::{path::PathBuf, process::ExitCode, sync::Arc, time::Duration};

use anyhow::Context;
use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum, builder::BoolishValueParser};

use crate::plugin::{Filters, Manager, ManagerConfig};

#[derive(Debug, Parser)]
#[command(
    name = "plugboard",
    version,
    about = "One MCP server for your AI: plugins published as tools, over stdio, Streamable HTTP and legacy SSE."
)]
pub struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Args)]
struct Global {
    /// Redis that replicas of plugboard share their rate limits through (`redis://host:6379`,
    /// `rediss://` for TLS). Without it every limit is this process's own.
    // A secret type: the URL may hold a password.
    #[arg(long, env = "PLUGBOARD_REDIS_URL", hide_env_values = true, value_parser = redis_url, global = true)]
    redis_url: Option<crate::net::SecretString>,
    /// Folder holding the plugin manifests (`<name>/plugin.toml`). Default: `./plugins`, or
    /// the manifests built into the binary when there is no such folder.
    #[arg(long, env = "PLUGBOARD_PLUGINS_DIR", global = true)]
    plugins_dir: Option<PathBuf>,
    /// The .env file to read (default: `.env` in the current folder or a parent).
    #[arg(long, env = "PLUGBOARD_ENV_FILE", global = true)]
    env_file: Option<PathBuf>,
    /// Publish only tools marked read-only.
    #[arg(long, env = "PLUGBOARD_READ_ONLY", action = ArgAction::SetTrue, value_parser = BoolishValueParser::new(), global = true)]
    read_only: bool,
    /// Publish only these tools (comma-separated full names).
    #[arg(long, env = "PLUGBOARD_TOOLS", value_delimiter = ',', global = true)]
    tools: Vec<String>,
    /// Never publish these tools (comma-separated; wins over every other filter).
    #[arg(
        long,
        env = "PLUGBOARD_EXCLUDE_TOOLS",
        value_delimiter = ',',
        global = true
    )]
    exclude_tools: Vec<String>,
    /// Publish only the tools of these plugins (comma-separated plugin names).
    #[arg(long, env = "PLUGBOARD_TOOLSETS", value_delimiter = ',', global = true)]
    toolsets: Vec<String>,
    /// Seconds a tool call may take before it is stopped.
    #[arg(
        long,
        env = "PLUGBOARD_CALL_TIMEOUT",
        default_value_t = 120.0,
        global = true
    )]
    call_timeout: f64,
    /// Tool calls in flight at once over MCP, server-wide; one more gets a tool error.
    #[arg(long, env = "PLUGBOARD_MAX_CALLS", default_value_t = crate::plugin::DEFAULT_MAX_CALLS, global = true)]
    max_calls: usize,
    /// Tool calls in flight at once on one MCP session.
    #[arg(long, env = "PLUGBOARD_MAX_CALLS_PER_SESSION", default_value_t = crate::plugin::DEFAULT_MAX_CALLS_PER_SESSION, global = true)]
    max_calls_per_session: usize,
    /// Show MCP clients three tools (find tools by words, describe one, call one) instead of
    /// every tool's schema: for large catalogs.
    #[arg(long, env = "PLUGBOARD_TOOL_DISCOVERY", global = true)]
    tool_discovery: bool,
    /// Seconds a plugin may take to start.
    #[arg(
        long,
        env = "PLUGBOARD_INIT_TIMEOUT",
        default_value_t = 30.0,
        global = true
    )]
    init_timeout: f64,
    /// Log format on stderr.
    #[arg(long, env = "PLUGBOARD_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
    /// Log filter (tracing syntax, e.g. `debug` or `plugboard=debug,rmcp=info`).
    #[arg(long, env = "PLUGBOARD_LOG", default_value = "info", global = true)]
    log: String,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve MCP over stdio (what Claude Desktop launches), or over HTTP with --http.
    Serve(serve::ServeArgs),
    /// Show every plugin and its status.
    Plugins(plugins::PluginsArgs),
    /// List the published tools.
    Tools(tools::ToolsArgs),
    /// Call one tool and print its result (exit status 1 if the result is an error).
    Call(call::CallArgs),
    /// Report the configuration: which plugins are ready and which variables are missing;
    /// with --online, whether each service accepts its key.
    Check(check::CheckArgs),
    /// Import rows into a service, with a progress bar.
    #[command(subcommand)]
    Import(import::ImportCommand),
    /// Organize a folder of documents into an Airtable table with AI: prints the plan, or
    /// writes it with --apply.
    Organize(organize::OrganizeArgs),
    /// Ask an AI model; the answer is written out as it arrives.
    Ask(ask::AskArgs),
    /// Ask several AI models at once; each answer is shown as it arrives, then the synthesis.
    Consensus(consensus::ConsensusArgs),
}

/// Parse the command line and run it.
pub fn main() -> ExitCode {
    // `.env` must be in the environment before clap reads its env fallbacks.
    let env_file = env_file_from_args();
    let dotenv = crate::config::load_dotenv(env_file);
    let cli = Cli::parse();
    init_logging(&cli.global);
    if let Err(e) = &dotenv {
        // The error names the file and line only: dotenvy's own text quotes the line.
        tracing::error!(error = %e, "could not read the .env file");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("plugboard: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("plugboard: {e:#}");
            ExitCode::FAILURE
        }
    };
    // A read on a terminal's stdin cannot be cancelled; don't let it hold the exit.
    runtime.shutdown_timeout(Duration::from_millis(200));
    code
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    // A client's MCP servers become manifests: nothing needs to start for that.
    if let Command::Import(what) = &cli.command
        && let Some((client, import)) = what.client_config()
    {
        let plugins_dir = cli
            .global
            .plugins_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("plugins"));
        let env_file = cli
            .global
            .env_file
            .clone()
            .unwrap_or_else(|| PathBuf::from(".env"));
        return import.run(client, &plugins_dir, &env_file);
    }
    // A user who runs `plugboard import` names a file in the folder they are in: with no
    // import folder configured, that folder is the one open for reading (exclusions still hold).
    let here = matches!(cli.command, Command::Import(_) | Command::Organize(_))
        .then(std::env::current_dir)
        .and_then(Result::ok);
    let serving = matches!(cli.command, Command::Serve(_));
    let manager = start_manager(&cli.global, here, serving).await?;
    if serving && let Some(redis) = &manager.config().shared {
        let replica = Arc::downgrade(&manager);
        redis.on_reload(
            move || {
                let replica = replica.clone();
                async move {
                    if let Some(manager) = replica.upgrade() {
                        manager.reload_for_replica().await;
                    }
                }
            },
            tokio_util::sync::CancellationToken::new(),
        );
        // 2026-07-28 continuations that reach the wrong replica find the one holding the call.
        manager
            .relay_calls(tokio_util::sync::CancellationToken::new())
            .await;
    }
    let code = match cli.command {
        Command::Serve(args) => serve::run(manager.clone(), args).await,
        Command::Plugins(args) => plugins::run(&manager, args),
        Command::Tools(args) => tools::run(&manager, args),
        Command::Call(args) => call::run(&manager, args).await,
        Command::Check(args) => Ok(check::run(&manager, args).await),
        Command::Import(what) => import::run(&manager, what).await,
        Command::Organize(args) => organize::run(&manager, args).await,
        Command::Ask(args) => ask::run(&manager, args).await,
        Command::Consensus(args) => consensus::run(&manager, args).await,
    };
    manager.shutdown().await;
    code
}

/// The one place the CLI builds its [`Manager`], from the global options; `files_root` is the
/// folder files may be read from when the environment names none.
async fn start_manager(
    g: &Global,
    files_root: Option<PathBuf>,
    serving: bool,
) -> anyhow::Result<Arc<Manager>> {
    let shared = match &g.redis_url {
        Some(url) if !secrecy::ExposeSecret::expose_secret(url).trim().is_empty() => {
            // Without the Redis it was told to share limits through, a replica would send
            // each service all of a limit its siblings also send: it does not start.
            let redis = crate::net::shared::Redis::connect(secrecy::ExposeSecret::expose_secret(url).trim())
                .await
                .map_err(|e| anyhow::anyhow!("{e}: plugboard does not start without the Redis that PLUGBOARD_REDIS_URL names (its rate limits would stop being shared)"))?;
            redis
                .heartbeat(
                    Duration::from_secs(2),
                    tokio_util::sync::CancellationToken::new(),
                )
                .await;
            tracing::info!(redis = %redis.host(), replicas = redis.replicas(), "sharing rate limits through Redis");
            Some(redis)
        }
        _ => None,
    };
    let config = ManagerConfig {
        shared,
        plugins_dir: g
            .plugins_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("plugins")),
        shipped_fallback: g.plugins_dir.is_none(),
        filters: Filters {
            read_only: g.read_only,
            tools: clean(&g.tools),
            exclude_tools: clean(&g.exclude_tools),
            toolsets: clean(&g.toolsets),
        },
        init_timeout: seconds(g.init_timeout, "--init-timeout")?,
        call_timeout: seconds(g.call_timeout, "--call-timeout")?,
        catalog: crate::plugins::catalog(),
        max_calls: g.max_calls,
        max_calls_per_session: g.max_calls_per_session,
        serving,
        discovery: g.tool_discovery,
    };
    let Some(root) = files_root else {
        return Ok(Manager::start(config).await);
    };
    let environment = move || {
        let mut env = crate::config::environment();
        let root = root.to_string_lossy().into_owned();
        env.entry(crate::sandbox::ROOTS_ENV.to_owned())
            .and_modify(|v| {
                if v.is_empty() {
                    v.clone_from(&root)
                }
            })
            .or_insert(root);
        env
    };
    Ok(Manager::start_with_env(config, Box::new(environment)).await)
}

/// The published name of tool `local` of the plugin running built-in `kind`, whatever
/// prefix its manifest gives it.
fn tool_name(manager: &Manager, kind: &str, local: &str) -> anyhow::Result<String> {
    manager.find_tool(kind, local).with_context(|| {
        format!(
            "no `{local}` tool: the {kind} plugin is not loaded or not ready (see `plugboard plugins`)"
        )
    })
}

fn redis_url(value: &str) -> Result<crate::net::SecretString, std::convert::Infallible> {
    Ok(crate::net::SecretString::from(value))
}

fn exit_code(failed: bool) -> ExitCode {
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn clean(list: &[String]) -> Vec<String> {
    list.iter()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect()
}

fn seconds(value: f64, flag: &str) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(value)
        .ok()
        .filter(|d| !d.is_zero())
        .with_context(|| format!("{flag} must be a positive number of seconds"))
}

fn env_file_from_args() -> Option<PathBuf> {
    let mut args = std::env::args_os().skip(1);
    while let Some(arg) = args.next() {
        let arg = arg.to_string_lossy().into_owned();
        if arg == "--env-file" {
            return args.next().map(PathBuf::from);
        }
        if let Some(path) = arg.strip_prefix("--env-file=") {
            return Some(PathBuf::from(path));
        }
    }
    std::env::var_os("PLUGBOARD_ENV_FILE").map(PathBuf::from)
}

fn init_logging(global: &Global) {
    use tracing_subscriber::{EnvFilter, fmt};
    let directives = std::env::var("RUST_LOG").unwrap_or_else(|_| {
        if global.log.contains('=') {
            global.log.clone()
        } else {
            format!("{0},rmcp=warn,plugboard={0}", global.log)
        }
    });
    let filter =
        EnvFilter::try_new(&directives).unwrap_or_else(|_| EnvFilter::new("info,rmcp=warn"));
    // stderr only: in stdio mode stdout carries JSON-RPC and nothing else. Text logs are
    // escaped (no forged lines, no terminal control from a field), and so without colours.
    let builder = fmt().with_env_filter(filter);
    let _ = match global.log_format {
        LogFormat::Text => builder
            .with_writer(log::EscapedStderr)
            .with_ansi(false)
            .try_init(),
        LogFormat::Json => builder
            .with_writer(log::MaskedStderr)
            .with_ansi(false)
            .json()
            .try_init(),
    };
    // Panics inside plugins are caught and answered as error results; log them once, through
    // tracing, instead of the default hook's unstructured stderr text.
    std::panic::set_hook(Box::new(|info| {
        let at = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_default();
        tracing::error!(%at, %message, "panic");
    }));
}
