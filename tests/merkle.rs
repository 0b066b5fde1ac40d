//! The Merkle log against RFC 6962: public vectors, and a property test
//! against a naive recomputation straight from the RFC's definitions.

mod common;

use proptest::prelude::*;
use sha2::{Digest, Sha256};
use tlog_tiles::{Hash, check_record, check_tree};

fn h(hex_str: &str) -> Hash {
    Hash(hex::decode(hex_str).unwrap().try_into().unwrap())
}

#[derive(serde::Deserialize)]
struct Vectors {
    leaves_hex: Vec<String>,
    roots: std::collections::BTreeMap<String, String>,
    inclusion: Vec<Inclusion>,
    consistency: Vec<Consistency>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Inclusion {
    index: u64,
    size: u64,
    #[serde(rename = "leaf_hash")]
    leaf_hash: String,
    #[serde(rename = "path")]
    path: Option<Vec<String>>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Consistency {
    old: u64,
    new: u64,
    #[serde(rename = "proof")]
    proof: Option<Vec<String>>,
}

#[tokio::test]
async fn roots_and_proofs_match_the_rfc6962_vectors() {
    let v: Vectors = serde_json::from_str(include_str!("vectors/rfc6962.json")).unwrap();
    let (_dir, log, _) = common::temp_log();
    for leaf in &v.leaves_hex {
        log.append(vec![hex::decode(leaf).unwrap().into()]).await.unwrap();
    }
    for (size, root) in &v.roots {
        assert_eq!(
            log.reader().root_at(size.parse().unwrap()).unwrap(),
            h(root),
            "root at size {size}"
        );
    }
    for inc in &v.inclusion {
        let (_, leaf, proof) = log.reader().inclusion_proof(inc.index, inc.size).unwrap();
        assert_eq!(leaf, h(&inc.leaf_hash));
        let expected: Vec<Hash> = inc.path.iter().flatten().map(|p| h(p)).collect();
        assert_eq!(proof, expected, "inclusion {} in {}", inc.index, inc.size);
    }
    for c in &v.consistency {
        let (_, proof) = log.reader().consistency_proof(c.old, c.new).unwrap();
        let expected: Vec<Hash> = c.proof.iter().flatten().map(|p| h(p)).collect();
        assert_eq!(proof, expected, "consistency {} to {}", c.old, c.new);
    }
}

// Naive RFC 6962 section 2.1, written from the text.
fn leaf_hash(d: &[u8]) -> [u8; 32] {
    Sha256::new().chain_update([0u8]).chain_update(d).finalize().into()
}
fn node(l: [u8; 32], r: [u8; 32]) -> [u8; 32] {
    Sha256::new()
        .chain_update([1u8])
        .chain_update(l)
        .chain_update(r)
        .finalize()
        .into()
}
fn split(n: usize) -> usize {
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}
fn mth(d: &[Vec<u8>]) -> [u8; 32] {
    match d.len() {
        0 => Sha256::digest([]).into(),
        1 => leaf_hash(&d[0]),
        n => node(mth(&d[..split(n)]), mth(&d[split(n)..])),
    }
}
fn path(m: usize, d: &[Vec<u8>]) -> Vec<[u8; 32]> {
    let n = d.len();
    if n <= 1 {
        return vec![];
    }
    let k = split(n);
    if m < k {
        let mut p = path(m, &d[..k]);
        p.push(mth(&d[k..]));
        p
    } else {
        let mut p = path(m - k, &d[k..]);
        p.push(mth(&d[..k]));
        p
    }
}
fn subproof(m: usize, d: &[Vec<u8>], complete: bool) -> Vec<[u8; 32]> {
    let n = d.len();
    if m == n {
        return if complete { vec![] } else { vec![mth(d)] };
    }
    let k = split(n);
    if m <= k {
        let mut p = subproof(m, &d[..k], complete);
        p.push(mth(&d[k..]));
        p
    } else {
        let mut p = subproof(m - k, &d[k..], false);
        p.push(mth(&d[..k]));
        p
    }
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    #[test]
    fn every_proof_verifies_and_matches_a_naive_recomputation(size in 1usize..3000, seed in any::<u64>()) {
        let (_dir, log, _) = common::temp_log();
        let data: Vec<Vec<u8>> = (0..size).map(|i| format!("{seed}-{i}").into_bytes()).collect();
        // Appended in uneven batches, as concurrent writers would.
        block_on(async {
            let mut start = 0;
            while start < size {
                let end = (start + 1 + (seed as usize + start) % 97).min(size);
                log.append(data[start..end].iter().cloned().map(Into::into).collect()).await.unwrap();
                start = end;
            }
        });
        let root = log.reader().root_at(size as u64).unwrap();
        prop_assert_eq!(root.0, mth(&data));
        // Every inclusion proof verifies; a spread of them also matches the RFC's PATH.
        let step = (size / 40).max(1);
        for i in 0..size {
            let (_, leaf, proof) = log.reader().inclusion_proof(i as u64, size as u64).unwrap();
            prop_assert_eq!(leaf.0, leaf_hash(&data[i]));
            check_record(&proof, size as u64, root, i as u64, leaf).unwrap();
            if i % step == 0 || i == size - 1 {
                prop_assert_eq!(proof.iter().map(|h| h.0).collect::<Vec<_>>(), path(i, &data));
            }
        }
        for old in (1..=size).step_by(step) {
            let (_, proof) = log.reader().consistency_proof(old as u64, size as u64).unwrap();
            prop_assert_eq!(proof.iter().map(|h| h.0).collect::<Vec<_>>(), subproof(old, &data, true));
            check_tree(&proof, size as u64, root, old as u64, Hash(mth(&data[..old]))).unwrap();
            // Where the hashes held in memory make the proof, it is the same one.
            if let Some(recent) = log.reader().recent_consistency(old as u64, size as u64) {
                prop_assert_eq!(recent, proof);
            }
            let inner = (old + size) / 2;
            let (_, proof) = log.reader().consistency_proof(old as u64, inner as u64).unwrap();
            prop_assert_eq!(proof.iter().map(|h| h.0).collect::<Vec<_>>(), subproof(old, &data[..inner], true));
        }
        log.close();
    }
}

#[tokio::test]
async fn a_proof_between_recent_sizes_comes_from_memory_and_an_older_one_from_the_store() {
    let (_dir, log, _) = common::temp_log();
    let cap = hotline::log::tree::RecentHashes::CAPACITY as u64;
    // Twice the hashes it holds: an entry stores two on average.
    let size = cap;
    for start in (0..size).step_by(512) {
        let batch = (start..start + 512).map(|i| common::entry(&i.to_string())).collect();
        log.append(batch).await.unwrap();
    }
    let reader = log.reader();
    let recent = reader
        .recent_consistency(size - 100, size)
        .expect("recent sizes are held");
    assert_eq!(recent, reader.consistency_proof(size - 100, size).unwrap().1);
    // The first entries' hashes were forgotten; the store still proves from them.
    assert_eq!(reader.recent_consistency(1, size), None);
    assert!(!reader.consistency_proof(1, size).unwrap().1.is_empty());
    log.close();
}

#[tokio::test]
async fn out_of_range_requests_say_the_valid_range() {
    let (_dir, log, _) = common::temp_log();
    log.append(vec![common::entry("a"), common::entry("b")]).await.unwrap();
    let err = log.reader().inclusion_proof(2, 0).unwrap_err().to_string();
    assert!(err.contains("index 2") && err.contains("0 to 1"), "{err}");
    let err = log.reader().inclusion_proof(0, 3).unwrap_err().to_string();
    assert!(err.contains("tree_size 3") && err.contains("2 entries"), "{err}");
    let err = log.reader().consistency_proof(0, 2).unwrap_err().to_string();
    assert!(err.contains("old_size 0"), "{err}");
    let err = log.reader().consistency_proof(2, 1).unwrap_err().to_string();
    assert!(err.contains("old_size 2"), "{err}");
}
