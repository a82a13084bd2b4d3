//! RFC 6962 / RFC 9162 §2.1 Merkle tree hashing and proofs.
//!
//! Leaves are hashed as `SHA-256(0x00 || data)`, interior nodes as `SHA-256(0x01 || left || right)`
//! and the empty tree's root is `SHA-256("")`. Inclusion and consistency proofs are exactly the
//! RFC 9162 lists (§2.1.3 and §2.1.4), so they interoperate with other RFC 6962 verifiers (Go's
//! `transparency-dev/merkle`, certificate-transparency).
//!
//! Stored trees are read through [`NodeSource`], which serves hashes of *full, aligned* subtrees
//! only; every root, range hash and proof here needs O(log n) of those reads. An appender keeps a
//! [`Frontier`] (the hashes of the full subtrees covering the tree) and stores what
//! [`Frontier::append`] returns.

use sha2::{Digest, Sha256};

/// A SHA-256 digest: a leaf hash, a node hash or a tree root.
pub type Hash = [u8; 32];

/// RFC 6962 leaf hash: `SHA-256(0x00 || data)`.
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0x00]);
    h.update(data);
    h.finalize().into()
}

/// RFC 6962 interior node hash: `SHA-256(0x01 || left || right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([0x01]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// Root of the empty tree: the SHA-256 of the empty string.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// Merkle Tree Hash (RFC 9162 §2.1.1) over the given leaf hashes, computed directly: the reference
/// definition, O(n) hashing.
pub fn root_of(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => empty_root(),
        1 => leaves[0],
        n => {
            let k = split_point(n as u64) as usize;
            node_hash(&root_of(&leaves[..k]), &root_of(&leaves[k..]))
        }
    }
}

/// Reads hashes of *full, aligned* subtrees: the subtree at `level` and `index` covers leaves
/// `[index << level, (index + 1) << level)`; level 0 is the leaf hash of leaf `index`.
/// Implementations (a database table, a Vec) only ever get asked for subtrees that are complete
/// within the tree size the caller passed.
pub trait NodeSource {
    /// What a failed read reports.
    type Error;
    /// The hash of the full subtree at `level`, `index`.
    fn node(&self, level: u32, index: u64) -> Result<Hash, Self::Error>;
}

impl<S: NodeSource + ?Sized> NodeSource for &S {
    type Error = S::Error;
    fn node(&self, level: u32, index: u64) -> Result<Hash, Self::Error> {
        (**self).node(level, index)
    }
}

/// Why a proof could not be built or did not verify.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum ProofError {
    /// The leaf index is not below the tree size.
    #[error(
        "leaf index {index} is not in a tree of size {size}; the index must be below the size"
    )]
    IndexOutOfRange { index: u64, size: u64 },
    /// Consistency between these sizes is not defined.
    #[error("tree sizes old={old} new={new} cannot be compared: the old size must not exceed the new one (and must be above 0 to build a proof)")]
    BadSizes { old: u64, new: u64 },
    /// `[start, end)` is not a subtree range of RFC 6962's recursion.
    #[error("leaf range [{start}, {end}) is not a subtree: it must be non-empty and start at a multiple of the smallest power of two >= its length")]
    BadRange { start: u64, end: u64 },
    /// The proof has the wrong number of hashes for the index and sizes it claims to be for.
    #[error("proof has {got} hashes but {expected} are needed for these tree sizes and index")]
    WrongLength { expected: usize, got: usize },
    /// The inclusion proof does not lead from the leaf to the root.
    #[error("inclusion proof does not lead to the expected root: the leaf, the proof or the root is wrong")]
    RootMismatch,
    /// The consistency proof does not reproduce the old root.
    #[error(
        "consistency proof does not reproduce the old root: the old root or the proof is wrong"
    )]
    OldRootMismatch,
    /// The consistency proof does not reproduce the new root.
    #[error(
        "consistency proof does not reproduce the new root: the new root or the proof is wrong"
    )]
    NewRootMismatch,
    /// Two tree heads of the same size must have the same root.
    #[error(
        "both trees have size {size} but their roots differ: the log has forked or a root is wrong"
    )]
    SameSizeDifferentRoots { size: u64 },
    /// A [`MemoryTree`] was asked about more leaves than it holds.
    #[error("tree size {size} is beyond the {len} leaves held in memory")]
    SizeBeyondTree { size: u64, len: u64 },
}

/// Error of proof *generation*: either bad arguments or the node source failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum BuildError<E> {
    /// The arguments do not describe a valid proof or range.
    #[error(transparent)]
    Proof(#[from] ProofError),
    /// The node source failed.
    #[error("reading a stored tree node failed: {0}")]
    Source(E),
}

/// For a tree of `n >= 2` leaves: the largest power of two strictly below `n`.
fn split_point(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1 << (63 - (n - 1).leading_zeros())
}

/// Whether `[start, end)` is a range the RFC 6962 recursion produces: non-empty, and `start` a
/// multiple of the smallest power of two at least `end - start`.
fn is_subtree_range(start: u64, end: u64) -> bool {
    if end <= start {
        return false;
    }
    let len = end - start;
    // ceil(log2(len)) is in 0..=64.
    let level = 64 - (len - 1).leading_zeros();
    start == 0 || start.trailing_zeros() >= level
}

/// Hash of the subtree range `[start, end)`, already checked with [`is_subtree_range`]: the full
/// aligned subtrees covering it (one per set bit of its length, largest first) folded right to left.
fn subtree_hash<S: NodeSource>(src: &S, start: u64, end: u64) -> Result<Hash, S::Error> {
    let len = end - start;
    let mut acc: Option<Hash> = None;
    // Walk the set bits of `len` from the lowest (rightmost subtree) to the highest.
    let mut remaining = len;
    while remaining != 0 {
        let level = remaining.trailing_zeros();
        remaining &= remaining - 1;
        // The subtree for this bit starts after all higher bits' subtrees.
        let pos = start + remaining;
        let h = src.node(level, pos >> level)?;
        acc = Some(match acc {
            None => h,
            Some(right) => node_hash(&h, &right),
        });
    }
    // `len > 0`, so the loop ran at least once.
    Ok(acc.unwrap_or_else(empty_root))
}

/// MTH of leaves `[start, end)`, where `[start, end)` is a subtree range as in RFC 6962 (non-empty,
/// `start` a multiple of the smallest power of two >= `end - start`). Reads one full aligned
/// subtree from `src` per set bit of `end - start`.
pub fn range_hash<S: NodeSource>(
    src: &S,
    start: u64,
    end: u64,
) -> Result<Hash, BuildError<S::Error>> {
    if !is_subtree_range(start, end) {
        return Err(ProofError::BadRange { start, end }.into());
    }
    subtree_hash(src, start, end).map_err(BuildError::Source)
}

/// Root of the first `size` leaves ([`empty_root`] for 0), in O(log size) reads.
pub fn tree_root<S: NodeSource>(src: &S, size: u64) -> Result<Hash, BuildError<S::Error>> {
    if size == 0 {
        return Ok(empty_root());
    }
    range_hash(src, 0, size)
}

/// RFC 9162 §2.1.3.1 `PATH(index, D[size])`: the inclusion proof of leaf `index` in the tree of
/// the first `size` leaves, deepest sibling first.
pub fn inclusion_proof<S: NodeSource>(
    src: &S,
    index: u64,
    size: u64,
) -> Result<Vec<Hash>, BuildError<S::Error>> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size }.into());
    }
    // Descend from the root, collecting the sibling of each node on the path, then reverse.
    let mut proof = Vec::with_capacity(64);
    let (mut start, mut end) = (0u64, size);
    while end - start > 1 {
        let k = split_point(end - start);
        let mid = start + k;
        if index < mid {
            proof.push(subtree_hash(src, mid, end).map_err(BuildError::Source)?);
            end = mid;
        } else {
            proof.push(subtree_hash(src, start, mid).map_err(BuildError::Source)?);
            start = mid;
        }
    }
    proof.reverse();
    Ok(proof)
}

/// RFC 9162 §2.1.4.1 `PROOF(old, D[new])`: the consistency proof from the tree of the first `old`
/// leaves to that of the first `new` leaves. Needs `0 < old <= new`; `old == new` gives an empty
/// proof.
pub fn consistency_proof<S: NodeSource>(
    src: &S,
    old: u64,
    new: u64,
) -> Result<Vec<Hash>, BuildError<S::Error>> {
    if old == 0 || old > new {
        return Err(ProofError::BadSizes { old, new }.into());
    }
    // SUBPROOF(m, D[start:end], b), unrolled: `m` counts the old leaves inside [start, end).
    let mut proof = Vec::with_capacity(64);
    let (mut start, mut end, mut m, mut complete) = (0u64, new, old, true);
    loop {
        let n = end - start;
        if m == n {
            if !complete {
                proof.push(subtree_hash(src, start, end).map_err(BuildError::Source)?);
            }
            break;
        }
        let k = split_point(n);
        let mid = start + k;
        if m <= k {
            proof.push(subtree_hash(src, mid, end).map_err(BuildError::Source)?);
            end = mid;
        } else {
            proof.push(subtree_hash(src, start, mid).map_err(BuildError::Source)?);
            start = mid;
            m -= k;
            complete = false;
        }
    }
    proof.reverse();
    Ok(proof)
}

/// Number of hashes in the inclusion proof of `index` in a tree of `size > index` leaves.
fn inclusion_proof_len(index: u64, size: u64) -> usize {
    let inner = 64 - (index ^ (size - 1)).leading_zeros();
    let border = (index.checked_shr(inner).unwrap_or(0)).count_ones();
    (inner + border) as usize
}

/// Number of hashes in the consistency proof from `old` to `new`, for `0 < old < new`.
fn consistency_proof_len(old: u64, new: u64) -> usize {
    let inner = 64 - ((old - 1) ^ (new - 1)).leading_zeros();
    let border = ((old - 1).checked_shr(inner).unwrap_or(0)).count_ones();
    let shift = old.trailing_zeros();
    let seed = usize::from(!old.is_power_of_two());
    seed + (inner - shift + border) as usize
}

/// Recomputes the root from a leaf hash and its inclusion proof (RFC 9162 §2.1.3.2 steps 1-5).
pub fn root_from_inclusion(
    leaf: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
) -> Result<Hash, ProofError> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let expected = inclusion_proof_len(index, size);
    if proof.len() != expected {
        return Err(ProofError::WrongLength {
            expected,
            got: proof.len(),
        });
    }
    let (mut fnode, mut snode) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if snode == 0 {
            // Unreachable with the length checked above; kept so a bad proof can never pass.
            return Err(ProofError::WrongLength {
                expected,
                got: proof.len(),
            });
        }
        if fnode & 1 == 1 || fnode == snode {
            r = node_hash(p, &r);
            if fnode & 1 == 0 {
                while fnode & 1 == 0 && fnode != 0 {
                    fnode >>= 1;
                    snode >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode != 0 {
        return Err(ProofError::WrongLength {
            expected,
            got: proof.len(),
        });
    }
    Ok(r)
}

/// RFC 9162 §2.1.3.2: checks that `leaf` is leaf `index` of the tree of `size` leaves with `root`.
pub fn verify_inclusion(
    leaf: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    if root_from_inclusion(leaf, index, size, proof)? == *root {
        Ok(())
    } else {
        Err(ProofError::RootMismatch)
    }
}

/// RFC 9162 §2.1.4.2: checks that the tree of `old` leaves with `old_root` is a prefix of the tree
/// of `new` leaves with `new_root`. When `old == new` the proof must be empty and the roots equal;
/// when `old == 0` the proof must be empty (the empty tree is a prefix of every tree).
pub fn verify_consistency(
    old: u64,
    new: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<(), ProofError> {
    if old > new {
        return Err(ProofError::BadSizes { old, new });
    }
    if old == new || old == 0 {
        if !proof.is_empty() {
            return Err(ProofError::WrongLength {
                expected: 0,
                got: proof.len(),
            });
        }
        if old == new && old_root != new_root {
            return Err(ProofError::SameSizeDifferentRoots { size: old });
        }
        return Ok(());
    }
    let expected = consistency_proof_len(old, new);
    if proof.len() != expected {
        return Err(ProofError::WrongLength {
            expected,
            got: proof.len(),
        });
    }
    // Step 2: if `old` is a power of two, its root is the first node of the path.
    let seed_from_proof = !old.is_power_of_two();
    let (seed, rest) = if seed_from_proof {
        (proof[0], &proof[1..])
    } else {
        (*old_root, proof)
    };
    let (mut fnode, mut snode) = (old - 1, new - 1);
    while fnode & 1 == 1 {
        fnode >>= 1;
        snode >>= 1;
    }
    let (mut fr, mut sr) = (seed, seed);
    for c in rest {
        if snode == 0 {
            return Err(ProofError::WrongLength {
                expected,
                got: proof.len(),
            });
        }
        if fnode & 1 == 1 || fnode == snode {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if fnode & 1 == 0 {
                while fnode & 1 == 0 && fnode != 0 {
                    fnode >>= 1;
                    snode >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode != 0 {
        return Err(ProofError::WrongLength {
            expected,
            got: proof.len(),
        });
    }
    if fr != *old_root {
        return Err(ProofError::OldRootMismatch);
    }
    if sr != *new_root {
        return Err(ProofError::NewRootMismatch);
    }
    Ok(())
}

/// The right edge an appender keeps (a "compact range" over `[0, size)`): one hash per set bit of
/// `size`, the full aligned subtrees covering the tree, largest (leftmost) first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    hashes: Vec<Hash>,
}

impl Frontier {
    /// The frontier of the empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of leaves appended so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Hashes of the full subtrees covering `[0, size)`, largest first (one per set bit of size).
    pub fn hashes(&self) -> &[Hash] {
        &self.hashes
    }

    /// MTH of `[0, size)`: the subtree hashes folded right to left.
    pub fn root(&self) -> Hash {
        let mut it = self.hashes.iter().rev();
        match it.next() {
            None => empty_root(),
            Some(last) => it.fold(*last, |acc, h| node_hash(h, &acc)),
        }
    }

    /// Appends one leaf hash; returns every full aligned subtree completed by it as
    /// `(level, index, hash)`, the leaf itself at level 0 first, so the caller can store them as
    /// [`NodeSource`] rows.
    ///
    /// # Panics
    /// If the tree already holds `u64::MAX` leaves.
    pub fn append(&mut self, leaf: Hash) -> Vec<(u32, u64, Hash)> {
        let new_size = self
            .size
            .checked_add(1)
            .expect("a Merkle tree cannot hold more than u64::MAX leaves");
        let mut index = self.size;
        let mut level = 0u32;
        let mut hash = leaf;
        let mut completed = vec![(level, index, hash)];
        while index & 1 == 1 {
            // A full left sibling at this level exists exactly when this bit of the size is set;
            // it is the last (smallest) hash of the frontier.
            let Some(left) = self.hashes.pop() else {
                break;
            };
            hash = node_hash(&left, &hash);
            level += 1;
            index >>= 1;
            completed.push((level, index, hash));
        }
        self.hashes.push(hash);
        self.size = new_size;
        completed
    }

    /// Rebuilds the frontier of a tree of `size` leaves from stored nodes: one read per set bit of
    /// `size`.
    pub fn load<S: NodeSource>(src: &S, size: u64) -> Result<Frontier, S::Error> {
        let mut hashes = Vec::with_capacity(size.count_ones() as usize);
        let mut pos = 0u64;
        for level in (0..64u32).rev() {
            if size >> level & 1 == 1 {
                hashes.push(src.node(level, pos >> level)?);
                pos += 1 << level;
            }
        }
        Ok(Frontier { size, hashes })
    }
}

/// An in-memory [`NodeSource`] over all leaf hashes (it keeps every full subtree of every level),
/// for tests and for verifying an exported log.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemoryTree {
    /// `levels[l][i]` is the full subtree at level `l`, index `i`; `levels[0]` are the leaves.
    levels: Vec<Vec<Hash>>,
}

impl MemoryTree {
    /// An empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a leaf hash.
    pub fn push(&mut self, leaf: Hash) {
        let mut level = 0;
        let mut hash = leaf;
        loop {
            if self.levels.len() == level {
                self.levels.push(Vec::new());
            }
            let row = &mut self.levels[level];
            row.push(hash);
            if row.len() % 2 == 1 {
                break;
            }
            hash = node_hash(&row[row.len() - 2], &row[row.len() - 1]);
            level += 1;
        }
    }

    /// Number of leaves.
    pub fn len(&self) -> u64 {
        self.levels.first().map_or(0, |l| l.len() as u64)
    }

    /// Whether there are no leaves.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Root of the whole tree.
    pub fn root(&self) -> Hash {
        self.root_at(self.len())
    }

    /// Root of the first `size` leaves.
    ///
    /// # Panics
    /// If `size` exceeds [`len`](Self::len); use [`checked_root_at`](Self::checked_root_at) for
    /// sizes that come from input.
    pub fn root_at(&self, size: u64) -> Hash {
        match self.checked_root_at(size) {
            Ok(h) => h,
            Err(e) => panic!("{e}"),
        }
    }

    /// Root of the first `size` leaves, or an error if the tree holds fewer.
    pub fn checked_root_at(&self, size: u64) -> Result<Hash, ProofError> {
        self.check_size(size)?;
        Ok(match tree_root(self, size) {
            Ok(h) => h,
            Err(BuildError::Proof(e)) => return Err(e),
            Err(BuildError::Source(never)) => match never {},
        })
    }

    /// [`inclusion_proof`] with `size` checked against the leaves held.
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, ProofError> {
        self.check_size(size)?;
        inclusion_proof(self, index, size).map_err(infallible)
    }

    /// [`consistency_proof`] with `new` checked against the leaves held.
    pub fn consistency_proof(&self, old: u64, new: u64) -> Result<Vec<Hash>, ProofError> {
        self.check_size(new)?;
        consistency_proof(self, old, new).map_err(infallible)
    }

    fn check_size(&self, size: u64) -> Result<(), ProofError> {
        if size > self.len() {
            return Err(ProofError::SizeBeyondTree {
                size,
                len: self.len(),
            });
        }
        Ok(())
    }
}

fn infallible(e: BuildError<std::convert::Infallible>) -> ProofError {
    match e {
        BuildError::Proof(p) => p,
        BuildError::Source(never) => match never {},
    }
}

impl NodeSource for MemoryTree {
    type Error = std::convert::Infallible;

    /// # Panics
    /// If the subtree is not complete within the leaves held (a broken [`NodeSource`] contract:
    /// the functions of this module only ask for such nodes when given a size beyond
    /// [`MemoryTree::len`]; the `MemoryTree` methods check that first).
    fn node(&self, level: u32, index: u64) -> Result<Hash, Self::Error> {
        let found = self
            .levels
            .get(level as usize)
            .and_then(|row| row.get(usize::try_from(index).ok()?));
        match found {
            Some(h) => Ok(*h),
            None => panic!(
                "MemoryTree of {} leaves has no complete subtree at level {level}, index {index}",
                self.len()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaves(n: u64) -> Vec<Hash> {
        (0..n).map(|i| leaf_hash(&i.to_be_bytes())).collect()
    }

    fn tree(n: u64) -> MemoryTree {
        let mut t = MemoryTree::new();
        for l in leaves(n) {
            t.push(l);
        }
        t
    }

    #[test]
    fn hashes_match_rfc6962_definitions() {
        assert_eq!(
            empty_root(),
            Sha256::digest(b"").as_slice(),
            "empty root is SHA-256 of nothing"
        );
        let mut pre = vec![0u8];
        pre.extend_from_slice(b"abc");
        assert_eq!(leaf_hash(b"abc"), Sha256::digest(&pre).as_slice());
        let (a, b) = ([1u8; 32], [2u8; 32]);
        let mut pre = vec![1u8];
        pre.extend_from_slice(&a);
        pre.extend_from_slice(&b);
        assert_eq!(node_hash(&a, &b), Sha256::digest(&pre).as_slice());
        assert_ne!(node_hash(&a, &b), node_hash(&b, &a));
    }

    #[test]
    fn split_point_is_largest_power_of_two_below() {
        for n in 2u64..=600 {
            let k = split_point(n);
            assert!(k.is_power_of_two() && k < n && 2 * k >= n, "n={n} k={k}");
        }
        assert_eq!(split_point(u64::MAX), 1 << 63);
        assert_eq!(split_point((1 << 63) + 1), 1 << 63);
        assert_eq!(split_point(1 << 63), 1 << 62);
    }

    #[test]
    fn subtree_ranges() {
        assert!(is_subtree_range(0, 1));
        assert!(is_subtree_range(0, 7));
        assert!(is_subtree_range(4, 7));
        assert!(is_subtree_range(6, 7));
        assert!(is_subtree_range(8, 13));
        assert!(is_subtree_range(0, u64::MAX));
        assert!(!is_subtree_range(0, 0));
        assert!(!is_subtree_range(5, 5));
        assert!(!is_subtree_range(7, 5));
        assert!(!is_subtree_range(2, 5)); // length 3 needs alignment 4
        assert!(!is_subtree_range(1, u64::MAX));
        assert!(!is_subtree_range(1 << 62, u64::MAX));
    }

    #[test]
    fn range_hash_matches_reference_for_all_subtree_ranges() {
        let n = 70;
        let t = tree(n);
        let ls = leaves(n);
        for start in 0..n {
            for end in start + 1..=n {
                let got = range_hash(&t, start, end);
                if is_subtree_range(start, end) {
                    assert_eq!(
                        got,
                        Ok(root_of(&ls[start as usize..end as usize])),
                        "[{start},{end})"
                    );
                } else {
                    assert_eq!(got, Err(ProofError::BadRange { start, end }.into()));
                }
            }
        }
    }

    #[test]
    fn tree_root_and_memory_tree() {
        let t = tree(33);
        let ls = leaves(33);
        for size in 0..=33u64 {
            assert_eq!(tree_root(&t, size), Ok(root_of(&ls[..size as usize])));
            assert_eq!(t.root_at(size), root_of(&ls[..size as usize]));
        }
        assert_eq!(t.len(), 33);
        assert!(!t.is_empty());
        assert!(MemoryTree::new().is_empty());
        assert_eq!(MemoryTree::new().root(), empty_root());
        assert_eq!(
            t.checked_root_at(34),
            Err(ProofError::SizeBeyondTree { size: 34, len: 33 })
        );
        assert_eq!(
            t.inclusion_proof(0, 40),
            Err(ProofError::SizeBeyondTree { size: 40, len: 33 })
        );
        assert_eq!(
            t.consistency_proof(3, 40),
            Err(ProofError::SizeBeyondTree { size: 40, len: 33 })
        );
    }

    #[test]
    fn generation_argument_errors() {
        let t = tree(8);
        assert_eq!(
            t.inclusion_proof(8, 8),
            Err(ProofError::IndexOutOfRange { index: 8, size: 8 })
        );
        assert_eq!(
            t.inclusion_proof(0, 0),
            Err(ProofError::IndexOutOfRange { index: 0, size: 0 })
        );
        assert_eq!(
            t.consistency_proof(0, 5),
            Err(ProofError::BadSizes { old: 0, new: 5 })
        );
        assert_eq!(
            t.consistency_proof(6, 5),
            Err(ProofError::BadSizes { old: 6, new: 5 })
        );
        assert_eq!(t.consistency_proof(5, 5), Ok(vec![]));
        assert_eq!(t.inclusion_proof(0, 1), Ok(vec![]));
    }

    #[test]
    fn proof_lengths_match_generated_proofs() {
        let t = tree(140);
        for size in 1..=140u64 {
            for index in 0..size {
                let p = t.inclusion_proof(index, size).unwrap();
                assert_eq!(p.len(), inclusion_proof_len(index, size), "{index}/{size}");
            }
            for old in 1..size {
                let p = t.consistency_proof(old, size).unwrap();
                assert_eq!(p.len(), consistency_proof_len(old, size), "{old}->{size}");
            }
        }
    }

    #[test]
    fn verify_argument_errors() {
        let h = leaf_hash(b"x");
        assert_eq!(
            verify_inclusion(&h, 1, 1, &[], &h),
            Err(ProofError::IndexOutOfRange { index: 1, size: 1 })
        );
        assert_eq!(verify_inclusion(&h, 0, 1, &[], &h), Ok(()));
        assert_eq!(
            verify_inclusion(&h, 0, 1, &[h], &h),
            Err(ProofError::WrongLength {
                expected: 0,
                got: 1
            })
        );
        assert_eq!(
            verify_consistency(2, 1, &h, &h, &[]),
            Err(ProofError::BadSizes { old: 2, new: 1 })
        );
        assert_eq!(verify_consistency(0, 0, &h, &h, &[]), Ok(()));
        assert_eq!(verify_consistency(0, 9, &h, &empty_root(), &[]), Ok(()));
        assert_eq!(
            verify_consistency(0, 9, &h, &h, &[h]),
            Err(ProofError::WrongLength {
                expected: 0,
                got: 1
            })
        );
        assert_eq!(
            verify_consistency(3, 3, &h, &empty_root(), &[]),
            Err(ProofError::SameSizeDifferentRoots { size: 3 })
        );
        assert_eq!(
            verify_consistency(1, 2, &h, &h, &[]),
            Err(ProofError::WrongLength {
                expected: 1,
                got: 0
            })
        );
    }

    #[test]
    fn huge_sizes_do_not_panic() {
        let h = leaf_hash(b"x");
        for (i, n) in [
            (0, u64::MAX),
            (u64::MAX - 1, u64::MAX),
            (1 << 63, u64::MAX),
            ((1 << 63) - 1, 1 << 63),
        ] {
            let len = inclusion_proof_len(i, n);
            assert!(len <= 64);
            let proof = vec![h; len];
            assert_eq!(
                verify_inclusion(&h, i, n, &proof, &h),
                Err(ProofError::RootMismatch)
            );
        }
        for (m, n) in [(1, u64::MAX), (u64::MAX - 1, u64::MAX), (3, 1 << 63)] {
            let len = consistency_proof_len(m, n);
            let proof = vec![h; len];
            assert!(verify_consistency(m, n, &h, &h, &proof).is_err());
        }
    }

    #[test]
    fn frontier_basics() {
        let mut f = Frontier::new();
        assert_eq!(f.size(), 0);
        assert_eq!(f.root(), empty_root());
        let ls = leaves(9);
        let mut nodes = Vec::new();
        for l in &ls {
            nodes.extend(f.append(*l));
        }
        assert_eq!(f.size(), 9);
        assert_eq!(f.hashes().len(), 2);
        assert_eq!(f.root(), root_of(&ls));
        // 9 leaves + 4 + 2 + 1 interior full subtrees.
        assert_eq!(nodes.len(), 16);
        let t = tree(9);
        for (level, index, h) in nodes {
            assert_eq!(t.node(level, index), Ok(h));
        }
        assert_eq!(Frontier::load(&t, 9), Ok(f));
    }
}
