-- Trusted publishing: operator-managed OIDC issuers, publishers (active and pending), the
-- replay guard for OIDC token ids, and audit events.

CREATE TABLE oidc_issuers (
    name TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    url TEXT NOT NULL UNIQUE,
    allow_http BOOLEAN NOT NULL DEFAULT FALSE,
    created_at BIGINT NOT NULL
);

CREATE TABLE publishers (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    issuer_url TEXT NOT NULL,
    -- The claim policy as JSON (wharf_oidc::PublisherPolicy).
    policy TEXT NOT NULL,
    -- Human-readable name, e.g. "github:octo/app release.yml".
    label TEXT NOT NULL,
    -- Lifetime of minted tokens; NULL means the server default.
    token_ttl_seconds BIGINT,
    -- Set while the publisher is pending: the project it will create, and who registered it.
    pending_project_name TEXT,
    pending_project_ultranormalized TEXT,
    pending_user_id TEXT REFERENCES users (id),
    created_at BIGINT NOT NULL
);
CREATE INDEX publishers_issuer_url ON publishers (issuer_url);
CREATE INDEX publishers_pending_project_ultranormalized
    ON publishers (pending_project_ultranormalized);

CREATE TABLE publisher_projects (
    publisher_id TEXT NOT NULL REFERENCES publishers (id) ON DELETE CASCADE,
    project_id TEXT NOT NULL REFERENCES projects (id),
    PRIMARY KEY (publisher_id, project_id)
);

-- Every OIDC token id (jti) exchanged, until the token expires: a JWT is exchanged once.
CREATE TABLE oidc_jti (
    issuer_url TEXT NOT NULL,
    jti TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (issuer_url, jti)
);
-- The expiry sweep in claim_jti.
CREATE INDEX oidc_jti_expires_at ON oidc_jti (expires_at);

-- Tokens minted for a publisher instead of a user.
ALTER TABLE api_tokens ADD COLUMN publisher_id TEXT REFERENCES publishers (id) ON DELETE CASCADE;
ALTER TABLE api_tokens ADD COLUMN additional TEXT;
CREATE INDEX api_tokens_publisher_id ON api_tokens (publisher_id);

-- Audit trail of security events (mints, refusals, burns, publisher changes).
CREATE TABLE audit_events (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind TEXT NOT NULL,
    detail TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
