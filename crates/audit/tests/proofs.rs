//! Properties of proof generation and verification: every proof built from a stored tree is the
//! RFC 9162 one and verifies, and every single alteration is rejected.

use mandate_audit::merkle::{
    consistency_proof, inclusion_proof, leaf_hash, root_from_inclusion, root_of, tree_root,
    verify_consistency, verify_inclusion, Frontier, Hash, MemoryTree, NodeSource,
};
use proptest::prelude::*;

fn leaves(seed: u64, n: u64) -> Vec<Hash> {
    (0..n)
        .map(|i| leaf_hash(format!("{seed}/{i}").as_bytes()))
        .collect()
}

fn tree_of(leaves: &[Hash]) -> MemoryTree {
    let mut t = MemoryTree::new();
    for l in leaves {
        t.push(*l);
    }
    t
}

fn k_of(n: usize) -> usize {
    // Largest power of two strictly below n (n >= 2).
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}

/// RFC 9162 §2.1.3.1 PATH(m, D[n]), literally.
fn ref_path(m: usize, d: &[Hash]) -> Vec<Hash> {
    let n = d.len();
    if n == 1 {
        return vec![];
    }
    let k = k_of(n);
    if m < k {
        let mut p = ref_path(m, &d[..k]);
        p.push(root_of(&d[k..]));
        p
    } else {
        let mut p = ref_path(m - k, &d[k..]);
        p.push(root_of(&d[..k]));
        p
    }
}

/// RFC 9162 §2.1.4.1 SUBPROOF(m, D[n], b), literally.
fn ref_subproof(m: usize, d: &[Hash], b: bool) -> Vec<Hash> {
    let n = d.len();
    if m == n {
        return if b { vec![] } else { vec![root_of(d)] };
    }
    let k = k_of(n);
    if m <= k {
        let mut p = ref_subproof(m, &d[..k], b);
        p.push(root_of(&d[k..]));
        p
    } else {
        let mut p = ref_subproof(m - k, &d[k..], false);
        p.push(root_of(&d[..k]));
        p
    }
}

fn flip(h: &Hash, byte: usize) -> Hash {
    let mut h = *h;
    h[byte % 32] ^= 0x01 << (byte % 8);
    h
}

/// Checks one inclusion proof and every alteration of it. `byte` picks which byte to alter.
fn check_inclusion(tree: &MemoryTree, index: u64, size: u64, byte: usize) {
    let proof = inclusion_proof(tree, index, size).unwrap();
    let leaf = tree.node(0, index).unwrap();
    let root = tree.root_at(size);
    assert_eq!(verify_inclusion(&leaf, index, size, &proof, &root), Ok(()));

    for i in 0..proof.len() {
        let mut p = proof.clone();
        p[i] = flip(&p[i], byte + i);
        assert!(verify_inclusion(&leaf, index, size, &p, &root).is_err());
    }
    assert!(verify_inclusion(&flip(&leaf, byte), index, size, &proof, &root).is_err());
    assert!(verify_inclusion(&leaf, index, size, &proof, &flip(&root, byte)).is_err());
    // Length changes.
    assert!(verify_inclusion(
        &leaf,
        index,
        size,
        &[proof.clone(), vec![root]].concat(),
        &root
    )
    .is_err());
    assert!(verify_inclusion(
        &leaf,
        index,
        size,
        &[vec![leaf], proof.clone()].concat(),
        &root
    )
    .is_err());
    if !proof.is_empty() {
        assert!(verify_inclusion(&leaf, index, size, &proof[1..], &root).is_err());
        assert!(verify_inclusion(&leaf, index, size, &proof[..proof.len() - 1], &root).is_err());
    }
    // Another index or size. RFC 9162 verification is the same computation for some pairs of
    // sizes (e.g. leaf 0 of 3 and of 4 leaves: the last proof element stands for leaf 2 or for
    // leaves 2..4), so a changed size may only verify when it is exactly that computation; a
    // changed index never verifies, since it changes the left/right order.
    for other in [
        index.wrapping_sub(1),
        index + 1,
        index ^ 1,
        index ^ 2,
        index ^ 4,
    ] {
        if other != index {
            assert!(
                verify_inclusion(&leaf, other, size, &proof, &root).is_err(),
                "index {other} accepted for {index}/{size}"
            );
        }
    }
    for other in [size - 1, size + 1, size * 2, size / 2, size + 2] {
        if other == size {
            continue;
        }
        if verify_inclusion(&leaf, index, other, &proof, &root).is_ok() {
            let x = leaf_hash(b"x");
            let q: Vec<Hash> = proof.iter().map(|h| leaf_hash(h)).collect();
            assert_eq!(
                root_from_inclusion(&x, index, other, &q),
                root_from_inclusion(&x, index, size, &q),
                "size {other} accepted for {index}/{size} by a different computation"
            );
        }
    }
}

/// Checks one consistency proof and every alteration of it.
/// `alt` is another tree with at least `new` leaves.
fn check_consistency(tree: &MemoryTree, alt: &MemoryTree, old: u64, new: u64, byte: usize) {
    let proof = consistency_proof(tree, old, new).unwrap();
    let (r1, r2) = (tree.root_at(old), tree.root_at(new));
    assert_eq!(verify_consistency(old, new, &r1, &r2, &proof), Ok(()));

    for i in 0..proof.len() {
        let mut p = proof.clone();
        p[i] = flip(&p[i], byte + i);
        assert!(
            verify_consistency(old, new, &r1, &r2, &p).is_err(),
            "altered proof[{i}] accepted for {old}->{new}"
        );
    }
    assert!(verify_consistency(old, new, &flip(&r1, byte), &r2, &proof).is_err());
    assert!(verify_consistency(old, new, &r1, &flip(&r2, byte), &proof).is_err());
    assert!(verify_consistency(old, new, &r1, &r2, &[proof.clone(), vec![r1]].concat()).is_err());
    assert!(verify_consistency(old, new, &r1, &r2, &[vec![r2], proof.clone()].concat()).is_err());
    if !proof.is_empty() {
        assert!(verify_consistency(old, new, &r1, &r2, &proof[1..]).is_err());
        assert!(verify_consistency(old, new, &r1, &r2, &proof[..proof.len() - 1]).is_err());
    }
    // Other sizes: either rejected, or (for the new size only, as for inclusion) the very same
    // computation. A changed old size is always rejected: it changes how the old root is rebuilt.
    for other in [old - 1, old + 1, old ^ 1, old ^ 2, old * 2] {
        if other != old && other != 0 {
            assert!(
                verify_consistency(other, new, &r1, &r2, &proof).is_err(),
                "old size {other} accepted for {old}->{new}"
            );
        }
    }
    for other in [new - 1, new + 1, new * 2, new + 2] {
        if other == new || other < old {
            continue;
        }
        if verify_consistency(old, other, &r1, &r2, &proof).is_ok() {
            // Then it must be the same computation as for `new`: it accepts the honest proof of
            // any other tree too (a coincidence on one tree would fail here).
            let (a1, a2) = (alt.root_at(old), alt.root_at(new));
            let q = consistency_proof(alt, old, new).unwrap();
            assert_eq!(
                verify_consistency(old, other, &a1, &a2, &q),
                Ok(()),
                "new size {other} accepted for {old}->{new} by a different computation"
            );
        }
    }
}

#[test]
fn exhaustive_small_trees() {
    // Every (index, size) and (old, new) up to 64 leaves, against the literal RFC recursion.
    let ls = leaves(7, 64);
    let tree = tree_of(&ls);
    let alt = tree_of(&leaves(8, 64));
    for size in 1..=64u64 {
        let d = &ls[..size as usize];
        assert_eq!(tree_root(&tree, size), Ok(root_of(d)));
        for index in 0..size {
            assert_eq!(
                inclusion_proof(&tree, index, size).unwrap(),
                ref_path(index as usize, d),
                "PATH({index}, D[{size}])"
            );
            check_inclusion(&tree, index, size, (index * 31 + size) as usize);
        }
        for old in 1..=size {
            assert_eq!(
                consistency_proof(&tree, old, size).unwrap(),
                ref_subproof(old as usize, d, true),
                "PROOF({old}, D[{size}])"
            );
            check_consistency(&tree, &alt, old, size, (old * 17 + size) as usize);
        }
    }
}

#[test]
fn frontier_matches_tree_at_every_size() {
    let ls = leaves(11, 300);
    let tree = tree_of(&ls);
    let mut frontier = Frontier::new();
    let mut stored = 0usize;
    for (i, leaf) in ls.iter().enumerate() {
        let size = i as u64 + 1;
        let nodes = frontier.append(*leaf);
        assert_eq!(nodes[0], (0, i as u64, *leaf));
        for (level, index, h) in &nodes {
            assert_eq!(tree.node(*level, *index), Ok(*h), "node {level}/{index}");
            // Complete within this size, and only just completed.
            assert_eq!((index + 1) << level, size);
        }
        // One new node per trailing one bit of the old size, plus the leaf.
        assert_eq!(nodes.len(), (size - 1).trailing_ones() as usize + 1);
        stored += nodes.len();
        assert_eq!(frontier.size(), size);
        assert_eq!(frontier.root(), root_of(&ls[..=i]), "root at {size}");
        assert_eq!(frontier.hashes().len(), size.count_ones() as usize);
        assert_eq!(Frontier::load(&tree, size), Ok(frontier.clone()));
    }
    // Every full subtree of the tree was returned exactly once: sum over levels of n >> level.
    let all: u64 = (0..64).map(|l| 300u64 >> l).sum();
    assert_eq!(stored as u64, all);
    assert_eq!(Frontier::load(&tree, 0), Ok(Frontier::new()));
}

#[test]
fn every_proof_up_to_300_leaves_verifies_and_a_flipped_byte_breaks_it() {
    // Every (index, size) and every (old, new) with size <= 300: the proof verifies, and flipping
    // one byte of one of its hashes (a different element and byte each time) is rejected.
    let tree = tree_of(&leaves(3, 300));
    let mut turn = 0usize;
    for size in 1..=300u64 {
        let root = tree.root_at(size);
        for index in 0..size {
            let leaf = tree.node(0, index).unwrap();
            let proof = inclusion_proof(&tree, index, size).unwrap();
            assert_eq!(verify_inclusion(&leaf, index, size, &proof, &root), Ok(()));
            turn += 1;
            if !proof.is_empty() {
                let mut bad = proof.clone();
                let i = turn % bad.len();
                bad[i] = flip(&bad[i], turn);
                assert!(verify_inclusion(&leaf, index, size, &bad, &root).is_err());
            }
            assert!(verify_inclusion(&flip(&leaf, turn), index, size, &proof, &root).is_err());
        }
        for old in 1..=size {
            let old_root = tree.root_at(old);
            let proof = consistency_proof(&tree, old, size).unwrap();
            assert_eq!(
                verify_consistency(old, size, &old_root, &root, &proof),
                Ok(())
            );
            turn += 1;
            if !proof.is_empty() {
                let mut bad = proof.clone();
                let i = turn % bad.len();
                bad[i] = flip(&bad[i], turn);
                assert!(verify_consistency(old, size, &old_root, &root, &bad).is_err());
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn random_inclusion(seed in any::<u64>(), n in 1u64..=300, pick in any::<u64>(), byte in any::<usize>()) {
        let ls = leaves(seed, n);
        let tree = tree_of(&ls);
        let index = pick % n;
        prop_assert_eq!(inclusion_proof(&tree, index, n).unwrap(), ref_path(index as usize, &ls));
        check_inclusion(&tree, index, n, byte);
        // And in every smaller tree that holds the leaf.
        let size = index + 1 + pick % (n - index);
        check_inclusion(&tree, index, size, byte);
    }

    #[test]
    fn random_consistency(seed in any::<u64>(), n in 1u64..=300, pick in any::<u64>(), byte in any::<usize>()) {
        let ls = leaves(seed, n);
        let tree = tree_of(&ls);
        let old = 1 + pick % n;
        let alt = tree_of(&leaves(seed.wrapping_add(1), n));
        prop_assert_eq!(consistency_proof(&tree, old, n).unwrap(), ref_subproof(old as usize, &ls, true));
        check_consistency(&tree, &alt, old, n, byte);
    }

    #[test]
    fn random_frontier_load(seed in any::<u64>(), n in 0u64..=300) {
        let ls = leaves(seed, n);
        let tree = tree_of(&ls);
        let mut f = Frontier::new();
        for l in &ls {
            f.append(*l);
        }
        prop_assert_eq!(f.root(), root_of(&ls));
        prop_assert_eq!(f.root(), tree.root());
        prop_assert_eq!(Frontier::load(&tree, n), Ok(f));
    }
}
