-- The gateway that asserted a request's caller and chain, when a gateway run apart from the
-- authority opened it (`mandate gateway --authority URL`); NULL when the authority verified them
-- itself (its own gateway, CIBA, a delegation).
ALTER TABLE approvals ADD COLUMN asserted_by TEXT;
