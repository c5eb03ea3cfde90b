-- Rate limits shared by every gateway: one row per (scope, key) holding the GCRA
-- "theoretical arrival time" in microseconds. A row whose time has passed means a full
-- allowance, so such rows are swept away.
CREATE TABLE rate_limits (
    scope TEXT NOT NULL,
    key TEXT NOT NULL,
    tat BIGINT NOT NULL,
    PRIMARY KEY (scope, key)
);
CREATE INDEX rate_limits_tat ON rate_limits (tat);
