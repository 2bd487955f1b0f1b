-- Version 12: what ferry is about to write, recorded before it writes, so
-- that it recognises its own writes whose answer it never heard.
--
-- `write_intents`: the MD5 and size of the bytes about to go in one PUT.
-- A PUT that landed unrecorded (a kill, a lost answer) leaves these bytes at
-- the destination; a later copy of the object may write over them. Several
-- may be outstanding per object (version A landed unrecorded, then version
-- B is tried). Cleared when a copy of the object is recorded.
CREATE TABLE write_intents (
    object_id    INTEGER NOT NULL REFERENCES objects(id),
    md5          TEXT NOT NULL,
    size         INTEGER NOT NULL,
    since        TEXT NOT NULL,
    PRIMARY KEY (object_id, md5, size)
);

-- `upload_intents`: a CreateMultipartUpload about to be sent for a key, with
-- the uploads of that key the destination listed just before
-- (`known_before`, one upload id per line) and how many create requests have
-- been sent since (`attempts`). An upload of the key that is not in
-- `known_before` may be one whose answer was lost; ferry takes them as its
-- own only when there are no more of them than create requests it sent,
-- and only when the store began it between `since` and `last_attempt` (the
-- moment the last request was sent), give or take a margin.
-- Removed once the upload id is recorded and any lost ones are settled.
CREATE TABLE upload_intents (
    object_id    INTEGER PRIMARY KEY REFERENCES objects(id),
    dest_bucket  TEXT NOT NULL,
    key          TEXT NOT NULL,
    known_before TEXT NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    since        TEXT NOT NULL,
    last_attempt TEXT
);
