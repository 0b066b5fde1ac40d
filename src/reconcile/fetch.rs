//! A party's log read over its Audit service, as an observer the agreement
//! names reads it (the public tier), and written as an export, so that a
//! reconciliation takes live nodes and exports on disk alike. What was read
//! is verified like any export: the checkpoint's signature, every entry
//! against its root.

use std::path::Path;

use crate::agreement::{SignedAgreement, TlsIdentity};
use crate::proto::audit_client::AuditClient;
use crate::proto::{GetCheckpointRequest, GetEntriesRequest};
use crate::tls::CertKey;

/// Reads the log of the node at `endpoint` (a party's endpoint in
/// `agreement`, whose CA it is checked against) with the observer
/// certificate `cert`, into an export in `to`.
pub async fn fetch(endpoint: &str, agreement: &SignedAgreement, cert: &CertKey, to: &Path) -> Result<(), String> {
    let party = agreement
        .agreement
        .parties
        .iter()
        .find(|p| p.endpoint == endpoint || p.endpoints.iter().any(|e| e == endpoint))
        .ok_or("no party of the agreement lists this endpoint")?;
    let TlsIdentity::Ca(ca) = &party.tls else {
        return Err(format!("{} names its node by certificate, not by CA", party.id));
    };
    let channel = crate::transport::channel(endpoint, ca, cert).map_err(|e| e.to_string())?;
    let mut client = AuditClient::new(channel);
    let note = client
        .get_checkpoint(GetCheckpointRequest {})
        .await
        .map_err(|e| format!("GetCheckpoint: {}", e.message()))?
        .into_inner()
        .checkpoint
        .ok_or("GetCheckpoint: no checkpoint")?
        .note;
    let size = crate::log::checkpoint::parse_size(&note).ok_or("its checkpoint does not parse")?;
    let mut entries = Vec::new();
    // (An end of 0 would ask for the log as it is now, past the checkpoint.)
    if size > 0 {
        let mut stream = client
            .get_entries(GetEntriesRequest { start: 0, end: size })
            .await
            .map_err(|e| format!("GetEntries: {}", e.message()))?
            .into_inner();
        while let Some(e) = stream
            .message()
            .await
            .map_err(|e| format!("GetEntries: {}", e.message()))?
        {
            let outside = (!e.envelope.is_empty()).then_some(e.envelope);
            entries.push((e.data, outside));
        }
    }
    crate::log::export::write_export(to, &entries, |_, _| Ok(note)).map_err(|e| e.to_string())?;
    Ok(())
}
