-- Upstreams added with `mandate upstream add` (those in server.toml are not stored here). The
-- configuration is the gateway's JSON form of an `[upstream.NAME]` table: secrets appear only as
-- references (`@FILE`, `env:NAME`), never as values.
CREATE TABLE upstreams (
    name TEXT PRIMARY KEY,
    config TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    created_by TEXT NOT NULL
);
