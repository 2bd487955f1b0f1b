-- Version 11: the verify audit. A plain `ferry verify` reads every copy
-- back; this row says when the audit began, so one that is cut off carries
-- on: a copy whose verification is newer than `started_at` was read already.
CREATE TABLE audits (
    id           INTEGER PRIMARY KEY,
    started_at   TEXT NOT NULL,
    finished_at  TEXT
);
