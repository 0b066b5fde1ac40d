//! `hotline man` and `hotline completions`: manual pages and shell
//! completions generated from the command-line definition itself, so they
//! name exactly the commands and flags the binary takes.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use serde_json::json;

use super::view::Out;

/// `hotline man`.
#[derive(clap::Args)]
pub struct ManArgs {
    /// The folder to write the pages to (hotline.1, hotline-notice-send.1, …); created if missing.
    #[arg(long)]
    out: PathBuf,
}

/// Writes a manual page for `hotline` (the command tree `cli`) and for each of its commands.
pub fn man(args: ManArgs, cli: clap::Command, out: Out) -> anyhow::Result<ExitCode> {
    std::fs::create_dir_all(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
    clap_mangen::generate_to(cli, &args.out)
        .with_context(|| format!("writing manual pages to {}", args.out.display()))?;
    let mut pages: Vec<String> = std::fs::read_dir(&args.out)
        .with_context(|| format!("reading {}", args.out.display()))?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|name| name.starts_with("hotline") && name.ends_with(".1"))
        .collect();
    pages.sort();
    out.print(&json!({"out": args.out, "pages": pages}), || {
        format!(
            "wrote {} manual pages to {} (man -M … hotline, or install them under a man1 folder)\n",
            pages.len(),
            args.out.display()
        )
    });
    Ok(ExitCode::SUCCESS)
}

/// `hotline completions`.
#[derive(clap::Args)]
pub struct CompletionArgs {
    /// The shell.
    shell: clap_complete::Shell,
}

/// Prints the completion script of the command tree `cli` for a shell.
pub fn completions(args: CompletionArgs, mut cli: clap::Command) -> anyhow::Result<ExitCode> {
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut cli, "hotline", &mut script);
    // Written whole, a closed pipe ignored (`hotline completions bash | head`), as every command's output.
    let _ = std::io::Write::write_all(&mut std::io::stdout().lock(), &script);
    Ok(ExitCode::SUCCESS)
}
