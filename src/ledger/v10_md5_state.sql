-- Version 10: the whole object's MD5 state at each part's end, for a
-- single-part source sent in parts (its ETag is the MD5 of the whole, and
-- S3 gives no per-part one). A resumed upload carries the MD5 on from the
-- last kept part, so the object is proved against the source's ETag before
-- CompleteMultipartUpload makes it visible. NULL for every other part; a
-- resumed upload of such a source without it sends every part again.
ALTER TABLE parts ADD COLUMN md5_state TEXT;
