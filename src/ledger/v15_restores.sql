-- Version 15: what adoption needs to know.
--
-- `restores`: when this ledger was brought back from a snapshot (`ferry
-- ledger restore`). A copy recorded before it may have been replaced since
-- by ferry's own newer copy, which the snapshot never heard of: such a key
-- may be adopted. A copy recorded after it is ferry's last word.
CREATE TABLE IF NOT EXISTS restores (
    restored_at  TEXT NOT NULL,
    snapshot     TEXT NOT NULL
);

-- `adoption_refusals`: a destination object that did not prove to be the
-- source's bytes, by the ETags of both: it is not read again until one of
-- them changes (a conflict is looked at every pass).
CREATE TABLE adoption_refusals (
    object_id    INTEGER PRIMARY KEY REFERENCES objects(id),
    dest_etag    TEXT NOT NULL,
    source_etag  TEXT NOT NULL,
    reason       TEXT NOT NULL
);
