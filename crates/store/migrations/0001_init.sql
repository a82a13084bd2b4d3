-- Mandate's initial schema.
--
-- The schema uses only TEXT, BIGINT, INTEGER and BOOLEAN columns and standard
-- SQL so that the same file can be applied to PostgreSQL later. All times are
-- unix seconds. Space-separated lists (scopes, audiences) are stored as TEXT
-- because the store never queries inside them.

-- Users and agents known to the authority, with the ceilings that bound every
-- mandate issued to or by them.
CREATE TABLE principals (
    name TEXT NOT NULL PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('user', 'agent')),
    role TEXT NULL CHECK (role IS NULL OR role IN ('admin', 'approver')),
    disabled BOOLEAN NOT NULL DEFAULT FALSE,
    allow_bearer BOOLEAN NOT NULL DEFAULT FALSE,
    ceiling_scopes TEXT NOT NULL,
    ceiling_audiences TEXT NOT NULL,
    max_ttl_secs BIGINT NOT NULL,
    max_depth BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- Public keys a principal proves possession of; disabled keys are kept so
-- that old signatures can still be attributed.
CREATE TABLE principal_keys (
    kid TEXT NOT NULL PRIMARY KEY,
    principal TEXT NOT NULL REFERENCES principals (name),
    public_key TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    disabled_at BIGINT NULL
);
CREATE INDEX principal_keys_principal ON principal_keys (principal);

-- Single-use enrollment codes; only a hash of each code is stored.
CREATE TABLE enrollment_codes (
    code_hash TEXT NOT NULL PRIMARY KEY,
    principal TEXT NOT NULL REFERENCES principals (name),
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at BIGINT NULL
);

-- Every mandate the authority has issued, forming the delegation tree.
CREATE TABLE mandates (
    jti TEXT NOT NULL PRIMARY KEY,
    parent_jti TEXT NULL,
    subject TEXT NOT NULL,
    delegator TEXT NOT NULL,
    holder TEXT NOT NULL,
    audiences TEXT NOT NULL,
    scopes TEXT NOT NULL,
    depth BIGINT NOT NULL,
    grant_type TEXT NOT NULL,
    reason TEXT NULL,
    issued_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    kid TEXT NOT NULL
);
CREATE INDEX mandates_parent_jti ON mandates (parent_jti);
-- Only the parent link is indexed (revocation walks the tree downwards). Every further index
-- costs each issuance a B-tree insert on the hot path; queries by holder or subject belong to the
-- audit log, which has its own indexes.

-- Single-use identifiers (for example proof and assertion jtis) seen so far;
-- rows may be purged once they expire because the tokens they guard are dead.
CREATE TABLE used_jtis (
    jti TEXT NOT NULL PRIMARY KEY,
    expires_at BIGINT NOT NULL
);
CREATE INDEX used_jtis_expires_at ON used_jtis (expires_at);

-- The authority's own signing keys, kept after retirement until every token
-- they signed has expired.
CREATE TABLE issuer_keys (
    kid TEXT NOT NULL PRIMARY KEY,
    public_key TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    retired_at BIGINT NULL,
    retire_until BIGINT NULL
);
