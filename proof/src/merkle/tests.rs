//! The RFC 6962 reference vectors (the leaves, roots and proofs published
//! with Certificate Transparency and transparency-dev/merkle), then every
//! proof of every small tree against an in-memory recomputation.

use super::*;

/// The reference leaves.
const LEAVES: [&str; 8] = [
    "",
    "00",
    "10",
    "2021",
    "3031",
    "40414243",
    "5051525354555657",
    "606162636465666768696a6b6c6d6e6f",
];

/// The root of the first `n` reference leaves, for `n` in 0..=8.
const ROOTS: [&str; 9] = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
];

fn h(s: &str) -> Hash {
    let mut out = [0u8; 32];
    hex::decode_to_slice(s, &mut out).unwrap();
    out
}

fn reference_tree() -> MemoryTree {
    let mut tree = MemoryTree::default();
    for leaf in LEAVES {
        tree.push(leaf_hash(&hex::decode(leaf).unwrap()));
    }
    tree
}

fn ok<T>(r: Result<Result<T, ProofError>, std::convert::Infallible>) -> T {
    match r {
        Ok(inner) => inner.unwrap(),
        Err(never) => match never {},
    }
}

#[test]
fn roots_match_the_reference() {
    let tree = reference_tree();
    for (n, want) in ROOTS.iter().enumerate() {
        let got = match root(&tree, n as u64) {
            Ok(r) => r,
            Err(never) => match never {},
        };
        assert_eq!(hex::encode(got), *want, "root of {n} leaves");
        let leaves: Vec<Hash> = LEAVES[..n]
            .iter()
            .map(|l| leaf_hash(&hex::decode(l).unwrap()))
            .collect();
        assert_eq!(hex::encode(root_of(&leaves)), *want);
    }
}

#[test]
fn the_streaming_root_is_the_rfc_root_at_every_size() {
    let (_, leaves) = synthetic(70);
    let mut range = CompactRange::new(0);
    assert_eq!(range.root(), Some(empty_root()));
    for (n, leaf) in leaves.iter().enumerate() {
        range.push(*leaf);
        assert_eq!(range.end(), n as u64 + 1);
        assert_eq!(range.root(), Some(root_of(&leaves[..=n])), "size {}", n + 1);
    }
}

/// Leaves `[begin, end)` pushed into a range of their own.
fn range_of(leaves: &[Hash], begin: usize, end: usize) -> CompactRange {
    let mut range = CompactRange::new(begin as u64);
    for leaf in &leaves[begin..end] {
        range.push(*leaf);
    }
    range
}

#[test]
fn ranges_hashed_apart_and_joined_give_the_rfc_root() {
    let (_, leaves) = synthetic(24);
    // Every tree size, cut into three parts at every pair of points.
    for n in 0..=leaves.len() {
        for a in 0..=n {
            for b in a..=n {
                let mut joined = range_of(&leaves, 0, a);
                joined.append(range_of(&leaves, a, b)).unwrap();
                joined.append(range_of(&leaves, b, n)).unwrap();
                assert_eq!(
                    joined,
                    range_of(&leaves, 0, n),
                    "{n} leaves cut at {a}, {b}"
                );
                assert_eq!(joined.root(), Some(root_of(&leaves[..n])));
            }
        }
    }
    // A middle part is joined from its own parts the same way.
    let mut middle = range_of(&leaves, 5, 11);
    middle.append(range_of(&leaves, 11, 23)).unwrap();
    assert_eq!(middle, range_of(&leaves, 5, 23));
}

/// Every complete subtree of `n` leaves, as (level, index, hash).
fn every_node(tree: &MemoryTree, n: u64) -> Vec<(u32, u64, Hash)> {
    let mut all = Vec::new();
    for level in 1..64u32 {
        for index in 0..n >> level {
            let hash = match tree.node(level, index) {
                Ok(hash) => hash,
                Err(never) => match never {},
            };
            all.push((level, index, hash));
        }
    }
    all.sort();
    all
}

#[test]
fn ranges_pushed_and_joined_see_every_complete_subtree_once() {
    let (tree, leaves) = synthetic(40);
    for n in [0, 1, 2, 7, 16, 33, 40] {
        let want = every_node(&tree, n as u64);
        // One range, and three parts joined, at every pair of points.
        for a in 0..=n {
            for b in a..=n {
                let mut seen = Vec::new();
                let mut see = |level, index, hash: &Hash| seen.push((level, index, *hash));
                let mut parts = [0..a, a..b, b..n].map(|r| {
                    let mut range = CompactRange::new(r.start as u64);
                    for leaf in &leaves[r] {
                        range.push_seen(*leaf, &mut see);
                    }
                    range
                });
                let mut joined = CompactRange::new(0);
                for part in &mut parts {
                    let part = std::mem::take(part);
                    joined.append_seen(part, &mut see).unwrap();
                }
                assert_eq!(joined.root(), Some(root_of(&leaves[..n])));
                seen.sort();
                assert_eq!(seen, want, "{n} leaves cut at {a}, {b}");
            }
        }
    }
}

#[test]
fn only_ranges_that_meet_are_joined_and_only_one_from_zero_has_a_root() {
    let (_, leaves) = synthetic(10);
    let mut first = range_of(&leaves, 0, 4);
    let gap = range_of(&leaves, 5, 10);
    assert_eq!(first.append(gap.clone()), Err(gap.clone()));
    assert_eq!(first, range_of(&leaves, 0, 4));
    assert_eq!(gap.root(), None);
    assert_eq!(range_of(&leaves, 4, 10).append(first.clone()), Err(first));
}

#[test]
fn inclusion_proofs_match_the_reference() {
    let tree = reference_tree();
    let cases: [(u64, u64, &[&str]); 4] = [
        (0, 1, &[]),
        (
            0,
            8,
            &[
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        ),
        (
            5,
            8,
            &[
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
        (
            2,
            3,
            &["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"],
        ),
    ];
    for (index, size, want) in cases {
        let got = ok(inclusion_proof(&tree, index, size));
        let got: Vec<String> = got.iter().map(hex::encode).collect();
        assert_eq!(got, want, "inclusion of {index} in {size}");
        let proof: Vec<Hash> = want.iter().map(|s| h(s)).collect();
        let leaf = leaf_hash(&hex::decode(LEAVES[index as usize]).unwrap());
        verify_inclusion(index, size, &leaf, &proof, &h(ROOTS[size as usize])).unwrap();
    }
}

#[test]
fn consistency_proofs_match_the_reference() {
    let tree = reference_tree();
    let cases: [(u64, u64, &[&str]); 4] = [
        (1, 1, &[]),
        (
            2,
            8,
            &[
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        ),
        (
            6,
            8,
            &[
                "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
        (
            2,
            5,
            &[
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            ],
        ),
    ];
    for (first, second, want) in cases {
        let got = ok(consistency_proof(&tree, first, second));
        let got: Vec<String> = got.iter().map(hex::encode).collect();
        assert_eq!(got, want, "consistency of {first} and {second}");
        let proof: Vec<Hash> = want.iter().map(|s| h(s)).collect();
        verify_consistency(
            first,
            second,
            &h(ROOTS[first as usize]),
            &h(ROOTS[second as usize]),
            &proof,
        )
        .unwrap();
    }
}

/// A tree of `n` leaves whose leaf `i` is the two bytes `[i, 7i]`.
fn synthetic(n: u64) -> (MemoryTree, Vec<Hash>) {
    let mut tree = MemoryTree::default();
    let leaves: Vec<Hash> = (0..n)
        .map(|i| leaf_hash(&[i as u8, (i * 7) as u8]))
        .collect();
    for l in &leaves {
        tree.push(*l);
    }
    (tree, leaves)
}

#[test]
fn every_inclusion_proof_of_small_trees_verifies_and_a_changed_one_does_not() {
    let (tree, leaves) = synthetic(40);
    for size in 1..=40u64 {
        let root = root_of(&leaves[..size as usize]);
        for index in 0..size {
            let proof = ok(inclusion_proof(&tree, index, size));
            assert_eq!(proof.len(), inclusion_len(index, size));
            let leaf = &leaves[index as usize];
            verify_inclusion(index, size, leaf, &proof, &root).unwrap();
            if let Some(other) = leaves.get(index as usize + 1) {
                assert!(verify_inclusion(index, size, other, &proof, &root).is_err());
            }
            if !proof.is_empty() {
                let mut bad = proof.clone();
                bad[0][5] ^= 1;
                assert!(verify_inclusion(index, size, leaf, &bad, &root).is_err());
                assert!(
                    verify_inclusion(index, size, leaf, &proof[1..], &root).is_err(),
                    "short proof {index}/{size}"
                );
            }
            let mut long = proof.clone();
            long.push([0xab; 32]);
            assert!(verify_inclusion(index, size, leaf, &long, &root).is_err());
        }
        assert!(verify_inclusion(size, size, &leaves[0], &[], &root).is_err());
    }
}

#[test]
fn every_consistency_proof_of_small_trees_verifies_and_a_changed_one_does_not() {
    let (tree, leaves) = synthetic(40);
    let roots: Vec<Hash> = (0..=40).map(|n| root_of(&leaves[..n])).collect();
    for second in 0..=40u64 {
        for first in 0..=second {
            let proof = ok(consistency_proof(&tree, first, second));
            let (r1, r2) = (&roots[first as usize], &roots[second as usize]);
            verify_consistency(first, second, r1, r2, &proof)
                .unwrap_or_else(|e| panic!("{first} -> {second}: {e}"));
            if first > 0 && first < second {
                let mut bad = proof.clone();
                bad[0][3] ^= 0x80;
                assert!(verify_consistency(first, second, r1, r2, &bad).is_err());
                assert!(verify_consistency(first, second, r1, r2, &proof[1..]).is_err());
                let wrong_old = &roots[first as usize - 1];
                assert!(verify_consistency(first, second, wrong_old, r2, &proof).is_err());
                let wrong_new = &roots[second as usize - 1];
                assert!(verify_consistency(first, second, r1, wrong_new, &proof).is_err());
            }
        }
    }
    assert!(verify_consistency(5, 4, &roots[5], &roots[4], &[]).is_err());
    assert!(verify_consistency(4, 4, &roots[4], &roots[5], &[]).is_err());
    // The empty tree has one root: another one "of size 0" is extended by
    // nothing, not by every tree.
    assert_eq!(roots[0], empty_root());
    assert!(verify_consistency(0, 7, &roots[3], &roots[7], &[]).is_err());
    assert!(verify_consistency(0, 0, &roots[3], &roots[3], &[]).is_err());
}

#[test]
fn proofs_in_trees_past_2_to_the_63_are_checked_without_overflow() {
    let leaf = leaf_hash(b"");
    for (index, size) in [
        (1, u64::MAX),
        (u64::MAX - 1, u64::MAX),
        (1 << 63, (1 << 63) + 1),
    ] {
        let err = verify_inclusion(index, size, &leaf, &[leaf; 3], &leaf).unwrap_err();
        let ProofError::WrongLength { got: 3, want } = err else {
            panic!("{index} in {size}: {err:?}");
        };
        assert!((1..=64).contains(&want), "{index} in {size}: {want}");
    }
    // The longest proof there is: 64 hashes, in a tree of u64::MAX leaves.
    assert_eq!(inclusion_len(1, u64::MAX), 64);
    let err = verify_consistency(3, u64::MAX, &leaf, &leaf, &[leaf; 2]).unwrap_err();
    assert!(matches!(err, ProofError::Mismatch(_)), "{err:?}");
}
