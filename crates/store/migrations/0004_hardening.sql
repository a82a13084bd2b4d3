-- Hardening against abuse (see docs/security.md).
--
-- Who named a mandate's `may_act`, so that a later pull is decided by policy and recorded on the
-- real pair (the principal who allowed it, and the puller), not on the holder who made no request.
ALTER TABLE mandates ADD COLUMN may_act TEXT NULL;
ALTER TABLE mandates ADD COLUMN may_act_by TEXT NULL;

-- Parties an enforcement point only asserted (the chain it says a decision was for) are indexed
-- apart from the parties Mandate verified.
ALTER TABLE audit_parties ADD COLUMN asserted BOOLEAN NOT NULL DEFAULT FALSE;

-- Decision-point events written before this migration stored the caller's chain as if verified:
-- everyone they name but the caller is marked asserted.
UPDATE audit_parties SET asserted = TRUE
 WHERE seq IN (SELECT seq FROM audit_events WHERE kind = 'policy.decision' AND action = 'pdp.evaluation')
   AND principal <> (SELECT e.principal FROM audit_events e WHERE e.seq = audit_parties.seq);

-- How far the parties index reaches. The index is built apart from checkpoints (a slow index
-- never holds back signing); events past this seq are found by their body.
CREATE TABLE audit_index (
    id INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    through BIGINT NOT NULL
);
INSERT INTO audit_index (id, through)
    SELECT 1, COALESCE(MAX(idx) + 1, 0) FROM audit_nodes WHERE level = 0;
