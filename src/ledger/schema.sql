-- The ledger, version 1. Every table ferry writes is here; later versions
-- append migrations in migrations.rs, they never edit this file.

-- One row per configured bucket pair. `list_cursor` is the last key of the
-- last page committed, so an interrupted listing resumes after it.
CREATE TABLE buckets (
    id            INTEGER PRIMARY KEY,
    source        TEXT NOT NULL,
    destination   TEXT NOT NULL,
    prefix        TEXT NOT NULL,
    list_cursor   TEXT,
    listed_pass   INTEGER,
    UNIQUE (source, prefix, destination)
);

-- One row per run of `ferry run`'s loop.
CREATE TABLE passes (
    id             INTEGER PRIMARY KEY,
    started_at     TEXT NOT NULL,
    finished_at    TEXT,
    objects_copied INTEGER NOT NULL DEFAULT 0,
    bytes_copied   INTEGER NOT NULL DEFAULT 0,
    objects_failed INTEGER NOT NULL DEFAULT 0
);

-- One row per source object: the work queue and its truth.
-- state: listed | copying | copied | verified | mismatched | failed | skipped
--        | deleted | removed (see v3_deletions.sql)
CREATE TABLE objects (
    id             INTEGER PRIMARY KEY,
    bucket_id      INTEGER NOT NULL REFERENCES buckets(id),
    key            TEXT NOT NULL,
    size           INTEGER NOT NULL,
    source_etag    TEXT NOT NULL,
    last_modified  TEXT,
    storage_class  TEXT,
    state          TEXT NOT NULL DEFAULT 'listed',
    attempts       INTEGER NOT NULL DEFAULT 0,
    last_error     TEXT,
    seen_pass      INTEGER,
    UNIQUE (bucket_id, key)
);
CREATE INDEX objects_by_state ON objects (state, id);

-- The copy that made an object `copied`: what arrived and how it was checked.
CREATE TABLE copies (
    object_id     INTEGER PRIMARY KEY REFERENCES objects(id),
    source_etag   TEXT NOT NULL,
    dest_etag     TEXT NOT NULL,
    etag_matches  INTEGER NOT NULL,
    size          INTEGER NOT NULL,
    sha256        TEXT NOT NULL,
    md5           TEXT NOT NULL,
    part_size     INTEGER,
    part_count    INTEGER NOT NULL,
    copied_at     TEXT NOT NULL
);

-- A multipart upload ferry started. Written before the first UploadPart,
-- removed when the upload completes or is aborted.
CREATE TABLE uploads (
    object_id     INTEGER PRIMARY KEY REFERENCES objects(id),
    upload_id     TEXT NOT NULL,
    dest_bucket   TEXT NOT NULL,
    key           TEXT NOT NULL,
    source_etag   TEXT NOT NULL,
    part_size     INTEGER NOT NULL,
    started_at    TEXT NOT NULL
);

-- Each part the destination acknowledged, with the checksums of its bytes.
CREATE TABLE parts (
    object_id     INTEGER NOT NULL REFERENCES objects(id),
    upload_id     TEXT NOT NULL,
    part_number   INTEGER NOT NULL,
    offset        INTEGER NOT NULL,
    length        INTEGER NOT NULL,
    etag          TEXT NOT NULL,
    md5           TEXT NOT NULL,
    sha256        TEXT NOT NULL,
    PRIMARY KEY (object_id, part_number)
);
