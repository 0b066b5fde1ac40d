//! Key files and the log database: written private, refused when exposed or malformed.

mod common;

use hotline::keys::{IdentityKey, KeyError, VerifierKey};

#[test]
fn a_saved_key_loads_back_and_is_mode_0600() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("identity.key");
    let key = IdentityKey::generate("hotline.example/PER").unwrap();
    key.save(&path).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(IdentityKey::load(&path).unwrap().verifier(), key.verifier());
}

#[test]
fn saving_never_overwrites_a_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("identity.key");
    IdentityKey::generate("a").unwrap().save(&path).unwrap();
    assert!(matches!(
        IdentityKey::generate("b").unwrap().save(&path),
        Err(KeyError::Io { .. })
    ));
}

#[test]
fn a_world_readable_key_file_is_refused_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("identity.key");
    IdentityKey::generate("a").unwrap().save(&path).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = IdentityKey::load(&path).unwrap_err();
    assert!(matches!(err, KeyError::Permissions { mode: 0o644, .. }));
    assert!(err.to_string().contains("chmod 600"), "{err}");
}

#[test]
fn a_missing_key_file_names_the_path() {
    let err = IdentityKey::load(std::path::Path::new("/nonexistent/identity.key")).unwrap_err();
    assert!(err.to_string().contains("/nonexistent/identity.key"), "{err}");
}

#[test]
fn a_malformed_key_file_names_the_path_and_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("identity.key");
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .unwrap();
    std::io::Write::write_all(&mut f, b"PRIVATE+KEY+a+00000000+AQ==\n").unwrap();
    let err = IdentityKey::load(&path).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("identity.key") && msg.contains("Ed25519"), "{msg}");
}

#[test]
fn verifier_keys_with_a_wrong_hash_or_algorithm_are_refused() {
    let good = IdentityKey::generate("hotline.example/PER")
        .unwrap()
        .verifier()
        .to_string();
    let (name, rest) = good.split_once('+').unwrap();
    let (_, b64) = rest.split_once('+').unwrap();
    for bad in [
        format!("{name}+00000000+{b64}"),
        format!("{name}+zz+{b64}"),
        name.to_string(),
        format!("na me+00000000+{b64}"),
        format!("{name}+{}", &rest[..rest.len() - 4]),
    ] {
        assert!(bad.parse::<VerifierKey>().is_err(), "accepted {bad}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_refuses_a_tls_key_others_may_read() {
    use std::os::unix::fs::PermissionsExt;
    let root = tempfile::tempdir().unwrap();
    let mut made = hotline::setup::local_cluster(root.path(), &["PER", "CHL"], common::NORMS)
        .await
        .unwrap();
    let (config, listener) = made.remove(0);
    std::fs::set_permissions(&config.tls_key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = hotline::server::start(&config, Some(listener), hotline::clock::Clock::system())
        .await
        .err()
        .expect("started with a TLS key others may read");
    assert!(err.to_string().contains("chmod 600"), "{err}");
}

#[test]
fn the_log_database_and_its_wal_are_readable_by_their_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let (dir, log, _) = common::temp_log();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(log.append(vec![common::entry("one")])).unwrap();
    let files: &[&str] = match common::test_postgres() {
        Some(_) => &[hotline::store::POSTGRES_BINDING],
        None => &["hotline.db", "hotline.db-wal"],
    };
    for file in files {
        let mode = std::fs::metadata(dir.path().join(file)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{file} has mode {mode:o}");
    }
    log.close();
}
