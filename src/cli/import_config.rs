//! `plugboard import claude-desktop | cursor | vscode [FILE]`: the MCP servers of a client's
//! config as `kind = "mcp"` plugins, one manifest per server, so that one plugboard entry
//! replaces them all. Literal secrets in a server's `env` move into `.env` and the manifest
//! names the variable; an existing manifest is never replaced without `--force`.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    path::{Path, PathBuf},
    process::ExitCode,
};

use anyhow::Context;
use serde::Deserialize;
use serde_json::Value;

/// Which client's file format (and default location).
#[derive(Debug, Clone, Copy)]
pub(super) enum Client {
    ClaudeDesktop,
    Cursor,
    Vscode,
}

impl Client {
    fn label(self) -> &'static str {
        match self {
            Client::ClaudeDesktop => "Claude Desktop",
            Client::Cursor => "Cursor",
            Client::Vscode => "VS Code",
        }
    }

    /// Where the client keeps its MCP servers.
    fn default_file(self) -> Option<PathBuf> {
        let home = std::env::var_os("HOME").map(PathBuf::from);
        match self {
            Client::ClaudeDesktop => {
                if cfg!(target_os = "macos") {
                    home.map(|h| {
                        h.join("Library/Application Support/Claude/claude_desktop_config.json")
                    })
                } else if cfg!(windows) {
                    std::env::var_os("APPDATA")
                        .map(|a| PathBuf::from(a).join("Claude/claude_desktop_config.json"))
                } else {
                    std::env::var_os("XDG_CONFIG_HOME")
                        .map(PathBuf::from)
                        .or_else(|| home.map(|h| h.join(".config")))
                        .map(|c| c.join("Claude/claude_desktop_config.json"))
                }
            }
            Client::Cursor => home.map(|h| h.join(".cursor/mcp.json")),
            Client::Vscode => Some(PathBuf::from(".vscode/mcp.json")),
        }
    }
}

/// One server as the clients write it.
#[derive(Debug, Deserialize)]
struct Server {
    command: Option<String>,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    cwd: Option<String>,
    url: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    /// VS Code: `stdio`, `http` or `sse`.
    #[serde(rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    disabled: bool,
}

/// What became of one server.
enum Done {
    Written { path: PathBuf, moved: Vec<String> },
    Skipped(String),
}

pub(super) fn run(
    client: Client,
    file: Option<PathBuf>,
    force: bool,
    plugins_dir: &Path,
    env_file: &Path,
) -> anyhow::Result<ExitCode> {
    let file = file
        .or_else(|| client.default_file())
        .context("no config file given, and its usual place is unknown here: name the file")?;
    let text = std::fs::read_to_string(&file)
        .with_context(|| format!("reading {} ({})", file.display(), client.label()))?;
    let config: Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", file.display()))?;
    // Claude Desktop and Cursor: `mcpServers`; VS Code: `servers`.
    let servers = config
        .get("mcpServers")
        .or_else(|| config.get("servers"))
        .and_then(Value::as_object)
        .with_context(|| {
            format!(
                "{} has no `mcpServers` (or `servers`) object",
                file.display()
            )
        })?;

    let mut dotenv = std::fs::read_to_string(env_file).unwrap_or_default();
    let mut report = String::new();
    let mut failed = false;
    for (key, value) in servers {
        let name = plugin_name(key);
        let done = match serde_json::from_value::<Server>(value.clone()) {
            Err(e) => Done::Skipped(format!("not a server entry: {e}")),
            Ok(server) => import_one(&name, &server, force, plugins_dir, &mut dotenv)?,
        };
        match done {
            Done::Written { path, moved } => {
                let _ = write!(report, "{key}: wrote {}", path.display());
                if !moved.is_empty() {
                    let _ = write!(
                        report,
                        " (moved to {}: {})",
                        env_file.display(),
                        moved.join(", ")
                    );
                }
                report.push('\n');
            }
            Done::Skipped(why) => {
                failed |= why.contains("--force");
                let _ = writeln!(report, "{key}: skipped: {why}");
            }
        }
    }
    if dotenv != std::fs::read_to_string(env_file).unwrap_or_default() {
        write_private(env_file, &dotenv)?;
    }
    print!("{report}");
    println!(
        "Imported from {} ({}). Point {} at plugboard alone: see claude_desktop_config.example.json.",
        file.display(),
        client.label(),
        client.label()
    );
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn import_one(
    name: &str,
    server: &Server,
    force: bool,
    plugins_dir: &Path,
    dotenv: &mut String,
) -> anyhow::Result<Done> {
    let command = server.command.as_deref().filter(|c| !c.trim().is_empty());
    if command.is_none() && server.url.is_none() {
        return Ok(Done::Skipped("no command and no url".into()));
    }
    if command.is_some_and(|command| {
        Path::new(command)
            .file_name()
            .is_some_and(|f| f.to_string_lossy().starts_with("plugboard"))
    }) {
        return Ok(Done::Skipped("this is plugboard itself".into()));
    }
    let path = plugins_dir.join(name).join("plugin.toml");
    if path.exists() && !force {
        return Ok(Done::Skipped(format!(
            "{} exists (--force to replace it)",
            path.display()
        )));
    }
    let mut moved = Vec::new();
    let mut declared = String::new();
    // A literal secret goes into .env, and the manifest names it.
    let mut keep_secret = |key: &str, value: &str| -> String {
        let var = free_variable(dotenv, key, name, value);
        if !has_variable(dotenv, &var) {
            if !dotenv.is_empty() && !dotenv.ends_with('\n') {
                dotenv.push('\n');
            }
            let _ = writeln!(dotenv, "{var}={}", quote_env(value));
        }
        let _ = write!(
            declared,
            "\n[env.{var}]\nrequired = true\nsecret = true\ndescription = \"{key} of the {name} server (imported)\"\n"
        );
        moved.push(var.clone());
        format!("${{{var}}}")
    };
    let mut env = toml::Table::new();
    for (key, value) in &server.env {
        let value = vscode_variables(value);
        if value.contains("${") || !looks_secret(key, &value) {
            env.insert(key.clone(), value.into());
        } else {
            env.insert(key.clone(), keep_secret(key, &value).into());
        }
    }
    let mut headers = toml::Table::new();
    for (key, value) in &server.headers {
        let value = vscode_variables(value);
        let written = match value.split_once(' ') {
            // `Bearer <token>`: the token is the secret.
            _ if value.contains("${") => value,
            Some((scheme, token)) if key.eq_ignore_ascii_case("authorization") => {
                format!("{scheme} {}", keep_secret(&format!("{name}_token"), token))
            }
            _ if looks_secret(key, &value) => keep_secret(key, &value),
            _ => value,
        };
        headers.insert(key.clone(), written.into());
    }
    let mut mcp = toml::Table::new();
    match (command, &server.url) {
        (Some(command), _) => {
            mcp.insert("command".into(), command.into());
            mcp.insert(
                "args".into(),
                server
                    .args
                    .iter()
                    .map(|a| toml::Value::from(vscode_variables(a)))
                    .collect::<Vec<_>>()
                    .into(),
            );
            if !env.is_empty() {
                mcp.insert("env".into(), env.into());
            }
            if let Some(cwd) = &server.cwd {
                mcp.insert("cwd".into(), vscode_variables(cwd).into());
            }
        }
        (None, Some(url)) => {
            mcp.insert("url".into(), vscode_variables(url).into());
            if !headers.is_empty() {
                mcp.insert("headers".into(), headers.into());
            }
            if server.kind.as_deref() == Some("sse") {
                mcp.insert("transport".into(), "sse".into());
            }
        }
        (None, None) => unreachable!("checked above"),
    }
    let head = format!(
        "# Imported by `plugboard import`: the MCP server `{name}`, hosted by plugboard.\n\
         name = {}\nkind = \"mcp\"\nenabled = {}\ndescription = {}\n",
        toml::Value::from(name),
        !server.disabled,
        toml::Value::from(format!("The {name} MCP server")),
    );
    let body = toml::to_string(&toml::Table::from_iter([("mcp".to_owned(), mcp.into())]))
        .context("writing the manifest")?;
    std::fs::create_dir_all(path.parent().expect("a folder"))
        .with_context(|| format!("creating {}", plugins_dir.display()))?;
    std::fs::write(&path, format!("{head}{declared}\n{body}"))
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(Done::Written { path, moved })
}

/// A plugin name from a server's key: lower case, `a-z0-9_-`.
fn plugin_name(key: &str) -> String {
    let name: String = key
        .to_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let name = name.trim_matches('-').to_owned();
    if name.is_empty() {
        "server".into()
    } else {
        name
    }
}

/// VS Code writes `${env:NAME}`; plugboard reads `${NAME}`.
fn vscode_variables(value: &str) -> String {
    value.replace("${env:", "${")
}

/// Whether an env value is a secret to keep out of the manifest: its name says so, or it
/// looks like a token.
fn looks_secret(key: &str, value: &str) -> bool {
    let key = key.to_ascii_uppercase();
    // Anywhere in the name (plugboard's own rule wants them at its end), and AUTH besides.
    let named = crate::net::secret::SECRET_WORDS
        .iter()
        .chain(&["AUTH", "CREDENTIAL"])
        .any(|n| key.contains(n));
    let tokenish = value.len() >= 20
        && !value.contains(char::is_whitespace)
        && !value.contains('/')
        && value.chars().any(|c| c.is_ascii_digit());
    named || tokenish
}

fn has_variable(dotenv: &str, var: &str) -> bool {
    dotenv.lines().any(|l| {
        l.trim_start()
            .trim_start_matches("export ")
            .split_once('=')
            .is_some_and(|(k, _)| k.trim() == var)
    })
}

fn value_of(dotenv: &str, var: &str) -> Option<String> {
    dotenv.lines().find_map(|l| {
        let (k, v) = l
            .trim_start()
            .trim_start_matches("export ")
            .split_once('=')?;
        (k.trim() == var).then(|| v.trim().trim_matches('"').trim_matches('\'').to_owned())
    })
}

/// The variable to hold `value`: the env key itself, unless `.env` has it with another value
/// (then `<PLUGIN>_<KEY>`, numbered if need be).
fn free_variable(dotenv: &str, key: &str, plugin: &str, value: &str) -> String {
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_uppercase()
                } else {
                    '_'
                }
            })
            .collect()
    };
    let mut candidates = vec![clean(key), format!("{}_{}", clean(plugin), clean(key))];
    for n in 2..100 {
        candidates.push(format!("{}_{}_{n}", clean(plugin), clean(key)));
    }
    candidates
        .into_iter()
        .find(|v| value_of(dotenv, v).is_none_or(|have| have == value))
        .unwrap_or_else(|| clean(key))
}

/// A value as `.env` takes it: quoted when it has to be.
fn quote_env(value: &str) -> String {
    if value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_.:/@+".contains(c))
    {
        value.to_owned()
    } else {
        format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""))
    }
}

/// Write `.env`, readable by its owner alone where the system has such permissions.
fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_told_from_settings() {
        assert!(looks_secret("GITHUB_PERSONAL_ACCESS_TOKEN", "x"));
        assert!(looks_secret("X", "abcdef0123456789abcdef"));
        assert!(!looks_secret("LOG_LEVEL", "debug"));
        assert!(!looks_secret("ROOT", "/home/me/projects/2026"));
        assert_eq!(plugin_name("My Server!"), "my-server");
        assert_eq!(vscode_variables("${env:TOKEN}"), "${TOKEN}");
        let dotenv = "TOKEN=other\nexport A_TOKEN=\"same\"\n";
        assert_eq!(free_variable(dotenv, "TOKEN", "a", "new"), "A_TOKEN_2");
        assert_eq!(free_variable(dotenv, "TOKEN", "b", "other"), "TOKEN");
        assert_eq!(quote_env("ab c"), "\"ab c\"");
    }
}
