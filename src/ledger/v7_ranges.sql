-- Version 7: a bucket's listing in key ranges, listed side by side.
-- A range holds the keys k with first_after < k <= last (last NULL: to the
-- end). Each range keeps its own cursor, so a listing cut off anywhere
-- resumes every range after its last committed page. The rows live while a
-- listing is under way; a listing is complete when every range is done.
CREATE TABLE list_ranges (
    bucket_id    INTEGER NOT NULL REFERENCES buckets(id),
    first_after  TEXT NOT NULL,
    last         TEXT,
    cursor       TEXT,
    done         INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (bucket_id, first_after)
);

-- A listing interrupted under version 6 resumes as one range.
INSERT INTO list_ranges (bucket_id, first_after, last, cursor)
    SELECT id, '', NULL, list_cursor FROM buckets WHERE list_cursor IS NOT NULL;

-- The AWS S3 Inventory manifest a bucket was last listed from: a pass reads
-- an inventory once, when a newer manifest appears, and lists otherwise.
ALTER TABLE buckets ADD COLUMN inventory_manifest TEXT;
