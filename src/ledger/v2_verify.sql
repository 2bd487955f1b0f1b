-- Version 2: verification. `verify` (and `run` with verify_after_copy)
-- reads each copy back and records what it found here; the object moves to
-- state `verified` or `mismatched`.
CREATE TABLE verifications (
    object_id   INTEGER PRIMARY KEY REFERENCES objects(id),
    checked_at  TEXT NOT NULL,
    ok          INTEGER NOT NULL,
    reason      TEXT,
    size        INTEGER,
    sha256      TEXT,
    md5         TEXT
);
ALTER TABLE passes ADD COLUMN objects_verified INTEGER NOT NULL DEFAULT 0;
ALTER TABLE passes ADD COLUMN objects_mismatched INTEGER NOT NULL DEFAULT 0;
