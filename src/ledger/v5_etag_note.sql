-- Version 5: why a copy's ETag differs from its source's, when ferry could
-- not keep it (a source store that does not tell its part boundaries, parts
-- a destination would refuse, an encrypted source). NULL: kept, or a
-- single-part source copied in parts, whose whole MD5 is in `md5`.
ALTER TABLE copies ADD COLUMN etag_note TEXT;
