//! `hotline bench sign`: the signing path of a node's identity key as its
//! configuration names it (a file, or a PKCS#11 token) beside a key file on
//! this machine, as signatures per second and their ratio. On a software
//! token this is the PKCS#11 path's own cost; a real HSM's figure depends on
//! the HSM.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use serde_json::json;

use crate::cli::view::{Out, progress_bar};

/// `hotline bench sign`.
#[derive(clap::Args)]
pub struct SignArgs {
    /// The node configuration whose identity key is measured.
    #[arg(long, env = "HOTLINE_CONFIG", default_value = "hotline.toml")]
    config: PathBuf,
    /// Signatures made with each key.
    #[arg(long, default_value_t = 2000)]
    signatures: u32,
}

/// Signatures per second of `key` over messages the size of a notice's DSSE pre-authentication encoding.
fn rate(key: &hotline::keys::IdentityKey, n: u32, out: Out, what: &str) -> anyhow::Result<f64> {
    let message = vec![0x5a_u8; 600];
    let bar = progress_bar(out, what, "signatures");
    bar.set_length(u64::from(n));
    let started = Instant::now();
    for i in 0..n {
        key.sign(&message)?;
        bar.set_position(u64::from(i) + 1);
    }
    bar.finish_and_clear();
    Ok(f64::from(n) / started.elapsed().as_secs_f64().max(1e-9))
}

/// Measures and prints.
pub fn run(args: SignArgs, out: Out) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        args.config.exists(),
        "{}: No such file or directory; give a node's configuration with --config FILE",
        args.config.display()
    );
    let config = hotline::config::Config::load_before_agreement(&args.config)?;
    let configured = config.keys.load()?.swap_remove(0);
    let file = hotline::keys::IdentityKey::generate(configured.name())?;
    let where_ = config.keys.describe();
    let configured_rate = rate(&configured, args.signatures, out, "signing with the node's key")?;
    let file_rate = rate(&file, args.signatures, out, "signing with a key file")?;
    let ratio = configured_rate / file_rate;
    out.print(
        &json!({"key": where_, "on_token": configured.on_token(), "signatures": args.signatures,
                "signatures_per_second": configured_rate, "file_key_signatures_per_second": file_rate,
                "ratio": ratio}),
        || {
            format!(
                "{} signatures of 600 bytes each\n  the node's key ({where_}): {configured_rate:.0}/s\n  a key file:                {file_rate:.0}/s\n  ratio: {ratio:.3}\n",
                args.signatures
            )
        },
    );
    Ok(ExitCode::SUCCESS)
}
