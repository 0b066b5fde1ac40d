//! The node configuration file: every problem is reported at once, each
//! naming its field.

#[test]
fn a_configuration_with_several_problems_names_every_one_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hotline.toml");
    std::fs::write(
        &path,
        r#"party = "not a party"
listen = "127.0.0.1:7443"
database = "mysql://db.example/hotline"
agreement = "agreement.toml"
identity_key = "identity.key"
tls_ca = "tls/ca.pem"
tls_cert = "tls/node.pem"
tls_key = "tls/node.key"
[client]
node = "https://127.0.0.1:7443"
cert = "tls/operator.pem"
key = "tls/operator.key"
[delivery]
retry_base = "soon"
[[local]]
name = "operator"
role = "operator"
cert = "tls/operator.pem"
max_tlp = "red"
[[local]]
name = "auditor"
role = "auditor"
cert = "tls/auditor.pem"
max_tlp = "purple"
"#,
    )
    .unwrap();
    let err = hotline::config::Config::load(&path).unwrap_err().to_string();
    for field in [
        "party \"not a party\" is not a party id",
        "delivery.retry_base: \"soon\"",
        "database: a postgresql:// URL",
        "agreement: ",
        "identity_key: ",
        "tls_ca: ",
        "tls_cert: ",
        "tls_key: ",
        "client.cert: ",
        "client.key: ",
        "local \"operator\": max_tlp is for auditors",
        "local \"auditor\": max_tlp \"purple\" is not one of clear, green, amber, amber+strict, red",
    ] {
        assert!(err.contains(field), "{field:?} missing from: {err}");
    }
    assert!(err.starts_with(&path.display().to_string()), "{err}");
}

#[test]
fn a_data_directory_kept_in_postgresql_is_not_silently_opened_as_an_empty_sqlite_store() {
    let dir = tempfile::tempdir().unwrap();
    hotline::store::bind(dir.path(), Some("postgresql://hotline@db.example/per")).unwrap();
    let err = hotline::store::bind(dir.path(), None).unwrap_err().to_string();
    assert!(
        err.contains("keeps its log in PostgreSQL") && err.contains("postgresql.url"),
        "{err}"
    );
    assert_eq!(
        hotline::store::postgres_url(dir.path()).unwrap().as_deref(),
        Some("postgresql://hotline@db.example/per")
    );
}
