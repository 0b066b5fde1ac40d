//! The CLI's edges with the machine: reading inputs, replacing files
//! atomically, and where `tracing` output goes.

use std::path::{Path, PathBuf};

use anyhow::Context;

/// How `serve` writes its log.
#[derive(Clone, Copy, Debug, PartialEq, clap::ValueEnum)]
pub enum LogFormat {
    /// One line of text per event, its fields as key=value.
    Text,
    /// One JSON object per line, its fields as keys, for a log shipper.
    Json,
}

/// Sends `tracing` output to stderr, filtered by RUST_LOG (default `level`),
/// one event per line. Under systemd (`JOURNAL_STREAM` set) text carries no
/// timestamp of its own, journald adds one; colour codes only on a terminal.
pub fn init_tracing(level: &str, format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let journald = std::env::var_os("JOURNAL_STREAM").is_some();
    // The handle that changes the filter later (a reload), whichever format was built.
    macro_rules! keep {
        ($b:expr) => {{
            let b = $b;
            let handle = b.reload_handle();
            let _ = LOG_FILTER.set(Box::new(move |directives: &str| {
                let filter = tracing_subscriber::EnvFilter::try_new(directives).map_err(|e| e.to_string())?;
                handle.reload(filter).map_err(|e| e.to_string())
            }));
            let _ = b.try_init();
        }};
    }
    match (format, journald) {
        (LogFormat::Json, _) => keep!(builder.json().with_filter_reloading()),
        (LogFormat::Text, true) => keep!(builder.without_time().with_filter_reloading()),
        (LogFormat::Text, false) => keep!(builder.with_filter_reloading()),
    }
}

/// Sets what is logged from now on (`RUST_LOG`'s syntax), once tracing is initialised.
type SetFilter = Box<dyn Fn(&str) -> Result<(), String> + Send + Sync>;
static LOG_FILTER: std::sync::OnceLock<SetFilter> = std::sync::OnceLock::new();

/// Logs what `directives` say from now on (a reload); an invalid one changes nothing.
pub fn set_log_filter(directives: &str) -> Result<(), String> {
    match LOG_FILTER.get() {
        Some(set) => set(directives),
        None => Err("logging is not set up".into()),
    }
}

/// Reads a file, or standard input for `-`, naming the file on failure.
pub fn read_input(path: &Path) -> anyhow::Result<Vec<u8>> {
    if path == Path::new("-") {
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf).context("reading standard input")?;
        return Ok(buf);
    }
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

/// Replaces a file atomically: a synced temporary file renamed over it.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        std::io::Write::write_all(&mut f, bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().with_context(|| format!("writing {}", path.display()))
}

/// The node configuration a command was pointed at (`--config`, or
/// `HOTLINE_CONFIG`, or `hotline.toml` here); one that does not exist says
/// how to point at another.
pub fn load_config(path: &Path) -> anyhow::Result<hotline::config::Config> {
    if !path.exists() {
        anyhow::bail!(
            "{}: No such file or directory; give a node's configuration with --config FILE or HOTLINE_CONFIG=FILE (hotline init writes one)",
            path.display()
        );
    }
    Ok(hotline::config::Config::load(path)?)
}

/// A node's data directory, as a command that reads it offline is pointed
/// at it: `--data DIR` (the directory, or a copy of it), or else the one
/// the node's configuration names (`--config`, `HOTLINE_CONFIG`, or
/// `hotline.toml` here), as the operator commands, `backup` and `export
/// stix` take it.
#[derive(clap::Args)]
pub struct DataDir {
    /// The node's data directory, or a copy of it (default: the one --config names).
    #[arg(long)]
    data: Option<PathBuf>,
    /// The node's configuration, whose data directory is read when --data is not given.
    #[arg(long, env = "HOTLINE_CONFIG", default_value = "hotline.toml")]
    config: PathBuf,
}

impl DataDir {
    /// The directory.
    pub fn path(&self) -> anyhow::Result<PathBuf> {
        match &self.data {
            Some(dir) => Ok(dir.clone()),
            None if !self.config.exists() => anyhow::bail!(
                "{}: No such file or directory; give a node's data directory with --data DIR, or its configuration with --config FILE or HOTLINE_CONFIG=FILE",
                self.config.display()
            ),
            None => Ok(load_config(&self.config)?.data),
        }
    }
}

/// A verifier key given on the command line (`--vkey`): its text, or a file
/// holding it, such as the `identity.pub` that `hotline init` writes.
pub fn verifier_key(arg: &str) -> anyhow::Result<hotline::keys::VerifierKey> {
    if let Ok(key) = arg.parse() {
        return Ok(key);
    }
    let path = Path::new(arg);
    if !path.is_file() {
        anyhow::bail!(
            "--vkey {arg:?} is neither a verifier key (NAME+HEX+BASE64, as identity.pub holds it) nor a file holding one"
        );
    }
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    text.trim()
        .parse()
        .with_context(|| format!("{}: not a verifier key", path.display()))
}

/// The identity key a command signs with: the key file given, or else the
/// key the node's configuration names, in a file or on a PKCS#11 token.
pub fn signing_key(key: Option<&Path>, config: &Path) -> anyhow::Result<hotline::keys::IdentityKey> {
    match key {
        Some(file) => Ok(hotline::keys::IdentityKey::load(file)?),
        // The agreement being signed need not be in place yet.
        None if !config.exists() => anyhow::bail!(
            "{}: No such file or directory; give --key FILE, or a node's configuration with --config FILE",
            config.display()
        ),
        None => Ok(hotline::config::Config::load_before_agreement(config)?
            .keys
            .load()?
            .swap_remove(0)),
    }
}
