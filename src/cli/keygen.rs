//! `hotline keygen`: a party's identity key pair.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use hotline::keys::IdentityKey;
use serde_json::json;

use super::view::Out;

#[derive(clap::Args)]
pub struct Args {
    /// The key name: the party's log origin, such as hotline.example/PER.
    #[arg(long)]
    name: String,
    /// Folder for identity.key (mode 0600) and identity.pub.
    #[arg(long)]
    out: PathBuf,
}

pub fn run(args: Args, out: Out) -> anyhow::Result<ExitCode> {
    let key = IdentityKey::generate(&args.name)?;
    std::fs::create_dir_all(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
    let private = args.out.join("identity.key");
    let public = args.out.join("identity.pub");
    if public.exists() {
        anyhow::bail!("{} already exists; refusing to overwrite a key", public.display());
    }
    key.save(&private)?;
    let vkey = key.verifier().to_string();
    std::fs::write(&public, format!("{vkey}\n")).with_context(|| format!("writing {}", public.display()))?;
    out.print(
        &json!({"name": args.name, "vkey": vkey, "key_id": key.verifier().key_id(),
                "private_key_file": private, "verifier_key_file": public}),
        || {
            format!(
                "verifier key  {vkey}\nprivate key   {} (mode 0600)\npublic key    {}\n",
                private.display(),
                public.display()
            )
        },
    );
    Ok(ExitCode::SUCCESS)
}
