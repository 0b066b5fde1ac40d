//! `hotline export stix`: the notices a node may share, as a STIX 2.1
//! bundle, read offline from its data directory.

use std::path::PathBuf;
use std::process::ExitCode;

use hotline::proto::Tlp;
use serde_json::json;

use super::files::write_atomic;
use super::view::Out;

/// `hotline export …`.
#[derive(clap::Subcommand)]
pub enum Command {
    /// Write the notices this node may share as a STIX 2.1 bundle: each an
    /// incident with its indicators, TLP 2.0 markings, the sending party's
    /// identity, and references to the signed envelope and its log entry.
    /// Exercises, communication checks and TLP:RED are never exported.
    Stix {
        /// The node configuration (its data folder is read, offline).
        #[arg(long, env = "HOTLINE_CONFIG", default_value = "hotline.toml")]
        config: PathBuf,
        /// The most restricted TLP exported: clear, green, amber or amber+strict.
        #[arg(long, default_value = "amber", value_parser = tlp)]
        max_tlp: Tlp,
        /// Write the bundle here instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

fn tlp(s: &str) -> Result<Tlp, String> {
    match s {
        "clear" => Ok(Tlp::Clear),
        "green" => Ok(Tlp::Green),
        "amber" => Ok(Tlp::Amber),
        "amber+strict" => Ok(Tlp::AmberStrict),
        _ => Err(format!(
            "{s:?}: one of clear, green, amber, amber+strict (TLP:RED is never exported)"
        )),
    }
}

/// Runs an export command.
pub fn run(cmd: Command, out: Out) -> anyhow::Result<ExitCode> {
    let Command::Stix {
        config,
        max_tlp,
        out: file,
    } = cmd;
    let config = super::files::load_config(&config)?;
    let c = hotline::store::open_reader(&config.data)?;
    // Sealed notices open with the node's encryption key.
    let opener = hotline::opener::Opener::load(&config.party, &config.encryption_key)?;
    let bundle = hotline::stix::bundle_of_log(&c, &config.party, max_tlp, &opener)?
        .ok_or_else(|| anyhow::anyhow!("{}: this node's log holds no adopted agreement", config.data.display()))?;
    let incidents = bundle["objects"]
        .as_array()
        .map_or(0, |o| o.iter().filter(|o| o["type"] == "incident").count());
    let text = serde_json::to_string_pretty(&bundle)? + "\n";
    match file {
        Some(file) => {
            write_atomic(&file, text.as_bytes())?;
            let objects = bundle["objects"].as_array().map_or(0, Vec::len);
            out.print(&json!({"file": file, "notices": incidents, "objects": objects}), || {
                format!(
                    "wrote {incidents} notices as {objects} STIX 2.1 objects to {}\n",
                    file.display()
                )
            });
        }
        None => super::view::outln!("{}", text.trim_end()),
    }
    Ok(ExitCode::SUCCESS)
}
