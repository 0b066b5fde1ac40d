//! `hotline init` and `hotline serve`: creating a party's files and running its node.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use hotline::setup;
use serde_json::json;

use super::view::Out;

#[derive(clap::Args)]
pub struct InitArgs {
    /// The party id, such as PER.
    #[arg(long)]
    party: String,
    /// Folder to create the party's files in.
    #[arg(long)]
    dir: PathBuf,
    /// Address the node listens on.
    #[arg(long, default_value = "127.0.0.1:7001")]
    listen: SocketAddr,
    /// Address peers reach the node at, https://HOST:PORT (default: https://LISTEN; needed when
    /// LISTEN is 0.0.0.0 or [::], which peers cannot dial).
    #[arg(long)]
    endpoint: Option<String>,
    /// Log origin and key name (default: hotline.example/PARTY).
    #[arg(long)]
    origin: Option<String>,
    /// Display name in the agreement.
    #[arg(long)]
    name: Option<String>,
    /// Bring the party's own PKI: a folder with ca.pem and node, operator and auditor .pem/.key
    /// files (the layout init writes to DIR/tls); the node certificate must be valid for the
    /// endpoint's host. Without it, init makes a CA and issues them.
    #[arg(long)]
    tls_from: Option<PathBuf>,
    /// Keep the identity key on a PKCS#11 token: the module (a shared library, such as
    /// /usr/lib/softhsm/libsofthsm2.so). The key must exist there (an Ed25519 key pair made by the
    /// token's tools, private and public objects labelled --key); init writes only its public half.
    #[arg(long, requires_all = ["token", "key"])]
    pkcs11: Option<PathBuf>,
    /// The token's label.
    #[arg(long, requires = "pkcs11")]
    token: Option<String>,
    /// The key's label on the token.
    #[arg(long, requires = "pkcs11")]
    key: Option<String>,
    /// A file (mode 0600) holding the token's user PIN.
    #[arg(long, requires = "pkcs11", conflicts_with = "pin_env")]
    pin_file: Option<PathBuf>,
    /// An environment variable holding the token's user PIN (default HOTLINE_PKCS11_PIN).
    #[arg(long, requires = "pkcs11")]
    pin_env: Option<String>,
}

pub fn init(args: InitArgs, out: Out) -> anyhow::Result<ExitCode> {
    if !hotline::agreement::is_valid_party_id(&args.party) {
        anyhow::bail!(
            "--party {:?}: a party id is 1 to 32 letters, digits and '-'",
            args.party
        );
    }
    let endpoint = match args.endpoint {
        Some(e) => e,
        None if args.listen.ip().is_unspecified() => anyhow::bail!(
            "--listen {} takes calls on every address, but peers cannot dial {}; give --endpoint https://HOST:{}, the name or address peers reach this node at",
            args.listen,
            args.listen.ip(),
            args.listen.port()
        ),
        None => format!("https://{}", args.listen),
    };
    let host = endpoint.strip_prefix("https://").unwrap_or_default();
    let unspecified = ["0.0.0.0", "[::]"]
        .iter()
        .any(|h| host.starts_with(&format!("{h}:")) || host == *h);
    if host.is_empty() || unspecified {
        anyhow::bail!("--endpoint {endpoint:?}: give https://HOST:PORT, the name or address peers reach this node at");
    }
    let origin = args.origin.unwrap_or_else(|| format!("hotline.example/{}", args.party));
    let name = args.name.unwrap_or_else(|| format!("{} national CSIRT", args.party));
    let token = args.pkcs11.as_ref().map(|module| hotline::pkcs11::TokenRef {
        module: module.clone(),
        token: args.token.clone().unwrap_or_default(),
        key: args.key.clone().unwrap_or_default(),
        pin: match (&args.pin_file, &args.pin_env) {
            // Written relative to the configuration when it is given relative to here.
            (Some(file), _) => hotline::pkcs11::PinSource::File(std::path::absolute(file).unwrap_or(file.clone())),
            (None, var) => hotline::pkcs11::PinSource::Env(var.clone().unwrap_or("HOTLINE_PKCS11_PIN".into())),
        },
    });
    let made = setup::create(
        &args.dir,
        &setup::Plan {
            party: &args.party,
            origin: &origin,
            name: &name,
            listen: args.listen,
            endpoint: &endpoint,
            own_tls: args.tls_from.as_deref(),
            token: token.as_ref(),
        },
    )?;
    let dir = args.dir.display();
    // Each step runs as printed (tests/cli_nodes.rs runs them); the agreement
    // lands where the configuration looks for it.
    let next_steps = [
        format!("hotline agreement new {dir}/party.toml --out {dir}/agreement.toml"),
        match token {
            None => format!("hotline agreement sign {dir}/agreement.toml --key {dir}/identity.key"),
            Some(_) => format!(
                "hotline agreement sign {dir}/agreement.toml --config {}",
                made.config.display()
            ),
        },
        format!("hotline serve --config {}", made.config.display()),
    ];
    let key_at = match &token {
        None => format!("{dir}/identity.key (0600)"),
        Some(t) => format!("key {:?} on token {:?} ({})", t.key, t.token, t.module.display()),
    };
    out.print(
        &json!({"party": args.party, "dir": args.dir, "config": made.config, "vkey": made.vkey,
                "party_entry_file": args.dir.join("party.toml"), "next_steps": next_steps}),
        || {
            format!(
                "created party {party} in {dir}\n  config       {config}\n  identity key {key_at}, verifier key {vkey}\n  encryption   {dir}/encryption.key (0600; its public half is in party.toml)\n  TLS          {dir}/tls/ (CA, node, operator and auditor certificates)\n\n\
                 next steps:\n  1. share {dir}/party.toml with the other parties and build the agreement\n     (add their party.toml files after this one):\n       {new}\n  \
                 2. every party signs the same file, and each keeps the signed copy as agreement.toml in its folder:\n       {sign}\n  \
                 3. start the node:\n       {serve}\n",
                party = args.party,
                config = made.config.display(),
                vkey = made.vkey,
                new = next_steps[0],
                sign = next_steps[1],
                serve = next_steps[2],
            )
        },
    );
    Ok(ExitCode::SUCCESS)
}

#[derive(clap::Args)]
pub struct ServeArgs {
    /// The node configuration.
    #[arg(long, env = "HOTLINE_CONFIG", default_value = "hotline.toml")]
    config: PathBuf,
    /// How to write the log: text (under systemd, without timestamps: journald adds them) or
    /// JSON lines for a log shipper.
    #[arg(long, value_enum, default_value = "text", ignore_case = true)]
    log_format: super::files::LogFormat,
    /// The same as --log-format json.
    #[arg(long, conflicts_with = "log_format")]
    log_json: bool,
    /// Re-hash every log entry at start, not only those appended since the last start.
    #[arg(long)]
    recheck_all_entries: bool,
}

pub fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let format = match args.log_json {
        true => super::files::LogFormat::Json,
        false => args.log_format,
    };
    let mut config = super::files::load_config(&args.config)?;
    super::files::init_tracing(config.log.as_deref().unwrap_or("info"), format);
    if args.recheck_all_entries {
        config.recheck_log = hotline::log::Recheck::All;
    }
    super::runtime::block_on(async {
        let mut running = hotline::server::start(&config, None, hotline::clock::Clock::system()).await?;
        tracing::info!(addr = %running.addr, party = %config.party, "press Ctrl-C to stop");
        let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
        let stop = shutdown_signal();
        tokio::pin!(stop);
        loop {
            tokio::select! {
                _ = &mut stop => break,
                _ = hangup.recv() => reload(&args.config, &config, &mut running).await,
            }
        }
        tracing::info!("shutting down: finishing in-flight calls and log batches");
        running.stop().await?;
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// SIGHUP: reads the configuration again and takes up what a running node
/// can; what needs a restart is named in one line; an invalid file changes nothing.
#[tracing::instrument(name = "reload", skip_all, fields(config = %path.display()))]
async fn reload(path: &std::path::Path, started: &hotline::config::Config, running: &mut hotline::server::Running) {
    let new = match hotline::config::Config::load(path) {
        Ok(new) => new,
        Err(e) => {
            tracing::warn!(error = %e, "reload refused: nothing changed");
            return;
        }
    };
    let mut done = running.reload(started, &new).await;
    // What is logged: the configuration's `log`, when it names another.
    if let Some(directives) = new.log.as_deref().filter(|d| Some(*d) != started.log.as_deref()) {
        match super::files::set_log_filter(directives) {
            Ok(()) => done.applied.push(format!("log: {directives}")),
            Err(e) => tracing::warn!(error = %e, "reload: log {directives:?} is not a filter RUST_LOG would take"),
        }
    }
    if !done.needs_restart.is_empty() {
        tracing::warn!(
            settings = %done.needs_restart.join(", "),
            "reload: these cannot change while the node runs; it keeps what it started with until restarted"
        );
    }
    tracing::info!(applied = %done.applied.join("; "), "reloaded");
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(t) => t,
            Err(_) => {
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
