-- Version 16: the checksum the source stored with an object, and which
-- proof each copy got.
--
-- `parts.checksum`: the part's own checksum in the algorithm the source
-- stored (`CRC32C:base64`: with its algorithm, as the source may store the
-- same bytes again with another), so that a resumed upload still proves the whole object
-- against it before completing, without reading its parts again.
ALTER TABLE parts ADD COLUMN checksum TEXT;

-- `copies.source_checksum`: the source's stored checksum the bytes read
-- were proved against (`CRC64NVME:base64`, `-N` when composite).
-- `copies.proof`: what proved the bytes read were the source's: `etag`
-- (its ETag is their MD5, or the MD5 of their parts' MD5s), `checksum`,
-- `etag+checksum`, or `none` (only the copy read back proves it holds what
-- was read). NULL for copies recorded before this version.
ALTER TABLE copies ADD COLUMN source_checksum TEXT;
ALTER TABLE copies ADD COLUMN proof TEXT;
