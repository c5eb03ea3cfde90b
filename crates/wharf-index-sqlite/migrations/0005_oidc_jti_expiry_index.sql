-- The sweep of expired token ids (each exchange) finds them by expiry instead of scanning
-- the table; PostgreSQL has had this index since 0002.
CREATE INDEX oidc_jti_expires_at ON oidc_jti (expires_at);
