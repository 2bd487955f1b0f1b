-- Version 3: keys deleted at the source. A complete listing that does not see
-- a key counts one more pass it was missing; `deleted` means gone at the
-- source (the copy is kept), `removed` means removed at the destination too.
ALTER TABLE objects ADD COLUMN missing_passes INTEGER NOT NULL DEFAULT 0;
-- The pass whose listing is under way, so a listing resumed in a later pass
-- still counts the keys seen before it was cut off.
ALTER TABLE buckets ADD COLUMN listing_pass INTEGER;
