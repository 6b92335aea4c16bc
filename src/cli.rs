//! The command line: `serve`, `plugins`, `tools`, `call`, `check`, `import`, `ask`,
//! `consensus`.

use std::{net::SocketAddr, path::PathBuf, process::ExitCode, sync::Arc, time::Duration};

use anyhow::Context;
use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum, builder::BoolishValueParser};
use tokio_util::sync::CancellationToken;

use crate::{
    plugin::{Filters, Manager, ManagerConfig, Status, ToolContext},
    server,
};

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
    Serve(ServeArgs),
    /// Show every plugin and its status.
    Plugins {
        #[arg(long)]
        json: bool,
    },
    /// List the published tools.
    Tools {
        /// Print the tools exactly as tools/list returns them.
        #[arg(long)]
        json: bool,
    },
    /// Call one tool and print its result (exit status 1 if the result is an error).
    Call {
        /// Full tool name, e.g. `files_read`.
        tool: String,
        /// Arguments as a JSON object.
        #[arg(long, default_value = "{}")]
        args: String,
        /// Print the whole result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Report the configuration: which plugins are ready and which variables are missing.
    Check,
    /// Import rows into a service, with a progress bar.
    #[command(subcommand)]
    Import(ImportCommand),
    /// Ask an AI model; the answer is written out as it arrives.
    Ask {
        /// What to ask.
        prompt: String,
        /// A provider's name, or `auto` to let the routing rules pick.
        #[arg(long, short, default_value = "auto")]
        provider: String,
        /// Let the model call plugboard's tools (read-only ones unless configured).
        #[arg(long)]
        use_tools: bool,
        /// A system prompt.
        #[arg(long)]
        system: Option<String>,
        /// Print the whole result as JSON at the end instead of streaming.
        #[arg(long)]
        json: bool,
    },
    /// Ask several AI models at once; each answer is shown as it arrives, then the synthesis.
    Consensus {
        /// The question every model answers.
        prompt: String,
        /// Which providers to ask (comma-separated; default: every available one).
        #[arg(long, value_delimiter = ',')]
        providers: Vec<String>,
        /// PROVIDER=for|against|neutral (repeatable).
        #[arg(long = "stance", value_name = "PROVIDER=STANCE")]
        stances: Vec<String>,
        /// Seconds each provider may take.
        #[arg(long)]
        timeout: Option<f64>,
        /// Print the whole result as JSON at the end instead of streaming.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum ImportCommand {
    /// Upsert the rows of a CSV/TSV/JSON/JSONL file into an Airtable table on key fields:
    /// re-running never duplicates, and an interrupted import continues where it stopped.
    Airtable {
        /// Base id (app…).
        #[arg(long)]
        base: String,
        /// Table name or id.
        #[arg(long)]
        table: String,
        /// The file to import (inside the import folders: PLUGBOARD_FILES_ROOTS or the
        /// current folder, unless the airtable plugin's `import_roots` says otherwise).
        file: String,
        /// A key field (1 to 3 times): rows whose keys match a record update it.
        #[arg(long = "key", required = true)]
        keys: Vec<String>,
        /// COLUMN=FIELD (repeatable); with any, only mapped columns are imported.
        #[arg(long = "map", value_name = "COLUMN=FIELD")]
        mapping: Vec<String>,
        /// Let Airtable convert values and add select options.
        #[arg(long)]
        typecast: bool,
        /// Ignore a checkpoint of this import and start over.
        #[arg(long)]
        restart: bool,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// Serve HTTP on this address instead of stdio: Streamable HTTP at /mcp, legacy SSE at /sse.
    #[arg(long, env = "PLUGBOARD_HTTP", value_name = "ADDR")]
    http: Option<SocketAddr>,
    /// Bearer token HTTP clients must send; required off loopback.
    #[arg(long, env = "PLUGBOARD_HTTP_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Extra Host names HTTP requests may use (comma-separated; `*` for any).
    #[arg(long, env = "PLUGBOARD_ALLOWED_HOSTS", value_delimiter = ',')]
    allowed_hosts: Vec<String>,
    /// Extra browser origins allowed (comma-separated, e.g. `https://app.example.com`).
    #[arg(long, env = "PLUGBOARD_ALLOWED_ORIGINS", value_delimiter = ',')]
    allowed_origins: Vec<String>,
    /// Largest HTTP request body accepted, in bytes.
    #[arg(long, env = "PLUGBOARD_MAX_BODY_BYTES", default_value_t = 4 * 1024 * 1024)]
    max_body_bytes: usize,
}

/// Parse the command line and run it.
pub fn main() -> ExitCode {
    // `.env` must be in the environment before clap reads its env fallbacks.
    let env_file = env_file_from_args();
    let dotenv = crate::config::load_dotenv(env_file);
    let cli = Cli::parse();
    init_logging(&cli.global);
    if let Err(e) = &dotenv {
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
    // stderr only: in stdio mode stdout carries JSON-RPC and nothing else.
    let builder = fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let _ = match global.log_format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
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

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let g = &cli.global;
    let config = ManagerConfig {
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
        catalog: crate::plugins::catalog(),
        call_timeout: seconds(g.call_timeout, "--call-timeout")?,
    };
    let manager = Manager::start(config).await;
    let code = match cli.command {
        Command::Serve(args) => serve(manager.clone(), args)
            .await
            .map(|()| ExitCode::SUCCESS),
        Command::Plugins { json } => plugins(&manager, json),
        Command::Tools { json } => tools(&manager, json),
        Command::Call { tool, args, json } => call(&manager, &tool, &args, json).await,
        Command::Check => Ok(check(&manager).await),
        Command::Import(what) => import(&manager, what).await,
        Command::Ask {
            prompt,
            provider,
            use_tools,
            system,
            json,
        } => {
            let mut args = serde_json::json!({
                "prompt": prompt, "provider": provider, "use_tools": use_tools,
            });
            if let Some(system) = system {
                args["system"] = system.into();
            }
            run_agent_tool(&manager, "ask", args, json).await
        }
        Command::Consensus {
            prompt,
            providers,
            stances,
            timeout,
            json,
        } => {
            let mut args = serde_json::json!({"prompt": prompt, "providers": clean(&providers)});
            let mut by_provider = serde_json::Map::new();
            for pair in &stances {
                let (provider, stance) = pair
                    .split_once('=')
                    .with_context(|| format!("--stance `{pair}` must be PROVIDER=STANCE"))?;
                by_provider.insert(provider.trim().to_owned(), stance.trim().into());
            }
            args["stances"] = by_provider.into();
            if let Some(timeout) = timeout {
                args["timeout_secs"] = timeout.into();
            }
            run_agent_tool(&manager, "consensus", args, json).await
        }
    };
    manager.shutdown().await;
    code
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

async fn serve(manager: Arc<Manager>, args: ServeArgs) -> anyhow::Result<()> {
    // Served from a worker thread rather than from the thread that started the runtime, whose
    // future is woken through a futex of its own: one thread hop less per request.
    match tokio::spawn(serve_on_worker(manager, args)).await {
        Ok(served) => served,
        Err(e) => Err(anyhow::anyhow!("the server stopped: {e}")),
    }
}

async fn serve_on_worker(manager: Arc<Manager>, args: ServeArgs) -> anyhow::Result<()> {
    let ct = CancellationToken::new();
    spawn_signal_handlers(manager.clone(), ct.clone())?;
    match args.http {
        None => {
            tracing::info!(tools = manager.tools().len(), "serving MCP on stdio");
            tokio::select! {
                served = server::serve_stdio(manager) => served,
                _ = ct.cancelled() => Ok(()),
            }
        }
        Some(addr) => {
            let options = server::HttpOptions {
                addr,
                token: args.token.filter(|t| !t.is_empty()),
                allowed_hosts: clean(&args.allowed_hosts),
                allowed_origins: clean(&args.allowed_origins),
                max_body_bytes: args.max_body_bytes,
            };
            server::serve_http(manager, options, ct).await
        }
    }
}

/// SIGHUP reloads the plugins; SIGINT/SIGTERM stop the HTTP server gracefully.
fn spawn_signal_handlers(manager: Arc<Manager>, ct: CancellationToken) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut hangup = signal(SignalKind::hangup()).context("cannot listen for SIGHUP")?;
        tokio::spawn(async move {
            while hangup.recv().await.is_some() {
                tracing::info!("SIGHUP: reloading plugins");
                manager.reload().await;
                tracing::info!(tools = manager.tools().len(), "plugins reloaded");
            }
        });
        let mut terminate = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
        tokio::spawn(async move {
            tokio::select! {
                _ = terminate.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            tracing::info!("shutting down");
            ct.cancel();
        });
    }
    #[cfg(not(unix))]
    {
        let _ = manager;
        tokio::spawn(async move {
            let _ = tokio::signal::ctrl_c().await;
            ct.cancel();
        });
    }
    Ok(())
}

fn plugins(manager: &Manager, json: bool) -> anyhow::Result<ExitCode> {
    let statuses = manager.statuses();
    if json {
        println!("{}", serde_json::to_string_pretty(&statuses)?);
        return Ok(ExitCode::SUCCESS);
    }
    if statuses.is_empty() {
        println!(
            "no plugins found in {}",
            manager.config().plugins_dir.display()
        );
    }
    let width = statuses.iter().map(|s| s.name.len()).max().unwrap_or(0);
    for s in &statuses {
        let counts: Vec<String> = [
            (s.tools.len(), "tool"),
            (s.resources.len(), "resource"),
            (s.prompts.len(), "prompt"),
        ]
        .into_iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, what)| format!("{n} {what}{}", if n == 1 { "" } else { "s" }))
        .collect();
        let offer = if counts.is_empty() {
            String::new()
        } else {
            format!("  ({})", counts.join(", "))
        };
        println!("{:width$}  {}{offer}", s.name, s.status);
    }
    Ok(ExitCode::SUCCESS)
}

fn tools(manager: &Manager, json: bool) -> anyhow::Result<ExitCode> {
    let tools = manager.tools();
    if json {
        println!("{}", serde_json::to_string_pretty(&*tools)?);
        return Ok(ExitCode::SUCCESS);
    }
    let width = tools.iter().map(|t| t.name.len()).max().unwrap_or(0);
    for tool in tools.iter() {
        let a = tool.annotations.clone().unwrap_or_default();
        let kind = match (a.read_only_hint, a.destructive_hint) {
            (Some(true), _) => "read-only",
            (_, Some(true)) => "destructive",
            _ => "writes",
        };
        let summary = tool
            .description
            .as_deref()
            .unwrap_or("")
            .lines()
            .next()
            .unwrap_or("");
        println!("{:width$}  {kind:11}  {summary}", tool.name);
    }
    Ok(ExitCode::SUCCESS)
}

async fn call(manager: &Manager, tool: &str, args: &str, json: bool) -> anyhow::Result<ExitCode> {
    let args: serde_json::Value =
        serde_json::from_str(args).context("--args must be a JSON object")?;
    let serde_json::Value::Object(args) = args else {
        anyhow::bail!("--args must be a JSON object, like '{{\"path\": \"README.md\"}}'");
    };
    let result = manager
        .call(tool, Some(args), ToolContext::detached())
        .await;
    let failed = result.is_error == Some(true);
    if json {
        println!("{}", serde_json::to_string_pretty(&result)?);
    } else {
        for block in &result.content {
            match block.as_text() {
                Some(text) => println!("{}", text.text),
                None => println!("{}", serde_json::to_string(block)?),
            }
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

async fn import(manager: &Manager, what: ImportCommand) -> anyhow::Result<ExitCode> {
    let ImportCommand::Airtable {
        base,
        table,
        file,
        keys,
        mapping,
        typecast,
        restart,
        json,
    } = what;
    let mut map = serde_json::Map::new();
    for pair in &mapping {
        let (column, field) = pair
            .split_once('=')
            .with_context(|| format!("--map `{pair}` must be COLUMN=FIELD"))?;
        map.insert(column.to_owned(), field.into());
    }
    // A relative path means the current folder, as users expect on a command line.
    let path = std::path::absolute(&file).unwrap_or_else(|_| PathBuf::from(&file));
    let mut args = serde_json::json!({
        "base": base, "table": table, "path": path, "key_fields": keys,
        "typecast": typecast, "restart": restart,
    });
    if !map.is_empty() {
        args["mapping"] = map.into();
    }
    let serde_json::Value::Object(args) = args else {
        unreachable!("built as an object")
    };
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} [{bar:40}] {pos}/{len} rows  {per_sec}  eta {eta}  {msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    let sink_bar = bar.clone();
    let cx = ToolContext::detached().with_progress_sink(Arc::new(move |done, total, _| {
        if let Some(total) = total {
            sink_bar.set_length(total as u64);
        }
        sink_bar.set_position(done as u64);
    }));
    let result = manager.call("airtable_bulk_import", Some(args), cx).await;
    bar.finish_and_clear();
    let failed = result.is_error == Some(true);
    match (&result.structured_content, json) {
        (Some(report), true) => println!("{}", serde_json::to_string_pretty(report)?),
        (Some(report), false) => print_import_report(report),
        (None, _) => {
            for block in &result.content {
                if let Some(text) = block.as_text() {
                    eprintln!("{}", text.text);
                }
            }
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Run `ask` or `consensus` through the manager, writing the answer as it arrives.
async fn run_agent_tool(
    manager: &Manager,
    tool: &str,
    args: serde_json::Value,
    json: bool,
) -> anyhow::Result<ExitCode> {
    use std::io::Write;
    let serde_json::Value::Object(args) = args else {
        unreachable!("built as an object")
    };
    let mut cx = ToolContext::detached();
    if !json {
        cx = cx
            .with_text_sink(Arc::new(|text: &str| {
                let mut out = std::io::stdout().lock();
                let _ = out.write_all(text.as_bytes());
                let _ = out.flush();
            }))
            .with_progress_sink(Arc::new(|_, _, message: &str| {
                if !message.is_empty() {
                    eprintln!("· {message}");
                }
            }));
    }
    let result = manager.call(tool, Some(args), cx).await;
    let failed = result.is_error == Some(true);
    let report = result.structured_content.as_ref();
    if json {
        match report {
            Some(report) => println!("{}", serde_json::to_string_pretty(report)?),
            None => println!("{}", serde_json::to_string_pretty(&result)?),
        }
    } else if failed && report.is_none() {
        for block in &result.content {
            if let Some(text) = block.as_text() {
                eprintln!("plugboard: {}", text.text);
            }
        }
    } else if let Some(report) = report {
        // The answers were written as they arrived; what is left is the summary.
        if tool == "ask" {
            println!();
            if let Some(stopped) = report["stopped"].as_str() {
                eprintln!("[{stopped}]");
            }
            eprintln!(
                "[{} · {} · {} ms · {} tokens in, {} out]",
                report["provider"].as_str().unwrap_or("?"),
                report["model"].as_str().unwrap_or("?"),
                report["latency_ms"],
                report["input_tokens"],
                report["output_tokens"]
            );
        } else {
            if let Some(e) = report["synthesis_error"].as_str() {
                println!("── no synthesis ──\n{e}\n");
            }
            let agreed: Vec<&str> = report["agreed"]
                .as_array()
                .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
                .unwrap_or_default();
            println!(
                "{} of {} answered; agreed: {}; {} ms",
                report["answered"],
                report["opinions"].as_array().map_or(0, Vec::len),
                if agreed.is_empty() {
                    "none".to_owned()
                } else {
                    agreed.join(", ")
                },
                report["wall_ms"]
            );
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn print_import_report(report: &serde_json::Value) {
    let n = |k: &str| report[k].as_u64().unwrap_or(0);
    let list = |k: &str| report[k].as_array().cloned().unwrap_or_default();
    println!(
        "{} rows: {} created, {} updated, {} skipped, {} failed ({} batches{}, {:.1} s, {:.1} records/s)",
        n("rows"),
        n("created"),
        n("updated"),
        list("skipped").len(),
        list("failed").len(),
        n("batches"),
        match n("resumed_batches") {
            0 => String::new(),
            r => format!(", {r} done before this run"),
        },
        report["seconds"].as_f64().unwrap_or(0.0),
        report["records_per_second"].as_f64().unwrap_or(0.0),
    );
    for (label, key) in [("skipped", "skipped"), ("failed", "failed")] {
        for p in list(key) {
            println!(
                "  row {} {label}: {}",
                p["row"],
                p["reason"].as_str().unwrap_or("")
            );
        }
    }
}

/// The AI providers, as the agents plugin reports them.
async fn print_providers(manager: &Manager) {
    let uri = crate::plugins::agents::PROVIDERS_URI;
    let Ok(read) = manager.read_resource(uri, ToolContext::detached()).await else {
        return;
    };
    let Some(text) = read.contents.first().and_then(|c| match c {
        rmcp::model::ResourceContents::TextResourceContents { text, .. } => Some(text.clone()),
        _ => None,
    }) else {
        return;
    };
    let Ok(report) = serde_json::from_str::<serde_json::Value>(&text) else {
        return;
    };
    println!("AI providers:");
    for p in report["providers"].as_array().into_iter().flatten() {
        let name = p["name"].as_str().unwrap_or("?");
        match p["reason"].as_str() {
            None => println!(
                "  {name:10} available ({})",
                p["model"].as_str().unwrap_or("?")
            ),
            Some(reason) => println!("  {name:10} not available: {reason}"),
        }
    }
}

async fn check(manager: &Manager) -> ExitCode {
    let statuses = manager.statuses();
    let mut healthy = true;
    for s in &statuses {
        println!("{}: {}", s.name, s.status);
        for var in &s.env {
            let state = if var.set {
                "set"
            } else if var.required {
                "MISSING (required)"
            } else {
                "not set (optional)"
            };
            let secret = if var.secret { ", secret" } else { "" };
            println!("  {:28} {state}{secret}  {}", var.name, var.description);
        }
        if matches!(s.state, Status::Failed(_) | Status::Unconfigured(_)) {
            healthy = false;
        }
    }
    print_providers(manager).await;
    println!("{} tools published", manager.tools().len());
    if healthy {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
