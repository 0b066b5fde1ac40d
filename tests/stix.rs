//! STIX 2.1 out: the notices a node may share, as CERT tools read them,
//! checked by the OASIS validator itself and traced back to the log.

mod common;

use common::{Cluster, FAST_NORMS, notice};
use hotline::proto::{Attachment, Exercise, Indicator, Tlp};
use serde_json::Value;

/// A STIX bundle an analyst attached, passed through as it is.
const MALWARE: &str = r#"{"type": "bundle", "id": "bundle--7d2b1a4e-27a1-4a59-9a5c-2f3b9d6c1e01", "objects": [
  {"type": "malware", "spec_version": "2.1", "id": "malware--4f1c2b9e-3d6a-4c8e-9b1f-0a2d3e4f5a6b",
   "created": "2026-11-01T00:00:00.000Z", "modified": "2026-11-01T00:00:00.000Z",
   "name": "GridWiper", "description": "A wiper seen at grid operators.", "is_family": true}]}"#;

/// PER's notices: shareable ones with indicators and an attachment, and
/// some that must not leave (RED, an exercise, a communication check).
async fn traffic(c: &Cluster) -> (String, String) {
    let mut amber = notice(&["CHL"], "Wiper at the grid");
    amber.indicators = vec![
        Indicator {
            r#type: "ipv4-addr".into(),
            value: "192.0.2.66".into(),
        },
        Indicator {
            r#type: "file:hashes.sha256".into(),
            value: "ab".repeat(32),
        },
        Indicator {
            r#type: "x-unknown".into(),
            value: "kept in the description".into(),
        },
    ];
    let amber = c.send(0, amber).await;
    let mut green = notice(&["CHL"], "Advisory for the sector");
    green.tlp = Tlp::Green as i32;
    green.attachments = vec![Attachment {
        media_type: "application/stix+json;version=2.1".into(),
        data: MALWARE.as_bytes().to_vec(),
        name: "gridwiper.json".into(),
    }];
    let green = c.send(0, green).await;
    let mut red = notice(&["CHL"], "Names of the people involved");
    red.tlp = Tlp::Red as i32;
    c.send(0, red).await;
    let mut drill = notice(&["CHL"], "A tabletop scenario");
    drill.exercise = Exercise::Tabletop as i32;
    c.send(0, drill).await;
    (amber, green)
}

fn of_type<'a>(bundle: &'a Value, kind: &str) -> Vec<&'a Value> {
    bundle["objects"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["type"] == kind)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_export_passes_the_oasis_stix2_validator() {
    let Some(validator) = common::outside_tool("stix2_validator", "check the STIX 2.1 export") else {
        return;
    };
    let c = Cluster::start(&["PER", "CHL"], FAST_NORMS).await;
    traffic(&c).await;
    let (file, bundle) = common::export_stix(&c, "amber");
    assert_eq!(of_type(&bundle, "incident").len(), 2);
    let checked = std::process::Command::new(validator)
        .arg("--strict")
        .arg(&file)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&checked.stdout);
    assert!(
        checked.status.success() && report.contains("STIX JSON: Valid"),
        "{report}"
    );
    assert!(!report.contains("Warning"), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_incident_is_traced_to_its_notice_log_entry_and_signed_payload() {
    let c = Cluster::start(&["PER", "CHL"], FAST_NORMS).await;
    let (amber, green) = traffic(&c).await;
    let (_, bundle) = common::export_stix(&c, "amber");
    let incidents = of_type(&bundle, "incident");
    let titles: Vec<&str> = incidents.iter().map(|i| i["name"].as_str().unwrap()).collect();
    assert_eq!(
        titles,
        ["Wiper at the grid", "Advisory for the sector"],
        "RED and the exercise stay in"
    );
    for (incident, id) in incidents.iter().zip([&amber, &green]) {
        let row = c.node(0).read(|db| hotline::state::message(db, id)).unwrap().unwrap();
        let refs = incident["external_references"].as_array().unwrap();
        assert_eq!(refs[0]["external_id"], id.as_str());
        assert_eq!(refs[1]["external_id"], format!("PER:{}", row.log_index));
        assert_eq!(refs[2]["hashes"]["SHA-256"], hex::encode(&row.payload_sha256));
    }
    // Two indicators STIX can express, each related to its incident; the third stays in words.
    let patterns: Vec<&str> = of_type(&bundle, "indicator")
        .iter()
        .map(|i| i["pattern"].as_str().unwrap())
        .collect();
    assert_eq!(
        patterns,
        [
            "[ipv4-addr:value = '192.0.2.66']",
            &format!("[file:hashes.'SHA-256' = '{}']", "ab".repeat(32))
        ]
    );
    assert!(
        incidents[0]["description"]
            .as_str()
            .unwrap()
            .contains("x-unknown = kept in the description")
    );
    assert_eq!(of_type(&bundle, "relationship").len(), 2);
    assert_eq!(
        of_type(&bundle, "malware")[0]["name"],
        "GridWiper",
        "the attachment passed through"
    );
    let markings: Vec<&str> = of_type(&bundle, "marking-definition")
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(markings, ["TLP:GREEN", "TLP:AMBER"]);
    assert_eq!(of_type(&bundle, "identity")[0]["name"], "PER national CSIRT (PER)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_most_restricted_tlp_exported_is_chosen_and_ids_are_stable() {
    let c = Cluster::start(&["PER", "CHL"], FAST_NORMS).await;
    traffic(&c).await;
    let (_, green_only) = common::export_stix(&c, "green");
    assert_eq!(of_type(&green_only, "incident").len(), 1);
    let (_, first) = common::export_stix(&c, "amber");
    let (_, again) = common::export_stix(&c, "amber");
    let ids = |b: &Value| {
        b["objects"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["id"].clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(&first), ids(&again), "the same notices give the same objects");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peers_attachment_is_attributed_to_the_peer_and_cannot_redefine_a_marking() {
    let c = Cluster::start(&["PER", "CHL"], FAST_NORMS).await;
    let (_, ours) = {
        let id = c.send(0, notice(&["CHL"], "Our own words")).await;
        common::export_stix(&c, "amber").1["objects"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["type"] == "incident" && o["external_references"][0]["external_id"] == id.as_str())
            .map(|i| (id.clone(), i["created_by_ref"].as_str().unwrap().to_owned()))
            .unwrap()
    };
    let green_id = "marking-definition--bab4a63c-aed9-4cf5-a766-dfca5abac2bb";
    // CHL's attachment claims PER's identity, credits PER with a malware
    // object, and redefines TLP:GREEN's marking.
    let forged = serde_json::json!({"type": "bundle", "id": "bundle--1d2b1a4e-27a1-4a59-9a5c-2f3b9d6c1e01", "objects": [
        {"type": "identity", "spec_version": "2.1", "id": ours, "created": "2026-11-01T00:00:00.000Z",
         "modified": "2026-11-01T00:00:00.000Z", "name": "PER says so", "identity_class": "organization"},
        {"type": "malware", "spec_version": "2.1", "id": "malware--5f1c2b9e-3d6a-4c8e-9b1f-0a2d3e4f5a6b",
         "created": "2026-11-01T00:00:00.000Z", "modified": "2026-11-01T00:00:00.000Z", "created_by_ref": ours,
         "name": "Blamed on PER", "is_family": true},
        {"type": "marking-definition", "spec_version": "2.1", "id": green_id, "created": "2022-10-01T00:00:00.000Z",
         "name": "TLP:GREEN", "definition_type": "statement", "definition": {"statement": "share freely"}},
    ]});
    let mut n = notice(&["PER"], "From CHL");
    n.from = "CHL".into();
    n.tlp = Tlp::Green as i32;
    n.attachments = vec![Attachment {
        media_type: "application/stix+json;version=2.1".into(),
        data: forged.to_string().into_bytes(),
        name: "forged.json".into(),
    }];
    let theirs = c.send(1, n).await;
    c.until_held(0, &theirs).await;
    let (_, bundle) = common::export_stix(&c, "amber");
    let malware = of_type(&bundle, "malware");
    let incident = of_type(&bundle, "incident")
        .into_iter()
        .find(|i| i["name"] == "From CHL")
        .unwrap();
    let chl = incident["created_by_ref"].as_str().unwrap();
    assert_ne!(chl, ours);
    assert_eq!(malware[0]["created_by_ref"], chl, "CHL's words are CHL's");
    let identities = of_type(&bundle, "identity");
    assert!(identities.iter().all(|i| i["name"] != "PER says so"));
    let greens: Vec<_> = of_type(&bundle, "marking-definition")
        .into_iter()
        .filter(|m| m["id"] == green_id)
        .collect();
    assert_eq!(greens.len(), 1);
    assert!(
        greens[0]["definition"].is_null(),
        "the official TLP:GREEN stands: {}",
        greens[0]
    );
    let said = incident["description"].as_str().unwrap();
    assert!(
        said.contains("Left out of CHL's STIX attachments") && said.contains(green_id),
        "{said}"
    );
}
