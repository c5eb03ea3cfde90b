-- Wharf index schema (SQLite). Times are unix microseconds (INTEGER) in UTC.

CREATE TABLE users (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL
);

CREATE TABLE projects (
    id TEXT PRIMARY KEY,
    -- Display name: the spelling of the most recent upload.
    name TEXT NOT NULL,
    normalized_name TEXT NOT NULL UNIQUE,
    ultranormalized_name TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'active',
    status_reason TEXT,
    total_size INTEGER NOT NULL DEFAULT 0,
    last_serial INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL
);
CREATE INDEX projects_ultranormalized_name ON projects (ultranormalized_name);

CREATE TABLE roles (
    project_id TEXT NOT NULL REFERENCES projects (id),
    user_id TEXT NOT NULL REFERENCES users (id),
    role TEXT NOT NULL,
    PRIMARY KEY (project_id, user_id)
);

CREATE TABLE releases (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL REFERENCES projects (id),
    version TEXT NOT NULL,
    canonical_version TEXT NOT NULL,
    is_prerelease INTEGER NOT NULL,
    yanked INTEGER NOT NULL DEFAULT 0,
    yanked_reason TEXT NOT NULL DEFAULT '',
    requires_python TEXT,
    -- The release's core metadata as JSON (wharf_core ReleaseMetadata).
    metadata TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    UNIQUE (project_id, canonical_version)
);

CREATE TABLE files (
    id TEXT PRIMARY KEY,
    release_id TEXT NOT NULL REFERENCES releases (id),
    filename TEXT NOT NULL UNIQUE,
    packagetype TEXT NOT NULL,
    python_version TEXT NOT NULL,
    size INTEGER NOT NULL,
    md5_digest TEXT NOT NULL,
    sha256_digest TEXT NOT NULL UNIQUE,
    blake2_256_digest TEXT NOT NULL UNIQUE,
    -- Object-store path below packages/ (PyPI's blake2b layout).
    path TEXT NOT NULL,
    upload_time INTEGER NOT NULL,
    comment_text TEXT,
    uploaded_via TEXT,
    requires_python TEXT,
    metadata_sha256 TEXT,
    metadata_blake2_256 TEXT,
    upload_id TEXT NOT NULL UNIQUE
);
CREATE INDEX files_release_id ON files (release_id);

-- Every filename ever stored, kept after deletion: filenames are unique forever.
CREATE TABLE file_registry (
    filename TEXT PRIMARY KEY
);

-- The journal: one row per change; its id is the serial the read APIs expose.
CREATE TABLE journal (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    project_name TEXT NOT NULL,
    version TEXT,
    action TEXT NOT NULL,
    submitted_by TEXT,
    created_at INTEGER NOT NULL
);

CREATE TABLE api_tokens (
    id TEXT PRIMARY KEY,
    user_id TEXT REFERENCES users (id),
    description TEXT NOT NULL DEFAULT '',
    -- The macaroon root key; never leaves the verifier.
    root_key BLOB NOT NULL,
    -- JSON array of caveat strings enforced server-side in addition to the token's own.
    caveats TEXT NOT NULL DEFAULT '[]',
    created_at INTEGER NOT NULL,
    expires_at INTEGER,
    last_used_at INTEGER
);
