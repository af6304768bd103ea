//! The integrity core against a naive reading of RFC 6962 (slices and recursion, no levels, no
//! tiles), on random trees; and the properties of field commitments.

use auditline::integrity::Hash;
use auditline::integrity::leaf::{Integrity, Salt, commitment};
use auditline::integrity::merkle::{
    self, Levels, Tiles, consistency_proof, inclusion_proof, leaf_hash, node_hash, tiles_for_inclusion,
    verify_consistency, verify_inclusion,
};
use proptest::prelude::*;
use serde_json::json;

/// MTH(D[n]) exactly as RFC 6962 §2.1 writes it.
fn naive_root(d: &[Hash]) -> Hash {
    match d.len() {
        0 => Hash::of(&[]),
        1 => d[0],
        n => {
            let k = largest_power_below(n);
            node_hash(&naive_root(&d[..k]), &naive_root(&d[k..]))
        }
    }
}

fn largest_power_below(n: usize) -> usize {
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}

/// PATH(m, D[n]), §2.1.1.
fn naive_path(m: usize, d: &[Hash]) -> Vec<Hash> {
    if d.len() <= 1 {
        return vec![];
    }
    let k = largest_power_below(d.len());
    if m < k {
        let mut p = naive_path(m, &d[..k]);
        p.push(naive_root(&d[k..]));
        p
    } else {
        let mut p = naive_path(m - k, &d[k..]);
        p.push(naive_root(&d[..k]));
        p
    }
}

/// PROOF(m, D[n]), §2.1.2.
fn naive_consistency(m: usize, d: &[Hash]) -> Vec<Hash> {
    fn sub(m: usize, d: &[Hash], complete: bool) -> Vec<Hash> {
        let n = d.len();
        if m == n {
            return if complete { vec![] } else { vec![naive_root(d)] };
        }
        let k = largest_power_below(n);
        if m <= k {
            let mut p = sub(m, &d[..k], complete);
            p.push(naive_root(&d[k..]));
            p
        } else {
            let mut p = sub(m - k, &d[k..], false);
            p.push(naive_root(&d[..k]));
            p
        }
    }
    sub(m, d, true)
}

fn leaves(n: usize, salt: u64) -> Vec<Hash> {
    (0..n as u64).map(|i| leaf_hash(&(i ^ salt).to_be_bytes())).collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, .. ProptestConfig::default() })]

    #[test]
    fn roots_and_inclusion_proofs_match_the_rfc_text(n in 1usize..600, pick in any::<proptest::sample::Index>(), salt in any::<u64>()) {
        let d = leaves(n, salt);
        let tree = Levels::new(d.clone());
        let root = naive_root(&d);
        prop_assert_eq!(tree.root(), root);
        prop_assert_eq!(merkle::root(&d), root);
        let m = pick.index(n);
        let proof = inclusion_proof(&tree, m as u64, n as u64);
        prop_assert_eq!(&proof, &naive_path(m, &d));
        prop_assert!(verify_inclusion(&d[m], m as u64, n as u64, &proof, &root));
        // Any other leaf, position, size or root is refused.
        let other = leaf_hash(b"not in the tree");
        prop_assert!(!verify_inclusion(&other, m as u64, n as u64, &proof, &root));
        if n > 1 {
            prop_assert!(!verify_inclusion(&d[m], ((m + 1) % n) as u64, n as u64, &proof, &root));
            prop_assert!(!verify_inclusion(&d[m], m as u64, n as u64, &proof, &other));
        }
        // The tiles a store keeps give the same proof.
        let needed = tiles_for_inclusion(m as u64, n as u64);
        let held: Vec<_> = tree.tiles().into_iter().filter(|t| needed.contains(&(t.level, t.index))).collect();
        prop_assert_eq!(inclusion_proof(&Tiles(&held), m as u64, n as u64), proof);
    }

    #[test]
    fn consistency_proofs_match_the_rfc_text(n in 2usize..400, pick in any::<proptest::sample::Index>(), salt in any::<u64>()) {
        let d = leaves(n, salt);
        let m = 1 + pick.index(n - 1);
        let tree = Levels::new(d.clone());
        let proof = consistency_proof(&tree, m as u64, n as u64);
        prop_assert_eq!(&proof, &naive_consistency(m, &d));
        let (old, new) = (naive_root(&d[..m]), naive_root(&d));
        prop_assert!(verify_consistency(m as u64, n as u64, &old, &new, &proof));
        // A tree that rewrote history is not consistent with the old one.
        let mut forged = d.clone();
        forged[pick.index(m)] = leaf_hash(b"rewritten");
        let forged_root = naive_root(&forged);
        let forged_proof = consistency_proof(&Levels::new(forged), m as u64, n as u64);
        prop_assert!(!verify_consistency(m as u64, n as u64, &old, &forged_root, &forged_proof));
    }

    #[test]
    fn a_commitment_binds_its_value_and_its_salt(a in ".{0,40}", b in ".{0,40}") {
        let salt = Salt::random();
        let ca = commitment(&salt, &json!(a)).unwrap();
        prop_assert_eq!(ca == commitment(&salt, &json!(b)).unwrap(), a == b);
        prop_assert_ne!(ca, commitment(&Salt::random(), &json!(a)).unwrap());
    }
}

#[test]
fn a_salted_ipv4_address_cannot_be_found_from_its_commitment() {
    // An attacker holding a commitment (from a leaf's preimage) and trying every address of a /16
    // without the salt finds nothing; with 128 random salt bits, trying salts too is 2^128 work.
    let secret = "10.20.30.40";
    let salt = Salt::random();
    let target = commitment(&salt, &json!(secret)).unwrap();
    let unsalted = Salt([0; 16]);
    let mut tried = 0;
    for c in 0..=255u8 {
        for d in 0..=255u8 {
            let guess = format!("10.20.{c}.{d}");
            assert_ne!(commitment(&unsalted, &json!(guess)).unwrap(), target);
            tried += 1;
        }
    }
    assert_eq!(tried, 65_536);
    assert_eq!(commitment(&salt, &json!(secret)).unwrap(), target, "only with the salt does it match");
    // And salts are fresh: no two entries share one.
    let seeds: std::collections::HashSet<[u8; 16]> = (0..10_000).map(|_| Salt::random().0).collect();
    assert_eq!(seeds.len(), 10_000);
}

#[test]
fn an_entry_with_a_field_erased_still_verifies_and_says_so() {
    use auditline::domain::{AuditAction, EntityType};
    let mut entry = auditline_tests::new_entry(
        &auditline_tests::tenant("acme"),
        AuditAction::Update,
        EntityType::Entity,
        "person-7",
        Some("p-1"),
        Some("u-1"),
    )
    .validate()
    .unwrap()
    .stamp(chrono::Utc::now(), 90)
    .unwrap();
    assert_eq!(entry.verify_leaf(), Ok(vec![]));
    let leaf = entry.integrity.leaf_hash;
    // Erase the IP address: its value and salt go, its commitment stays.
    let value = serde_json::to_value(entry.ip_address).unwrap();
    let names = auditline::domain::entry::COMMITTED_FIELDS;
    entry.integrity.erase("ip_address", &value, &names, uuid::Uuid::now_v7()).unwrap();
    entry.ip_address = None;
    assert_eq!(entry.integrity.leaf_hash, leaf, "the same leaf: the trees it is in still verify");
    assert_eq!(entry.verify_leaf(), Ok(vec!["ip_address".to_owned()]));
    let json = serde_json::to_value(&entry).unwrap();
    assert!(json["integrity"]["seed"].is_null() && json["integrity"]["erased"]["ip_address"].is_string());
    // Tampering with another field is still caught.
    entry.entity_id = "person-8".into();
    assert!(entry.verify_leaf().is_err());
    let _ = Integrity::default();
}
