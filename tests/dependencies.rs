//! The dependency tree carries no known vulnerability: the lockfile is
//! audited against the RustSec advisory database snapshot beside the
//! repository (`../shared/advisory-db`, no network), and a lockfile that
//! holds a vulnerable version fails the audit, naming the advisory.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// `cargo audit` locks the database's folder while it reads it: one audit at a time.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The advisory database snapshot beside the repository; where it is
/// missing (a clone elsewhere) the test says it was skipped, and under
/// `CI=true`, which always has it, fails.
fn snapshot() -> Option<PathBuf> {
    let db = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/advisory-db");
    if db.join("crates").is_dir() {
        return Some(db);
    }
    let why = format!("the RustSec advisory database snapshot is not at {}", db.display());
    assert!(std::env::var("CI").as_deref() != Ok("true"), "{why}");
    eprintln!("SKIPPED: {why}");
    None
}

/// Runs `cargo audit` (found at `tool`) on `lockfile` against the snapshot `db`.
fn audit(tool: &Path, db: &Path, lockfile: &Path) -> Output {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    Command::new(tool)
        .arg("audit")
        .arg("--db")
        .arg(db)
        .args(["--no-fetch", "--stale", "--file"])
        .arg(lockfile)
        .output()
        .unwrap()
}

fn lockfile() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.lock")
}

#[test]
fn the_lockfile_has_no_known_vulnerability() {
    let Some(tool) = common::outside_tool("cargo-audit", "audit the lockfile against RustSec's advisories") else {
        return;
    };
    let Some(db) = snapshot() else { return };
    let out = audit(&tool, &db, &lockfile());
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_lockfile_holding_a_vulnerable_time_fails_the_audit_naming_the_advisory() {
    let Some(tool) = common::outside_tool("cargo-audit", "audit the lockfile against RustSec's advisories") else {
        return;
    };
    let Some(db) = snapshot() else { return };
    // time 0.3.45: RUSTSEC-2026-0009, stack exhaustion parsing RFC 2822, fixed in 0.3.47.
    let ours = std::fs::read_to_string(lockfile()).unwrap();
    let (head, rest) = ours.split_once("name = \"time\"\nversion = \"").unwrap();
    let (_, tail) = rest.split_once('"').unwrap();
    let dir = tempfile::tempdir().unwrap();
    let old = dir.path().join("Cargo.lock");
    std::fs::write(&old, format!("{head}name = \"time\"\nversion = \"0.3.45\"{tail}")).unwrap();
    let out = audit(&tool, &db, &old);
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "the audit passed a vulnerable lockfile: {said}");
    assert!(said.contains("RUSTSEC-2026-0009"), "{said}");
}
