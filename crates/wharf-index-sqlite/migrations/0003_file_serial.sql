-- The journal serial at which each file became visible, so a redelivered upload and the
-- public event it re-announces carry the same serial as the first time.
ALTER TABLE files ADD COLUMN serial INTEGER NOT NULL DEFAULT 0;
UPDATE files SET serial = (SELECT COALESCE(MAX(j.id), 0) FROM journal j
    WHERE j.action LIKE '% file ' || files.filename);
