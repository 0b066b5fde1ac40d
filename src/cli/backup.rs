//! `hotline backup` and `hotline restore`: a consistent copy of a node's
//! store taken while the node serves, and its return only once it verifies
//! completely. A copy is one SQLite file holding the log, its checkpoints and
//! the node's state as one snapshot, whichever engine the node keeps them
//! in: SQLite copies itself (`VACUUM INTO`); PostgreSQL is read in one
//! repeatable-read transaction, and restored into an empty database. Both commands re-hash every entry and
//! check every checkpoint's signature against the party's own key; a node
//! started on a restored copy then compares it with what its peers witnessed
//! before it signs anything (rollback protection, `node/rollback.rs`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use hotline::config::Config;
use hotline::log::verify;
use hotline::store::{self, DB_FILE};
use serde_json::json;

use super::view::Out;
use super::view::progress_bar;

/// What `hotline backup` copies, and where to.
#[derive(clap::Args)]
pub struct BackupArgs {
    /// The node's configuration: its data directory is what is copied.
    #[arg(long, default_value = "hotline.toml")]
    config: PathBuf,
    /// The file to write; refused if it exists.
    #[arg(long)]
    out: PathBuf,
}

/// What `hotline restore` puts back, and where.
#[derive(clap::Args)]
pub struct RestoreArgs {
    /// A file `hotline backup` wrote.
    file: PathBuf,
    /// The node's configuration. Its data directory must hold no store: stop
    /// the node and move the old one (with its -wal and -shm files) aside.
    #[arg(long, default_value = "hotline.toml")]
    config: PathBuf,
}

/// Copies the store of a node (running or not) into `--out`, verified.
pub fn backup(args: BackupArgs, out: Out) -> anyhow::Result<ExitCode> {
    let config = super::files::load_config(&args.config)?;
    store::bind(&config.data, config.database.as_deref())?;
    if args.out.exists() {
        bail!("{}: exists already; choose another file", args.out.display());
    }
    // The copy is made and verified beside its destination, then renamed into place.
    let staging = PathBuf::from(format!("{}.partial", args.out.display()));
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(&staging).with_context(|| format!("creating {}", staging.display()))?;
    let copied = staging.join(DB_FILE);
    let result = (|| {
        // One read transaction: a snapshot of the log and the state as of one commit.
        let source = store::open_reader(&config.data)?;
        let copying = || format!("copying the store of {}", store::location(&config.data).display());
        if source.is_postgres() {
            store::copy_store(&source, &store::open_writer(&staging)?).with_context(copying)?;
        } else {
            source
                .execute("VACUUM INTO ?1", [copied.to_string_lossy()])
                .with_context(copying)?;
        }
        drop(source);
        let report = verified(&staging, &config, out)?;
        durable_rename(&copied, &args.out)?;
        anyhow::Ok(report)
    })();
    let _ = std::fs::remove_dir_all(&staging);
    let report = result?;
    let bytes = std::fs::metadata(&args.out).map(|m| m.len()).unwrap_or(0);
    out.print(
        &json!({"file": args.out, "entries": report.entries, "checkpoints": report.checkpoints, "root": report.root, "bytes": bytes}),
        || {
            format!(
                "backed up {} entries ({} signed checkpoints, root {}) of {} into {} ({bytes} bytes), verified\n",
                report.entries,
                report.checkpoints,
                report.root,
                config.data.display(),
                args.out.display()
            )
        },
    );
    Ok(ExitCode::SUCCESS)
}

/// Puts a backup in place as the node's store, only once it verifies.
pub fn restore(args: RestoreArgs, out: Out) -> anyhow::Result<ExitCode> {
    let config = super::files::load_config(&args.config)?;
    store::bind(&config.data, config.database.as_deref())?;
    let postgres = store::postgres_url(&config.data)?.is_some();
    let target = store::location(&config.data);
    if !postgres && target.exists() {
        bail!(
            "{}: a store is there already; stop the node and move it (with its -wal and -shm files) aside first",
            target.display()
        );
    }
    let staging = config.data.join(".restoring");
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(&staging).with_context(|| format!("creating {}", staging.display()))?;
    let result = (|| {
        std::fs::copy(&args.file, staging.join(DB_FILE)).with_context(|| format!("reading {}", args.file.display()))?;
        let report =
            verified(&staging, &config, out).with_context(|| format!("{} does not verify", args.file.display()))?;
        if postgres {
            let into = store::open_writer(&config.data)?;
            let held: i64 = into.query_row("SELECT COUNT(*) FROM entries", [], |r| r.get(0))?;
            if held > 0 {
                bail!(
                    "{}: a store is there already: the PostgreSQL database holds a log of {held} entries; restore into an empty database",
                    target.display()
                );
            }
            store::copy_store(&store::open_reader(&staging)?, &into)
                .with_context(|| format!("restoring into {}", target.display()))?;
        } else {
            durable_rename(&staging.join(DB_FILE), &target)?;
        }
        anyhow::Ok(report)
    })();
    let _ = std::fs::remove_dir_all(&staging);
    let report = result?;
    out.print(
        &json!({"file": args.file, "store": target, "entries": report.entries, "checkpoints": report.checkpoints, "root": report.root}),
        || {
            format!(
                "restored {} entries ({} signed checkpoints, root {}) into {}; at start the node compares them with what its peers witnessed\n",
                report.entries,
                report.checkpoints,
                report.root,
                target.display()
            )
        },
    );
    Ok(ExitCode::SUCCESS)
}

/// Checks the store in `dir` completely: SQLite's own integrity check, then
/// every entry re-hashed and every checkpoint verified against this party's key.
fn verified(dir: &Path, config: &Config, out: Out) -> anyhow::Result<verify::Report> {
    let db = dir.join(DB_FILE);
    let integrity: String = store::open_reader(dir)?
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .with_context(|| format!("{}: integrity check", db.display()))?;
    if integrity != "ok" {
        bail!("{}: SQLite integrity check failed: {integrity}", db.display());
    }
    // Checked with the key in use, wherever it is (a file, or a token).
    let key = config.keys.load()?.swap_remove(0);
    let bar = progress_bar(out, "verifying the copy", "entries");
    let report = verify::verify_data_dir(dir, key.verifier(), |done, total| {
        bar.set_length(total);
        bar.set_position(done);
    });
    bar.finish_and_clear();
    Ok(report?)
}

/// Flushes `from` to disk and renames it to `to`, flushing `to`'s folder, so
/// the file is whole after a crash at any instant.
fn durable_rename(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::File::open(from)
        .and_then(|f| f.sync_all())
        .with_context(|| format!("flushing {}", from.display()))?;
    std::fs::rename(from, to).with_context(|| format!("moving {} to {}", from.display(), to.display()))?;
    let folder = to
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::File::open(folder)
        .and_then(|f| f.sync_all())
        .with_context(|| format!("flushing {}", folder.display()))?;
    Ok(())
}
