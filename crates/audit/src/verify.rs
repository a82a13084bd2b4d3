//! Verification of a whole audit log, streaming, with no I/O: the caller feeds the entries in
//! order (each one's canonical JSON, and optionally what storage says about it) and the signed
//! checkpoints, each right after the entry that completes it, and gets the first thing that is
//! wrong, or a summary.
//!
//! Every leaf hash is recomputed from the event bytes and the tree is rebuilt with a
//! [`Frontier`], so memory stays O(log n) for the tree (plus a few bytes per event to spot copied
//! events). Each checkpoint's signature is checked against trusted keys, its root against the
//! rebuilt tree, and its consistency with the previous checkpoint with an RFC 9162 consistency
//! proof built from the rebuilt tree and verified against the two *signed* roots. A checkpoint
//! larger than the log proves the log was truncated.
//!
//! Stored leaf hashes that do not match their event are held until the next checkpoint decides
//! which side was changed: when the signed root no longer matches, the event was changed; when it
//! still matches, only the stored tree was.

use std::collections::{HashMap, VecDeque};

use ed25519_dalek::VerifyingKey;
use sha2::{Digest, Sha256};

use crate::checkpoint::{self, Checkpoint, CheckpointError};
use crate::event::Event;
use crate::merkle::{self, Frontier, Hash, NodeSource, ProofError};

/// The keys trusted to sign checkpoints.
#[derive(Clone, Debug, Default)]
pub struct Trust {
    /// Note verifier keys: each trusted for checkpoints whose origin is its name.
    named: Vec<(String, VerifyingKey)>,
    /// Bare Ed25519 keys (an issuer's public key): trusted under whatever origin a checkpoint
    /// names, as the signer's key name.
    any_origin: Vec<VerifyingKey>,
}

impl Trust {
    /// No key trusted yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Trusts a note verifier key for checkpoints whose origin is `name`.
    pub fn add_note_key(&mut self, name: String, key: VerifyingKey) {
        if !self.named.iter().any(|(n, k)| *n == name && *k == key) {
            self.named.push((name, key));
        }
    }

    /// Trusts a bare Ed25519 public key to sign checkpoints of any origin (the key name of its
    /// signature line must be the checkpoint's origin).
    pub fn add_any_origin(&mut self, key: VerifyingKey) {
        if !self.any_origin.contains(&key) {
            self.any_origin.push(key);
        }
    }

    /// Whether no key is trusted.
    pub fn is_empty(&self) -> bool {
        self.named.is_empty() && self.any_origin.is_empty()
    }

    /// The `(name, key)` pairs a checkpoint of `origin` may be signed with.
    fn verifiers_for(&self, origin: &str) -> Vec<(String, VerifyingKey)> {
        let mut out: Vec<(String, VerifyingKey)> = self
            .named
            .iter()
            .filter(|(name, _)| name == origin)
            .cloned()
            .collect();
        for key in &self.any_origin {
            if !out.iter().any(|(_, k)| k == key) {
                out.push((origin.to_owned(), *key));
            }
        }
        out
    }

    /// Checks a checkpoint note: well formed, and signed by a key trusted for its origin.
    pub fn verify(&self, note: &str) -> Result<Checkpoint, NoteProblem> {
        let parsed = checkpoint::parse_note(note).map_err(NoteProblem::Unreadable)?;
        let body = Checkpoint::parse_body(&parsed.text).map_err(NoteProblem::Unreadable)?;
        checkpoint::verify_checkpoint(note, &self.verifiers_for(&body.origin)).map_err(|err| {
            NoteProblem::Untrusted {
                origin: body.origin,
                err,
            }
        })
    }
}

/// Why a checkpoint note was not accepted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NoteProblem {
    /// The note or its checkpoint body does not parse.
    #[error("the checkpoint note is unreadable: {0}")]
    Unreadable(CheckpointError),
    /// No key trusted for the checkpoint's origin signed it validly.
    #[error(
        "the checkpoint (origin {origin}) is not signed by a key trusted for that origin: {err}"
    )]
    Untrusted {
        /// The origin the checkpoint names.
        origin: String,
        /// What signature verification found.
        err: CheckpointError,
    },
}

/// One entry of the log, as the caller read it.
#[derive(Clone, Copy, Debug)]
pub struct Entry<'a> {
    /// Its 0-based leaf index (stored `seq` - 1, or an export line's `index`).
    pub index: u64,
    /// The event's bytes: its canonical JSON, the leaf data.
    pub body: &'a str,
    /// The event id recorded beside the body (a row's `id` column, an export line's `id`).
    pub id: Option<&'a str>,
    /// The leaf hash storage holds for this index (lower-case hex), when it has one.
    pub stored_leaf: Option<&'a str>,
    /// The query columns stored beside the body, to compare with it.
    pub columns: Option<Columns<'a>>,
}

/// The query columns of a stored event, each a copy of part of the body.
#[derive(Clone, Copy, Debug)]
pub struct Columns<'a> {
    /// Unix milliseconds of the event's time.
    pub time_ms: i64,
    /// Kind.
    pub kind: &'a str,
    /// Acting principal.
    pub principal: &'a str,
    /// Action.
    pub action: &'a str,
    /// Decision.
    pub decision: Option<&'a str>,
    /// Result.
    pub result: &'a str,
    /// Everyone the parties index lists for this event, in any order (None: not checked).
    pub parties: Option<&'a [String]>,
}

/// Where the first problem is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    /// One entry: its 0-based leaf index and, when known, its event id.
    Entry {
        /// Leaf index.
        index: u64,
        /// Event id.
        id: Option<String>,
    },
    /// Some entry at leaf indexes `from..=to`.
    Range {
        /// First index of the range.
        from: u64,
        /// Last index of the range.
        to: u64,
    },
    /// The checkpoint of this tree size.
    Checkpoint {
        /// Its tree size.
        size: u64,
    },
}

/// The first thing wrong with a log: where, and what.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("at {location}: {problem}")]
pub struct Failure {
    /// Where.
    pub location: Location,
    /// What.
    pub problem: Problem,
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Entry {
                index,
                id: Some(id),
            } => write!(f, "position {index} (event {id})"),
            Location::Entry { index, id: None } => write!(f, "position {index}"),
            Location::Range { from, to } => write!(f, "positions {from}..{to}"),
            Location::Checkpoint { size } => write!(f, "checkpoint {size}"),
        }
    }
}

impl Failure {
    /// The first leaf index the failure is about (a checkpoint's is its last leaf).
    pub fn position(&self) -> Option<u64> {
        match &self.location {
            Location::Entry { index, .. } => Some(*index),
            Location::Range { from, .. } => Some(*from),
            Location::Checkpoint { .. } => None,
        }
    }

    /// The event id, when the failure is about one known event.
    pub fn event_id(&self) -> Option<&str> {
        match &self.location {
            Location::Entry { id, .. } => id.as_deref(),
            _ => None,
        }
    }

    /// Orders failures by where in the log they are.
    fn sort_key(&self) -> u64 {
        match &self.location {
            Location::Entry { index, .. } => *index,
            Location::Range { from, .. } => *from,
            Location::Checkpoint { size } => size.saturating_sub(1),
        }
    }
}

/// What is wrong.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Problem {
    /// The entry at this index is absent.
    #[error("entry {index} is missing (the log goes on with entry {next}): events were deleted")]
    Missing {
        /// The missing index.
        index: u64,
        /// The index found instead.
        next: u64,
    },
    /// An index came again or went backwards.
    #[error(
        "entry {index} comes again after entry {last}: entries are duplicated or out of order"
    )]
    OutOfOrder {
        /// The index given.
        index: u64,
        /// The last index before it.
        last: u64,
    },
    /// The same event appears twice.
    #[error("event {id} already appeared at position {first}: an event was copied")]
    DuplicateEvent {
        /// Event id.
        id: String,
        /// Where it appeared first.
        first: u64,
    },
    /// The bytes are not an event.
    #[error("the entry is not an audit event ({0}): it was edited")]
    NotAnEvent(String),
    /// The bytes are an event but not in the canonical form every entry is written in.
    #[error("the entry is not the canonical JSON of its event: its bytes were edited")]
    NotCanonical,
    /// The body is another event than the one recorded at this place.
    #[error("the entry holds event {body} but is recorded as {recorded}: events were swapped, moved or edited")]
    WrongEvent {
        /// The id recorded beside the body.
        recorded: String,
        /// The id in the body.
        body: String,
    },
    /// A query column disagrees with the body.
    #[error("its {column} column says {stored} but the event says {event}: the query columns were edited")]
    ColumnMismatch {
        /// Column name.
        column: &'static str,
        /// What the column holds.
        stored: String,
        /// What the event says.
        event: String,
    },
    /// A stored leaf hash is not a hash.
    #[error("its stored leaf hash {0:?} is not 64 hex digits: the stored tree was edited")]
    BadStoredLeaf(String),
    /// The event does not match its stored leaf hash, and no checkpoint covers it yet.
    #[error("the event does not hash to the leaf hash stored when it was logged: the event or the stored tree was changed (no checkpoint covers it yet)")]
    LeafMismatch,
    /// The event does not match its stored leaf hash nor the signed root covering it.
    #[error("the event was changed: it no longer hashes to the leaf stored when it was logged, and checkpoint {checkpoint}'s signed root no longer matches the log")]
    Changed {
        /// The checkpoint whose signed root the change breaks.
        checkpoint: u64,
    },
    /// The event matches the signed root, but its stored leaf hash was changed.
    #[error("the stored leaf hash was changed (the event itself still matches signed checkpoint {checkpoint}): the stored tree is corrupt and proofs built from it will fail")]
    StoredLeafChanged {
        /// The checkpoint the event matches.
        checkpoint: u64,
    },
    /// A signed root does not match the rebuilt tree.
    #[error("checkpoint {size}'s signed root does not match the log: an entry at positions {from}..{to} was changed, removed, inserted or reordered; an export holds only the signed roots to compare with, so the range is as close as it can be named")]
    RootMismatch {
        /// The checkpoint's size.
        size: u64,
        /// First index that may have changed (the previous checkpoint's size).
        from: u64,
        /// Last index that may have changed.
        to: u64,
    },
    /// A checkpoint note was not accepted.
    #[error(transparent)]
    Note(#[from] NoteProblem),
    /// The stored size of a checkpoint is not the signed one.
    #[error("the checkpoint is stored as size {stored} but its signed note says {signed}: the checkpoints were edited")]
    SizeMismatch {
        /// Stored size.
        stored: u64,
        /// Signed size.
        signed: u64,
    },
    /// A checkpoint signs more entries than there are.
    #[error("truncated: checkpoint signs {size} entries but the log holds {entries}")]
    Truncated {
        /// The largest signed size.
        size: u64,
        /// Entries found.
        entries: u64,
    },
    /// The stored tree has more leaves than there are entries.
    #[error(
        "truncated: the stored tree holds {leaves} leaves but the log holds {entries} entries"
    )]
    TreeLonger {
        /// Leaves in the stored tree.
        leaves: u64,
        /// Entries found.
        entries: u64,
    },
    /// Checkpoints came out of order.
    #[error("checkpoint {size} comes after checkpoint {previous}: checkpoints must come in order of size")]
    CheckpointOrder {
        /// This checkpoint's size.
        size: u64,
        /// The previous one's.
        previous: u64,
    },
    /// A checkpoint came after more entries than it covers.
    #[error("checkpoint {size} comes after entry {last}: each checkpoint must come right after the entry that completes it")]
    CheckpointLate {
        /// Its size.
        size: u64,
        /// The last entry before it.
        last: u64,
    },
    /// Two checkpoints of one size sign different roots.
    #[error("two checkpoints of size {size} sign different roots: the log has forked")]
    Fork {
        /// The size.
        size: u64,
    },
    /// Two consecutive checkpoints are not consistent.
    #[error("checkpoints {old} and {new} are not consistent: {err}")]
    Inconsistent {
        /// Older size.
        old: u64,
        /// Newer size.
        new: u64,
        /// What the consistency proof check said.
        err: ProofError,
    },
    /// The verifier itself could not build a proof (a bug, never a verdict on the log).
    #[error("internal error of the verifier: {0}")]
    Internal(String),
}

/// What a log that verified holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Summary {
    /// Number of entries.
    pub entries: u64,
    /// Number of distinct checkpoints verified.
    pub checkpoints: u64,
    /// The largest checkpoint: size and signed root.
    pub last_checkpoint: Option<(u64, Hash)>,
    /// Root of the tree of all entries.
    pub root: Hash,
    /// Entries after the last checkpoint (not signed yet): a warning, not a failure.
    pub tail: u64,
    /// The origins the checkpoints name, in order of first appearance.
    pub origins: Vec<String>,
}

/// A checkpoint whose root has been checked: its size, signed root and the frontier of the tree
/// at that size (the left half of any consistency proof from it).
#[derive(Debug)]
struct Head {
    size: u64,
    root: Hash,
    nodes: Vec<(u32, u64, Hash)>,
}

/// The streaming verifier. Feed entries with [`entry`](Self::entry) and checkpoints with
/// [`checkpoint`](Self::checkpoint) in log order, then call [`finish`](Self::finish). After the
/// first failure every call returns it again.
#[derive(Debug)]
pub struct LogVerifier {
    trust: Trust,
    frontier: Frontier,
    /// First 8 bytes of SHA-256 of each event id seen -> its index.
    ids: HashMap<u64, u64>,
    /// The first entry whose stored leaf hash differs from its recomputed one, held until a
    /// checkpoint says whether the event or the stored hash changed.
    suspect: Option<(u64, String)>,
    /// The last checkpoint whose root was checked.
    head: Option<Head>,
    /// Full subtrees completed since `head` that sit right of its path: with `head.nodes` and
    /// the current frontier, every node of a consistency proof from `head`.
    right: HashMap<(u32, u64), Hash>,
    /// Verified checkpoints larger than the log so far: (size, signed root).
    pending: VecDeque<(u64, Hash)>,
    checkpoints: u64,
    origins: Vec<String>,
    stored_tree_size: Option<u64>,
    failed: Option<Failure>,
}

impl LogVerifier {
    /// A verifier of a log whose checkpoints must be signed by `trust`.
    pub fn new(trust: Trust) -> Self {
        LogVerifier {
            trust,
            frontier: Frontier::new(),
            ids: HashMap::new(),
            suspect: None,
            head: None,
            right: HashMap::new(),
            pending: VecDeque::new(),
            checkpoints: 0,
            origins: Vec::new(),
            stored_tree_size: None,
            failed: None,
        }
    }

    /// Entries fed so far.
    pub fn entries(&self) -> u64 {
        self.frontier.size()
    }

    /// Tells the verifier how many leaves the stored tree holds; more than the entries means
    /// entries were deleted from the end.
    pub fn stored_tree_size(&mut self, leaves: u64) {
        self.stored_tree_size = Some(leaves);
    }

    fn check_failed(&self) -> Result<(), Failure> {
        match &self.failed {
            Some(f) => Err(f.clone()),
            None => Ok(()),
        }
    }

    /// Records the first failure. A held leaf mismatch at or before it is reported instead.
    fn fail(&mut self, f: Failure) -> Failure {
        let f = match self.suspect.take() {
            Some((index, id)) if index <= f.sort_key() => Failure {
                location: Location::Entry {
                    index,
                    id: Some(id),
                },
                problem: Problem::LeafMismatch,
            },
            _ => f,
        };
        self.failed = Some(f.clone());
        f
    }

    fn fail_at(&mut self, index: u64, id: Option<&str>, problem: Problem) -> Result<(), Failure> {
        let f = Failure {
            location: Location::Entry {
                index,
                id: id.map(str::to_owned),
            },
            problem,
        };
        Err(self.fail(f))
    }

    /// Checks one entry and adds it to the tree.
    pub fn entry(&mut self, e: &Entry<'_>) -> Result<(), Failure> {
        self.check_failed()?;
        let expected = self.frontier.size();
        if e.index > expected {
            let problem = Problem::Missing {
                index: expected,
                next: e.index,
            };
            return self.fail_at(expected, None, problem);
        }
        if e.index < expected {
            let problem = Problem::OutOfOrder {
                index: e.index,
                last: expected - 1,
            };
            return self.fail_at(e.index, e.id, problem);
        }
        let event = match Event::parse(e.body) {
            Ok(ev) => ev,
            Err(err) => {
                let problem = Problem::NotAnEvent(err.to_string());
                return self.fail_at(e.index, e.id, problem);
            }
        };
        let id = Some(event.id.as_str());
        if event.canonical() != e.body {
            return self.fail_at(e.index, id, Problem::NotCanonical);
        }
        if let Some(recorded) = e.id {
            if recorded != event.id {
                let problem = Problem::WrongEvent {
                    recorded: recorded.to_owned(),
                    body: event.id.clone(),
                };
                return self.fail_at(e.index, Some(recorded), problem);
            }
        }
        if let Some(first) = self.ids.insert(id_key(&event.id), e.index) {
            let problem = Problem::DuplicateEvent {
                id: event.id.clone(),
                first,
            };
            return self.fail_at(e.index, id, problem);
        }
        let leaf = merkle::leaf_hash(e.body.as_bytes());
        let mut mismatch = false;
        if let Some(stored) = e.stored_leaf {
            match unhex(stored) {
                None => {
                    let problem = Problem::BadStoredLeaf(stored.to_owned());
                    return self.fail_at(e.index, id, problem);
                }
                Some(h) => mismatch = h != leaf,
            }
        }
        if mismatch {
            // Its columns will disagree too if the body changed; the checkpoint decides.
            if self.suspect.is_none() {
                self.suspect = Some((e.index, event.id.clone()));
            }
        } else if let Some(c) = &e.columns {
            if let Some(problem) = column_problem(&event, c) {
                return self.fail_at(e.index, id, problem);
            }
        }
        self.append(leaf);
        while let Some(&(size, root)) = self.pending.front() {
            if size != self.frontier.size() {
                break;
            }
            self.pending.pop_front();
            self.evaluate(size, root)?;
        }
        Ok(())
    }

    fn append(&mut self, leaf: Hash) {
        let completed = self.frontier.append(leaf);
        if let Some(head) = &self.head {
            if head.size > 0 {
                let last = head.size - 1;
                for (level, index, hash) in completed {
                    // The right sibling of the node on the path to the old tree's last leaf.
                    let on_path = last.checked_shr(level).unwrap_or(0);
                    if on_path & 1 == 0 && index == on_path + 1 {
                        self.right.insert((level, index), hash);
                    }
                }
            }
        }
    }

    /// Checks a checkpoint: `size` is what storage says its size is, `note` the signed note.
    /// Feed it right after the entry that completes it (index `size - 1`); one larger than the
    /// log so far is held until the log reaches its size.
    pub fn checkpoint(&mut self, size: u64, note: &str) -> Result<(), Failure> {
        self.check_failed()?;
        let at = Location::Checkpoint { size };
        let cp = match self.trust.verify(note) {
            Ok(cp) => cp,
            Err(p) => {
                return Err(self.fail(Failure {
                    location: at,
                    problem: p.into(),
                }))
            }
        };
        if cp.size != size {
            let problem = Problem::SizeMismatch {
                stored: size,
                signed: cp.size,
            };
            return Err(self.fail(Failure {
                location: at,
                problem,
            }));
        }
        if !self.origins.contains(&cp.origin) {
            self.origins.push(cp.origin.clone());
        }
        let previous = self
            .pending
            .back()
            .copied()
            .or_else(|| self.head.as_ref().map(|h| (h.size, h.root)));
        if let Some((prev_size, prev_root)) = previous {
            if size < prev_size {
                let problem = Problem::CheckpointOrder {
                    size,
                    previous: prev_size,
                };
                return Err(self.fail(Failure {
                    location: at,
                    problem,
                }));
            }
            if size == prev_size {
                if cp.root != prev_root {
                    let problem = Problem::Fork { size };
                    return Err(self.fail(Failure {
                        location: at,
                        problem,
                    }));
                }
                // The same checkpoint again (another signature, or a copy): nothing new.
                return Ok(());
            }
        }
        let entries = self.frontier.size();
        if size < entries {
            let problem = Problem::CheckpointLate {
                size,
                last: entries - 1,
            };
            return Err(self.fail(Failure {
                location: at,
                problem,
            }));
        }
        if size > entries {
            self.pending.push_back((size, cp.root));
            return Ok(());
        }
        self.evaluate(size, cp.root)
    }

    /// Checks a verified checkpoint of exactly the current size against the rebuilt tree and the
    /// previous checkpoint.
    fn evaluate(&mut self, size: u64, signed: Hash) -> Result<(), Failure> {
        let computed = self.frontier.root();
        let from = self.head.as_ref().map_or(0, |h| h.size);
        if let Some((index, id)) = self.suspect.take() {
            let problem = if computed == signed {
                Problem::StoredLeafChanged { checkpoint: size }
            } else {
                Problem::Changed { checkpoint: size }
            };
            return self.fail_at(index, Some(&id), problem);
        }
        if computed != signed {
            let problem = Problem::RootMismatch {
                size,
                from,
                to: size.saturating_sub(1),
            };
            let location = Location::Range {
                from,
                to: size.saturating_sub(1),
            };
            return Err(self.fail(Failure { location, problem }));
        }
        let now = frontier_nodes(&self.frontier);
        if let Some(head) = &self.head {
            if let Err(problem) = consistent(head, &self.right, &now, size, &signed) {
                let location = Location::Checkpoint { size };
                return Err(self.fail(Failure { location, problem }));
            }
        }
        self.head = Some(Head {
            size,
            root: signed,
            nodes: now,
        });
        self.right.clear();
        self.checkpoints += 1;
        Ok(())
    }

    /// Ends the log: checkpoints beyond it, a longer stored tree or a held leaf mismatch fail.
    pub fn finish(mut self) -> Result<Summary, Failure> {
        self.check_failed()?;
        let entries = self.frontier.size();
        let at_end = Location::Entry {
            index: entries,
            id: None,
        };
        if let Some(&(size, _)) = self.pending.back() {
            let problem = Problem::Truncated { size, entries };
            return Err(self.fail(Failure {
                location: at_end,
                problem,
            }));
        }
        if let Some(leaves) = self.stored_tree_size.filter(|&n| n > entries) {
            let problem = Problem::TreeLonger { leaves, entries };
            return Err(self.fail(Failure {
                location: at_end,
                problem,
            }));
        }
        if let Some((index, id)) = self.suspect.take() {
            return Err(Failure {
                location: Location::Entry {
                    index,
                    id: Some(id),
                },
                problem: Problem::LeafMismatch,
            });
        }
        let last_checkpoint = self.head.as_ref().map(|h| (h.size, h.root));
        Ok(Summary {
            entries,
            checkpoints: self.checkpoints,
            last_checkpoint,
            root: self.frontier.root(),
            tail: entries - last_checkpoint.map_or(0, |(s, _)| s),
            origins: self.origins,
        })
    }
}

/// Builds the consistency proof from `head` to the current tree (of `size` leaves) from the
/// nodes kept, and verifies it against the two signed roots.
fn consistent(
    head: &Head,
    right: &HashMap<(u32, u64), Hash>,
    now: &[(u32, u64, Hash)],
    size: u64,
    signed: &Hash,
) -> Result<(), Problem> {
    if head.size == 0 {
        // The empty tree is a prefix of every tree; its proof is empty.
        return merkle::verify_consistency(0, size, &head.root, signed, &[]).map_err(|err| {
            Problem::Inconsistent {
                old: 0,
                new: size,
                err,
            }
        });
    }
    let mut nodes = right.clone();
    for (level, index, hash) in head.nodes.iter().chain(now) {
        nodes.insert((*level, *index), *hash);
    }
    let src = Kept(nodes);
    let proof = merkle::consistency_proof(&src, head.size, size).map_err(|e| match e {
        merkle::BuildError::Proof(p) => Problem::Internal(p.to_string()),
        merkle::BuildError::Source((level, index)) => Problem::Internal(format!(
            "node ({level}, {index}) of the proof from {} to {size} was not kept",
            head.size
        )),
    })?;
    merkle::verify_consistency(head.size, size, &head.root, signed, &proof).map_err(|err| {
        Problem::Inconsistent {
            old: head.size,
            new: size,
            err,
        }
    })
}

/// The nodes kept for one consistency proof.
struct Kept(HashMap<(u32, u64), Hash>);

impl NodeSource for Kept {
    type Error = (u32, u64);
    fn node(&self, level: u32, index: u64) -> Result<Hash, Self::Error> {
        self.0.get(&(level, index)).copied().ok_or((level, index))
    }
}

/// The frontier's hashes with their (level, index).
fn frontier_nodes(f: &Frontier) -> Vec<(u32, u64, Hash)> {
    let size = f.size();
    let mut hashes = f.hashes().iter();
    let mut out = Vec::with_capacity(f.hashes().len());
    let mut pos = 0u64;
    for level in (0..64u32).rev() {
        if size >> level & 1 == 1 {
            if let Some(h) = hashes.next() {
                out.push((level, pos >> level, *h));
            }
            pos += 1 << level;
        }
    }
    out
}

fn id_key(id: &str) -> u64 {
    let d = Sha256::digest(id.as_bytes());
    u64::from_be_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]])
}

/// A hash from 64 hex digits.
fn unhex(s: &str) -> Option<Hash> {
    if s.len() != 64 || !s.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// The first query column that disagrees with the event.
fn column_problem(event: &Event, c: &Columns<'_>) -> Option<Problem> {
    let mismatch = |column: &'static str, stored: &str, event: &str| {
        (stored != event).then(|| Problem::ColumnMismatch {
            column,
            stored: format!("{stored:?}"),
            event: format!("{event:?}"),
        })
    };
    let time_ms = unix_millis(&event.time).unwrap_or(0);
    if c.time_ms != time_ms {
        return Some(Problem::ColumnMismatch {
            column: "time_ms",
            stored: c.time_ms.to_string(),
            event: format!("{time_ms} ({})", event.time),
        });
    }
    let opt = |v: Option<&str>| v.map_or("null".to_owned(), |s| format!("{s:?}"));
    if c.decision != event.decision.as_deref() {
        return Some(Problem::ColumnMismatch {
            column: "decision",
            stored: opt(c.decision),
            event: opt(event.decision.as_deref()),
        });
    }
    mismatch("kind", c.kind, &event.kind)
        .or_else(|| mismatch("principal", c.principal, &event.principal))
        .or_else(|| mismatch("action", c.action, &event.action))
        .or_else(|| mismatch("result", c.result, &event.result))
        .or_else(|| {
            let stored = c.parties?;
            let mut stored: Vec<&str> = stored.iter().map(String::as_str).collect();
            let parties = event.parties();
            let mut named: Vec<&str> = parties.iter().map(String::as_str).collect();
            stored.sort_unstable();
            named.sort_unstable();
            (stored != named).then(|| Problem::ColumnMismatch {
                column: "parties",
                stored: stored.join(" "),
                event: named.join(" "),
            })
        })
}

/// Unix milliseconds of an RFC 3339 time (`2026-11-26T01:02:03.456Z`, or with an offset; the
/// fraction is cut to milliseconds), as the server computes the `time_ms` column.
pub fn unix_millis(t: &str) -> Option<i64> {
    let b = t.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let s = t.get(r)?;
        if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        s.parse().ok()
    };
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    if !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, s) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || d < 1 || d > days_in_month(y, mo) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    let mut i = 19;
    let mut ms = 0i64;
    if b[i] == b'.' {
        let start = i + 1;
        i = start;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return None;
        }
        let frac = &t[start..i.min(start + 3)];
        ms = frac.parse::<i64>().ok()? * 10i64.pow(3 - frac.len() as u32);
    }
    let offset_min = match &t[i..] {
        "Z" | "z" => 0,
        // Bytes, not `&o[3..4]`: a multi-byte character there must not panic.
        o if o.len() == 6
            && (o.starts_with('+') || o.starts_with('-'))
            && o.as_bytes()[3] == b':' =>
        {
            let (oh, om) = (num(i + 1..i + 3)?, num(i + 4..i + 6)?);
            if oh > 23 || om > 59 {
                return None;
            }
            let v = oh * 60 + om;
            if o.starts_with('-') {
                -v
            } else {
                v
            }
        }
        _ => return None,
    };
    let days = days_from_civil(y, mo, d);
    let secs = days * 86_400 + h * 3600 + mi * 60 + s - offset_min * 60;
    Some(secs * 1000 + ms)
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Howard Hinnant's days-from-civil algorithm.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Why an inclusion proof bundle (`mandate audit proof`) does not verify.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InclusionProblem {
    /// The checkpoint note was not accepted.
    #[error(transparent)]
    Note(#[from] NoteProblem),
    /// The bundle's tree size is not the checkpoint's.
    #[error("the proof is for tree size {claimed} but the checkpoint signs size {signed}")]
    SizeMismatch {
        /// Size the bundle states.
        claimed: u64,
        /// Size the checkpoint signs.
        signed: u64,
    },
    /// The bundle's leaf hash is not the event's.
    #[error("the leaf hash in the proof is not the hash of the event: the event was changed")]
    LeafMismatch,
    /// The proof does not lead from the event to the signed root.
    #[error("the event is not at position {index} of the signed log: {err}")]
    NotIncluded {
        /// The claimed position.
        index: u64,
        /// What the proof check said.
        err: ProofError,
    },
}

/// Checks an inclusion proof bundle offline: the note is signed by a trusted key for its origin
/// and covers `tree_size` leaves, and the event bytes (`body`, its canonical JSON) are leaf
/// `index` of that tree. `leaf_hash`, when given, must be the event's.
pub fn verify_event_inclusion(
    body: &str,
    index: u64,
    tree_size: u64,
    leaf_hash: Option<&Hash>,
    proof: &[Hash],
    note: &str,
    trust: &Trust,
) -> Result<Checkpoint, InclusionProblem> {
    let cp = trust.verify(note)?;
    if cp.size != tree_size {
        return Err(InclusionProblem::SizeMismatch {
            claimed: tree_size,
            signed: cp.size,
        });
    }
    let leaf = merkle::leaf_hash(body.as_bytes());
    if leaf_hash.is_some_and(|h| *h != leaf) {
        return Err(InclusionProblem::LeafMismatch);
    }
    merkle::verify_inclusion(&leaf, index, cp.size, proof, &cp.root)
        .map_err(|err| InclusionProblem::NotIncluded { index, err })?;
    Ok(cp)
}

#[cfg(test)]
mod tests;
