-- Version 13: the time as of which a bucket's last complete listing shows
-- it: the start of the pass that listed it, or the creationTimestamp of the
-- inventory it was read from. An inventory manifest created before that is
-- older than what the ledger knows (keys deleted since, newer versions) and
-- is not read; the pass lists the bucket instead.
ALTER TABLE buckets ADD COLUMN listed_as_of TEXT;

-- A bucket never read from an inventory was last listed by its pass. One
-- read from an inventory stays unknown (NULL) until its next listing.
UPDATE buckets SET listed_as_of = (SELECT started_at FROM passes WHERE id = buckets.listed_pass)
    WHERE inventory_manifest IS NULL;
