-- Version 6: never destroy data.
-- State `conflict`: the destination key holds something ferry did not write
-- last (another writer changed it, or it was there before ferry); ferry
-- touches nothing and says why in `last_error`. Each pass looks again.
--
-- The shard a bucket was listed with. A listing under another shard does not
-- see the other shards' keys and would call them deleted, so a run with a
-- different shard on the same ledger is refused.
ALTER TABLE buckets ADD COLUMN shard TEXT;

-- `verify --recopy` is a person's decision to replace what verify found
-- different at the destination: the next copy of such a key may overwrite
-- it, whoever wrote it. Cleared when the copy is recorded.
ALTER TABLE objects ADD COLUMN recopy_approved INTEGER NOT NULL DEFAULT 0;

-- Uploads ferry gave up on but could not abort (the store refused or was
-- unreachable): every pass tries again, until the store says they are gone.
CREATE TABLE abandoned_uploads (
    upload_id    TEXT PRIMARY KEY,
    dest_bucket  TEXT NOT NULL,
    key          TEXT NOT NULL,
    since        TEXT NOT NULL,
    last_error   TEXT
);
