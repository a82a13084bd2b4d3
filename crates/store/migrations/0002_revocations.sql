-- Revocations: an append-only feed of what enforcement points must refuse. `seq` orders the feed
-- (verifiers follow it with a cursor); rows are never updated or deleted.
CREATE TABLE revocations (
    seq BIGINT NOT NULL PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('jti', 'principal', 'key')),
    value TEXT NOT NULL,
    reason TEXT NULL,
    revoked_by TEXT NOT NULL,
    revoked_at BIGINT NOT NULL
);
CREATE INDEX revocations_value ON revocations (value);
