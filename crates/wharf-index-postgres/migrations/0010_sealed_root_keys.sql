-- Issue #12, finding 12: a token's macaroon root key is stored encrypted (AES-256-GCM) under a
-- token key kept outside the database, so a copy of the database cannot forge tokens.
-- `root_key_id` names the token key; the clear `root_key` column is left empty (rows written
-- before this migration are sealed by the verifier at start-up).
ALTER TABLE api_tokens ADD COLUMN sealed_root_key BYTEA;
ALTER TABLE api_tokens ADD COLUMN root_key_id TEXT;
