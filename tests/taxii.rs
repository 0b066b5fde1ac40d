//! TAXII 2.1, read only: CERT tools pull the notices a node may share over
//! HTTPS with this party's certificates, a collection per TLP level, paged
//! by log index, the same objects `hotline export stix` writes.

mod common;

use common::{Cluster, FAST_NORMS, notice};
use hotline::proto::{Indicator, Tlp};
use serde_json::Value;

async fn cluster() -> Cluster {
    Cluster::start_with(&["PER", "CHL"], FAST_NORMS, |config| {
        config.taxii = Some("127.0.0.1:0".parse().unwrap())
    })
    .await
}

/// Five shareable notices (one of them GREEN) and a RED one.
async fn traffic(c: &Cluster) {
    for i in 0..4 {
        let mut n = notice(&["CHL"], &format!("Amber notice {i}"));
        n.indicators = vec![Indicator {
            r#type: "domain-name".into(),
            value: format!("c2-{i}.example"),
        }];
        c.send(0, n).await;
    }
    let mut green = notice(&["CHL"], "Green advisory");
    green.tlp = Tlp::Green as i32;
    c.send(0, green).await;
    let mut red = notice(&["CHL"], "Red: named people");
    red.tlp = Tlp::Red as i32;
    c.send(0, red).await;
}

/// GET `path` from node `i`'s TAXII server over HTTPS with `cert`: the status and the body.
async fn get(
    c: &Cluster,
    i: usize,
    cert: &hotline::tls::CertKey,
    path: &str,
    accept: &str,
) -> Result<(u16, Value), String> {
    use rustls::pki_types::pem::PemObject;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = c.nodes[i].as_ref().unwrap().taxii_addr.expect("taxii is served");
    let mut roots = rustls::RootCertStore::empty();
    for ca in hotline::tls::certs_from_pem("ca", &c.configs[i].ca_pem().unwrap()).unwrap() {
        roots.add(ca).unwrap();
    }
    let chain = hotline::tls::certs_from_pem("client", &cert.cert).unwrap();
    let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(cert.key.as_bytes()).unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .unwrap();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let mut tls = connector.connect(name, tcp).await.map_err(|e| e.to_string())?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: {accept}\r\nConnection: close\r\n\r\n");
    tls.write_all(request.as_bytes()).await.map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    tls.read_to_end(&mut raw).await.map_err(|e| e.to_string())?;
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/taxii+json;version=2.1"),
        "{head}"
    );
    Ok((status, serde_json::from_str(body).unwrap()))
}

const TAXII: &str = "application/taxii+json;version=2.1";

fn export_ids(c: &Cluster, max_tlp: &str) -> Vec<String> {
    let (_, bundle) = common::export_stix(c, max_tlp);
    let mut ids: Vec<String> = bundle["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn taxii2_client_pulls_the_same_objects_as_the_export() {
    let Some(python) = common::python_with("taxii2client", "pull from the TAXII server as CERT tools do") else {
        return;
    };
    let c = cluster().await;
    traffic(&c).await;
    let config = &c.configs[0];
    let tls = config.path.parent().unwrap().join("tls");
    let url = format!("https://{}/taxii2/", c.nodes[0].as_ref().unwrap().taxii_addr.unwrap());
    let script = r#"
import json, sys
from taxii2client.v21 import Server, as_pages
url, cert, key, ca = sys.argv[1:5]
server = Server(url, cert=(cert, key), verify=ca)
collection = next(c for c in server.api_roots[0].collections if c.title == "Notices up to TLP:AMBER")
ids, pages = set(), 0
for envelope in as_pages(collection.get_objects, per_request=5):
    pages += 1
    ids.update(o["id"] for o in envelope.get("objects", []))
print(json.dumps({"ids": sorted(ids), "pages": pages}))
"#;
    // requests lets these override a session's own CA (its verify), so the client would not trust our CA.
    let out = tokio::process::Command::new(python)
        .env_remove("REQUESTS_CA_BUNDLE")
        .env_remove("CURL_CA_BUNDLE")
        .args(["-c", script, &url])
        .arg(tls.join("operator.pem"))
        .arg(tls.join("operator.key"))
        .arg(tls.join("ca.pem"))
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let pulled: Value = serde_json::from_slice(&out.stdout).unwrap();
    let ids: Vec<String> = serde_json::from_value(pulled["ids"].clone()).unwrap();
    assert_eq!(ids, export_ids(&c, "amber"), "the same objects as the export");
    assert!(pulled["pages"].as_u64().unwrap() > 1, "paged: {pulled}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collections_follow_tlp_and_objects_page_by_log_index() {
    let c = cluster().await;
    traffic(&c).await;
    let operator = c.configs[0].client_cert().unwrap();
    let (status, discovery) = get(&c, 0, &operator, "/taxii2/", TAXII).await.unwrap();
    assert_eq!((status, discovery["api_roots"][0].as_str()), (200, Some("/api1/")));
    let (_, list) = get(&c, 0, &operator, "/api1/collections/", TAXII).await.unwrap();
    let collections = list["collections"].as_array().unwrap();
    assert_eq!(collections.len(), 4);
    let id_of = |title: &str| {
        collections.iter().find(|c| c["title"] == title).unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let green = id_of("TLP:CLEAR and TLP:GREEN notices");
    let (_, objects) = get(&c, 0, &operator, &format!("/api1/collections/{green}/objects/"), TAXII)
        .await
        .unwrap();
    let incidents: Vec<&Value> = objects["objects"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["type"] == "incident")
        .collect();
    assert_eq!(incidents.len(), 1, "GREEN only");
    assert_eq!(incidents[0]["name"], "Green advisory");

    // Page through the AMBER collection three objects at a time, following next.
    let amber = id_of("Notices up to TLP:AMBER");
    let (mut ids, mut next, mut pages) = (Vec::new(), String::new(), 0);
    loop {
        let path = format!("/api1/collections/{amber}/objects/?limit=3{next}");
        let (status, page) = get(&c, 0, &operator, &path, TAXII).await.unwrap();
        assert_eq!(status, 200, "{page}");
        pages += 1;
        ids.extend(
            page["objects"]
                .as_array()
                .unwrap()
                .iter()
                .map(|o| o["id"].as_str().unwrap().to_owned()),
        );
        if page["more"] != true {
            break;
        }
        next = format!("&next={}", page["next"].as_str().unwrap());
    }
    ids.sort();
    ids.dedup();
    assert!(pages >= 5, "{pages} pages");
    assert_eq!(ids, export_ids(&c, "amber"));
    let (_, manifest) = get(&c, 0, &operator, &format!("/api1/collections/{amber}/manifest/"), TAXII)
        .await
        .unwrap();
    assert!(
        manifest["objects"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["date_added"].is_string() && m["version"].is_string())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_this_partys_local_certificates_may_read() {
    let c = cluster().await;
    // An auditor of the party reads; a peer's node certificate is refused at the TLS handshake.
    let auditor = hotline::tls::CertKey {
        cert: std::fs::read_to_string(c.configs[0].path.parent().unwrap().join("tls/auditor.pem")).unwrap(),
        key: std::fs::read_to_string(c.configs[0].path.parent().unwrap().join("tls/auditor.key")).unwrap(),
    };
    assert_eq!(get(&c, 0, &auditor, "/api1/", TAXII).await.unwrap().0, 200);
    let peer = c.configs[1].node_cert().unwrap();
    assert!(
        get(&c, 0, &peer, "/api1/", TAXII).await.is_err(),
        "CHL's certificate is not accepted"
    );
    // The party's own node certificate is no local operator or auditor: forbidden.
    let own_node = c.configs[0].node_cert().unwrap();
    assert_eq!(get(&c, 0, &own_node, "/api1/", TAXII).await.unwrap().0, 403);
    let (status, refusal) = get(&c, 0, &auditor, "/api1/", "text/html").await.unwrap();
    assert_eq!((status, refusal["http_status"].as_str()), (406, Some("406")));
    let (status, _) = get(&c, 0, &auditor, "/api1/collections/nope/objects/", TAXII)
        .await
        .unwrap();
    assert_eq!(status, 404);
    // Cleared up to TLP:CLEAR (init's max_tlp), the auditor reads the CLEAR collection only.
    let (_, list) = get(&c, 0, &auditor, "/api1/collections/", TAXII).await.unwrap();
    let readable: Vec<&str> = list["collections"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["can_read"] == true)
        .map(|c| c["title"].as_str().unwrap())
        .collect();
    assert_eq!(readable, ["TLP:CLEAR notices"]);
    let amber = list["collections"].as_array().unwrap()[2]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, refusal) = get(&c, 0, &auditor, &format!("/api1/collections/{amber}/objects/"), TAXII)
        .await
        .unwrap();
    assert_eq!(status, 403, "{refusal}");
    assert!(
        refusal["description"].as_str().unwrap().contains("not cleared"),
        "{refusal}"
    );
}
