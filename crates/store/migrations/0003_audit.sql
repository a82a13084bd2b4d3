-- The audit log (see docs/audit.md).
--
-- Events in the order they were committed. `seq` - 1 is the event's leaf index in the RFC 6962
-- Merkle log: with SQLite one writer commits at a time and AUTOINCREMENT never hands out a number
-- twice, so seq order is commit order and a deleted row leaves a gap that `audit verify` names.
-- `body` is the event's canonical JSON, the exact bytes of its leaf; the other columns repeat
-- fields of the body for queries, and `audit verify` checks that they agree with it.
CREATE TABLE audit_events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    time_ms BIGINT NOT NULL,
    kind TEXT NOT NULL,
    principal TEXT NOT NULL,
    action TEXT NOT NULL,
    decision TEXT NULL,
    result TEXT NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX audit_events_time ON audit_events (time_ms);

-- Everyone an event names (its principal and the whole delegation chain), for "anyone in the
-- chain" queries.
CREATE TABLE audit_parties (
    principal TEXT NOT NULL,
    seq BIGINT NOT NULL,
    PRIMARY KEY (principal, seq)
);

-- Hashes (lower-case hex) of the full, aligned subtrees of the Merkle tree: level 0 holds leaf
-- hashes, level k the subtree over leaves [idx * 2^k, (idx + 1) * 2^k). Written by the integrator
-- when it extends the tree; proofs are built from these rows.
CREATE TABLE audit_nodes (
    level INTEGER NOT NULL,
    idx BIGINT NOT NULL,
    hash TEXT NOT NULL,
    PRIMARY KEY (level, idx)
);

-- Signed tree heads: C2SP tlog-checkpoint notes signed with the issuer key.
CREATE TABLE audit_checkpoints (
    size BIGINT NOT NULL PRIMARY KEY,
    root TEXT NOT NULL,
    time_ms BIGINT NOT NULL,
    note TEXT NOT NULL
);
