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
"#,
    )
    .unwrap();
    let err = hotline::config::Config::load(&path).unwrap_err().to_string();
    for field in [
        "party \"not a party\" is not a party id",
        "delivery.retry_base: \"soon\"",
        "agreement: ",
        "identity_key: ",
        "tls_ca: ",
        "tls_cert: ",
        "tls_key: ",
        "client.cert: ",
        "client.key: ",
    ] {
        assert!(err.contains(field), "{field:?} missing from: {err}");
    }
    assert!(err.starts_with(&path.display().to_string()), "{err}");
}
