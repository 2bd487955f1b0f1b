-- Version 17: archived objects restored at the source before they are
-- copied (issue 25). Not `restores`: that table (v15) records when this
-- ledger was brought back from a snapshot.

-- Each bucket pair's `restore` tier and `restore_days`, written by every
-- run from the config: the listing reads it to put an archived object in
-- `restoring` ("off", or NULL before any run set it: `skipped`).
ALTER TABLE buckets ADD COLUMN restore_tier TEXT;
ALTER TABLE buckets ADD COLUMN restore_days INTEGER;

-- One row per object whose restore ferry asked for. `requested_at` is
-- written before the RestoreObject is sent (intent before action), so a
-- run killed at any point never asks twice; NULL means ask (again): the
-- restored copy expired, or the last ask was refused. `source_etag` is the
-- version asked for: a new version is asked afresh.
CREATE TABLE archive_restores (
    object_id      INTEGER PRIMARY KEY REFERENCES objects(id),
    source_etag    TEXT NOT NULL,
    storage_class  TEXT,
    tier           TEXT NOT NULL,
    requested_at   TEXT,
    ready_at       TEXT,
    expires_at     TEXT,
    asked          INTEGER NOT NULL DEFAULT 0,
    checked_at     TEXT
);
