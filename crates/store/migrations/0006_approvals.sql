-- Approval requests (a call the policy holds for humans) and their votes. A request is bound to
-- `binding` (a digest of chain, upstream, tool, arguments digest and policy version); `call` is
-- the recorded, redacted action shown to approvers. `released_at` marks the one call an approved
-- request let through. Rows are never deleted: the audit log tells the same story.
CREATE TABLE approvals (
    id TEXT PRIMARY KEY,
    binding TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'approved', 'denied', 'expired', 'cancelled')),
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    requested_by TEXT NOT NULL,
    chain TEXT NOT NULL,
    upstream TEXT NOT NULL,
    tool TEXT NOT NULL,
    arguments_sha256 TEXT NOT NULL,
    policy_version TEXT NOT NULL,
    decision_id TEXT NOT NULL,
    approvers TEXT NOT NULL,
    quorum INTEGER NOT NULL,
    reason TEXT,
    call TEXT NOT NULL,
    resolved_at BIGINT,
    resolved_by TEXT,
    resolution TEXT,
    released_at BIGINT,
    released_jti TEXT
);
CREATE INDEX approvals_by_binding ON approvals (binding, created_at);
CREATE INDEX approvals_by_state ON approvals (state, expires_at);

CREATE TABLE approval_votes (
    approval_id TEXT NOT NULL REFERENCES approvals (id),
    voter TEXT NOT NULL,
    approve INTEGER NOT NULL CHECK (approve IN (0, 1)),
    reason TEXT,
    at BIGINT NOT NULL,
    PRIMARY KEY (approval_id, voter)
);
