//! STIX 2.1 out, for the CERT tools that speak it: each notice the node may
//! share becomes an `incident` created by an `identity` of its party, with
//! an `indicator` (and a `related-to` relationship) per indicator STIX can
//! express, the official TLP 2.0 marking definitions, and the objects of
//! attached `application/stix+json` documents passed through, attributed to
//! the party that sent them (an attachment may not speak for another party
//! nor redefine a marking: its identities and marking definitions are
//! dropped, and the incident says so). External
//! references tie every incident to signed evidence: the notice id, the log
//! entry that holds it, and the SHA-256 of its signed payload. Ids are
//! UUIDv4s whose random bits are drawn from a hash of the notice, so an
//! export and a TAXII pull give the same objects, and STIX's rule that
//! domain objects carry version 4 ids holds.

use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::agreement::Agreement;
use crate::proto::{Notice, NoticeKind, Tlp};

/// What the hash behind every id starts with, so hotline's ids are its own.
const NAMESPACE: &[u8] = b"hotline STIX 2.1 object id\n";

/// When party identities are said to be created: they change with nothing, so one fixed instant.
const IDENTITY_CREATED: &str = "2020-01-01T00:00:00.000Z";

/// The STIX Cyber-observable types a notice's indicator may name, so its pattern is valid STIX.
pub const OBSERVABLE_TYPES: &[&str] = &[
    "artifact",
    "autonomous-system",
    "directory",
    "domain-name",
    "email-addr",
    "email-message",
    "file",
    "ipv4-addr",
    "ipv6-addr",
    "mac-addr",
    "mutex",
    "network-traffic",
    "process",
    "software",
    "url",
    "user-account",
    "windows-registry-key",
    "x509-certificate",
];

/// A notice the node holds, with what ties it to the log.
pub struct Held<'a> {
    /// The notice as signed.
    pub notice: &'a Notice,
    /// The index of the log entry that holds its envelope, in `log`'s log.
    pub log_index: u64,
    /// The party whose log that is (this node's).
    pub log: &'a str,
    /// The SHA-256 of the signed payload (what receipts sign).
    pub payload_sha256: &'a [u8],
}

/// How far a notice's TLP lets it go out of the hotline: the most restricted level exported.
pub fn may_share(n: &Notice, most: Tlp) -> bool {
    let kind = n.kind();
    n.exercise == 0
        && kind != NoticeKind::CommCheck
        && kind != NoticeKind::Unspecified
        && n.tlp() != Tlp::Red
        && n.tlp() != Tlp::Unspecified
        && (n.tlp() as i32) <= (most as i32)
}

/// The official STIX 2.1 marking definition of a TLP 2.0 level (none for RED, never exported).
pub fn tlp_marking(tlp: Tlp) -> Option<Value> {
    let (uuid, name, level) = match tlp {
        Tlp::Clear => ("94868c89-83c2-464b-929b-a1a8aa3c8487", "TLP:CLEAR", "clear"),
        Tlp::Green => ("bab4a63c-aed9-4cf5-a766-dfca5abac2bb", "TLP:GREEN", "green"),
        Tlp::Amber => ("55d920b0-5e8b-4f79-9ee9-91f868d9b421", "TLP:AMBER", "amber"),
        Tlp::AmberStrict => (
            "939a9414-2ddd-4d32-a0cd-375ea402b003",
            "TLP:AMBER+STRICT",
            "amber+strict",
        ),
        _ => return None,
    };
    Some(json!({
        "type": "marking-definition", "spec_version": "2.1", "id": format!("marking-definition--{uuid}"),
        "created": "2022-10-01T00:00:00.000Z", "name": name,
        "extensions": {"extension-definition--60a3c5c5-0d10-413e-aab3-9e08dde9e88d": {
            "extension_type": "property-extension", "tlp_2_0": level}}
    }))
}

/// The id of the `kind` object named `name`: a UUIDv4 whose random bits are a hash of both.
fn id(kind: &str, name: &str) -> String {
    use sha2::Digest;
    let hash = sha2::Sha256::new()
        .chain_update(NAMESPACE)
        .chain_update(kind)
        .chain_update(b"\n")
        .chain_update(name)
        .finalize();
    let mut random = [0u8; 16];
    random.copy_from_slice(&hash[..16]);
    format!("{kind}--{}", uuid::Builder::from_random_bytes(random).into_uuid())
}

/// A STIX timestamp: RFC 3339 in UTC with milliseconds.
pub fn timestamp(at: OffsetDateTime) -> String {
    let at = at.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        at.year(),
        at.month() as u8,
        at.day(),
        at.hour(),
        at.minute(),
        at.second(),
        at.millisecond()
    )
}

/// The identity of `party` as the agreement names it.
pub fn identity(agreement: &Agreement, party: &str) -> Value {
    let name = agreement
        .party(party)
        .map(|p| format!("{} ({party})", p.name))
        .unwrap_or_else(|| party.to_owned());
    json!({
        "type": "identity", "spec_version": "2.1", "id": id("identity", &format!("party:{party}")),
        "created": IDENTITY_CREATED, "modified": IDENTITY_CREATED, "name": name, "identity_class": "organization",
    })
}

/// Whether STIX can express an indicator of type `kind` (`ipv4-addr`,
/// `file:hashes.sha256`, …): what an operator's notice may carry.
pub fn expressible(kind: &str) -> bool {
    pattern(kind, "").is_some()
}

/// A STIX pattern for an indicator, if STIX can express its type.
fn pattern(kind: &str, value: &str) -> Option<String> {
    let (object, path) = kind.split_once(':').unwrap_or((kind, "value"));
    if !OBSERVABLE_TYPES.contains(&object) {
        return None;
    }
    let path = match path {
        "hashes.sha256" => "hashes.'SHA-256'",
        "hashes.sha1" => "hashes.'SHA-1'",
        "hashes.md5" => "hashes.MD5",
        p if p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.') => p,
        _ => return None,
    };
    let quoted = value.replace('\\', "\\\\").replace('\'', "\\'");
    Some(format!("[{object}:{path} = '{quoted}']"))
}

/// The STIX objects of one notice: its incident, indicators, their
/// relationships, and the objects of its STIX attachments (not the
/// identities and markings, which a bundle lists once).
pub fn objects(held: &Held<'_>) -> Vec<Value> {
    let n = held.notice;
    let created = n
        .created_at
        .as_ref()
        .and_then(crate::clock::from_proto)
        .map(timestamp)
        .unwrap_or_else(|| IDENTITY_CREATED.to_owned());
    let creator = id("identity", &format!("party:{}", n.from));
    let markings: Vec<String> = tlp_marking(n.tlp())
        .and_then(|m| m["id"].as_str().map(str::to_owned))
        .into_iter()
        .collect();
    let incident_id = id("incident", &n.id);
    let mut unexpressed = Vec::new();
    let mut out = Vec::new();
    for (i, ind) in n.indicators.iter().enumerate() {
        let Some(pattern) = pattern(&ind.r#type, &ind.value) else {
            unexpressed.push(format!("{} = {}", ind.r#type, ind.value));
            continue;
        };
        let indicator_id = id("indicator", &format!("{}#{i}", n.id));
        out.push(json!({
            "type": "indicator", "spec_version": "2.1", "id": indicator_id, "created": created, "modified": created,
            "created_by_ref": creator, "name": format!("{} {}", ind.r#type, ind.value),
            "description": format!("Shared by {} in hotline notice {}: {}", n.from, n.id, n.title), "pattern": pattern,
            "pattern_type": "stix", "valid_from": created, "object_marking_refs": markings,
        }));
        out.push(json!({
            "type": "relationship", "spec_version": "2.1", "id": id("relationship", &format!("{}#{i}", n.id)),
            "created": created, "modified": created, "created_by_ref": creator, "relationship_type": "related-to",
            "source_ref": indicator_id, "target_ref": incident_id, "object_marking_refs": markings,
        }));
    }
    // The authoritative text, which may be a translation.
    let (title, summary) = n
        .translations
        .iter()
        .find(|t| t.authoritative)
        .map_or((&n.title, &n.summary), |t| (&t.title, &t.summary));
    let mut description = summary.clone();
    if !unexpressed.is_empty() {
        description += &format!("\n\nIndicators STIX cannot express: {}", unexpressed.join("; "));
    }
    let mut dropped = Vec::new();
    for a in &n.attachments {
        if a.media_type.starts_with("application/stix+json") {
            out.extend(passed_through(&a.data, &creator, &markings, &mut dropped));
        }
    }
    if !dropped.is_empty() {
        description += &format!(
            "\n\nLeft out of {}'s STIX attachments (an attachment may not define identities or markings): {}",
            n.from,
            dropped.join(", ")
        );
    }
    let label = |name: &str, prefix: &str| name.trim_start_matches(prefix).to_lowercase().replace('_', "-");
    let kind = label(n.kind().as_str_name(), "NOTICE_KIND_");
    let severity = label(n.severity().as_str_name(), "SEVERITY_");
    let category = label(n.category().as_str_name(), "CATEGORY_");
    out.insert(
        0,
        json!({
            "type": "incident", "spec_version": "2.1", "id": incident_id, "created": created, "modified": created,
            "created_by_ref": creator, "name": title, "description": description,
            "labels": [kind, format!("severity-{severity}"), format!("category-{category}")],
            "object_marking_refs": markings,
            "external_references": [
                {"source_name": "hotline-notice", "external_id": n.id,
                 "description": format!("hotline notice from {} to {}", n.from, n.to.join(", "))},
                {"source_name": "hotline-log", "external_id": format!("{}:{}", held.log, held.log_index),
                 "description": format!("the entry of {}'s audit log that holds the signed envelope", held.log)},
                {"source_name": "hotline-envelope",
                 "description": "SHA-256 of the signed payload of the notice's DSSE envelope",
                 "hashes": {"SHA-256": hex::encode(held.payload_sha256)}},
            ],
        }),
    );
    out
}

/// The objects of an attached STIX document (a bundle's objects, or one
/// object), attributed to the sender (`creator`) and marked as its notice
/// (`markings`). Identities and marking definitions are left out, their ids
/// added to `dropped`: a peer's attachment could otherwise carry another
/// party's identity, or redefine a TLP marking, and so put words in
/// another's mouth or loosen what may be shared.
fn passed_through(data: &[u8], creator: &str, markings: &[String], dropped: &mut Vec<String>) -> Vec<Value> {
    let Ok(doc) = serde_json::from_slice::<Value>(data) else {
        return Vec::new();
    };
    let objects = match doc["type"].as_str() {
        Some("bundle") => match doc {
            Value::Object(mut bundle) => match bundle.remove("objects") {
                Some(Value::Array(objects)) => objects,
                _ => Vec::new(),
            },
            _ => Vec::new(),
        },
        Some(_) => vec![doc],
        None => Vec::new(),
    };
    objects
        .into_iter()
        .filter(|o| o["type"].is_string() && o["id"].is_string())
        .filter_map(|mut o| {
            if matches!(o["type"].as_str(), Some("identity" | "marking-definition")) {
                dropped.push(o["id"].as_str().unwrap_or_default().to_owned());
                return None;
            }
            if let Some(fields) = o.as_object_mut() {
                fields.insert("created_by_ref".into(), json!(creator));
                fields.insert("object_marking_refs".into(), json!(markings));
            }
            Some(o)
        })
        .collect()
}

/// A notice read from the log, owned: see [`Held`].
pub struct Logged {
    /// The notice.
    pub notice: Notice,
    /// Its log entry.
    pub log_index: u64,
    /// The SHA-256 of its signed payload.
    pub payload_sha256: Vec<u8>,
    /// When it was logged here, in Unix milliseconds (TAXII's date added).
    pub logged_ms: i64,
}

impl Logged {
    /// As [`Held`], in the log of `party`.
    pub fn held<'a>(&'a self, party: &'a str) -> Held<'a> {
        Held {
            notice: &self.notice,
            log_index: self.log_index,
            log: party,
            payload_sha256: &self.payload_sha256,
        }
    }
}

/// The notices logged after entry `after` that may be shared up to `most`,
/// reading at most `limit` notices; with the index of the last one read,
/// where the next page starts (`None`: nothing more).
pub fn shareable(
    c: &crate::db::Connection,
    after: Option<u64>,
    limit: u32,
    most: Tlp,
    opener: &crate::opener::Opener,
) -> crate::db::Result<(Vec<Logged>, Option<u64>)> {
    let rows = crate::state::notices_after(c, after, limit)?;
    let last = rows.last().map(|m| m.log_index);
    let notices = rows
        .into_iter()
        .filter_map(|m| {
            let notice = m.notice(opener)?;
            let shared = may_share(&notice, most);
            shared.then_some(Logged {
                notice,
                log_index: m.log_index,
                payload_sha256: m.payload_sha256,
                logged_ms: m.created_ms,
            })
        })
        .collect();
    Ok((notices, last))
}

/// A bundle of the objects of `notices` (each allowed out by [`may_share`]),
/// with their creators' identities and the TLP markings they use.
pub fn bundle(agreement: &Agreement, notices: &[Held<'_>]) -> Value {
    let mut objects = Vec::new();
    let mut parties: Vec<&str> = notices.iter().map(|h| h.notice.from.as_str()).collect();
    parties.sort();
    parties.dedup();
    objects.extend(parties.iter().map(|p| identity(agreement, p)));
    let mut levels: Vec<Tlp> = notices.iter().map(|h| h.notice.tlp()).collect();
    levels.sort_by_key(|t| *t as i32);
    levels.dedup();
    objects.extend(levels.into_iter().filter_map(tlp_marking));
    // Attachments may repeat objects: each (id, modified) goes out once.
    let mut seen = std::collections::HashSet::new();
    objects.retain(|o| seen.insert(version_of(o)));
    for h in notices {
        objects.extend(
            crate::stix::objects(h)
                .into_iter()
                .filter(|o| seen.insert(version_of(o))),
        );
    }
    json!({"type": "bundle", "id": format!("bundle--{}", uuid::Uuid::new_v4()), "objects": objects})
}

/// The bundle of every notice a node's database `c` holds that may be
/// shared up to `most`, `party` being the node's; `None` if its log adopted
/// no agreement yet (it names the parties).
pub fn bundle_of_log(
    c: &crate::db::Connection,
    party: &str,
    most: Tlp,
    opener: &crate::opener::Opener,
) -> crate::db::Result<Option<Value>> {
    let Some(agreement) = crate::state::adopted(c)?
        .and_then(|a| crate::agreement::SignedAgreement::parse(&a.signed_note).ok())
        .map(|s| s.agreement)
    else {
        return Ok(None);
    };
    let mut logged = Vec::new();
    let mut after = None;
    while let (page, Some(last)) = shareable(c, after, 1_000, most, opener)? {
        logged.extend(page);
        after = Some(last);
    }
    let held: Vec<Held<'_>> = logged.iter().map(|l| l.held(party)).collect();
    Ok(Some(bundle(&agreement, &held)))
}

/// What makes an object's version unique: its id and when it was modified.
fn version_of(o: &Value) -> (String, String) {
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    (text(&o["id"]), text(&o["modified"]))
}
