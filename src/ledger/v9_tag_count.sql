-- Version 9: how many tags the source object carried when GetObjectTagging
-- was last asked (`ferry plan --count-tags`); NULL until then. A new version
-- of the object (its size or ETag changed) is NULL again, to be asked anew.
ALTER TABLE objects ADD COLUMN tag_count INTEGER;
