-- Version 4: running totals per bucket and state, kept by triggers in the
-- same transaction as every change to `objects`, so `status` reads a few
-- rows instead of scanning millions (10M keys: 5 s down to milliseconds).
CREATE TABLE state_totals (
    bucket_id  INTEGER NOT NULL REFERENCES buckets(id),
    state      TEXT NOT NULL,
    objects    INTEGER NOT NULL,
    bytes      INTEGER NOT NULL,
    PRIMARY KEY (bucket_id, state)
) WITHOUT ROWID;

INSERT INTO state_totals (bucket_id, state, objects, bytes)
    SELECT bucket_id, state, COUNT(*), SUM(size) FROM objects GROUP BY bucket_id, state;

CREATE TRIGGER state_totals_insert AFTER INSERT ON objects BEGIN
    INSERT INTO state_totals (bucket_id, state, objects, bytes)
        VALUES (NEW.bucket_id, NEW.state, 1, NEW.size)
        ON CONFLICT (bucket_id, state) DO UPDATE
        SET objects = objects + 1, bytes = bytes + excluded.bytes;
END;

-- A re-listed key that did not change fires nothing.
CREATE TRIGGER state_totals_update AFTER UPDATE OF bucket_id, state, size ON objects
WHEN OLD.state IS NOT NEW.state OR OLD.size IS NOT NEW.size OR OLD.bucket_id IS NOT NEW.bucket_id
BEGIN
    UPDATE state_totals SET objects = objects - 1, bytes = bytes - OLD.size
        WHERE bucket_id = OLD.bucket_id AND state = OLD.state;
    INSERT INTO state_totals (bucket_id, state, objects, bytes)
        VALUES (NEW.bucket_id, NEW.state, 1, NEW.size)
        ON CONFLICT (bucket_id, state) DO UPDATE
        SET objects = objects + 1, bytes = bytes + excluded.bytes;
END;

CREATE TRIGGER state_totals_delete AFTER DELETE ON objects BEGIN
    UPDATE state_totals SET objects = objects - 1, bytes = bytes - OLD.size
        WHERE bucket_id = OLD.bucket_id AND state = OLD.state;
END;

-- `status` sums what was copied in the last minutes: an index keeps that
-- from reading every copy.
CREATE INDEX copies_by_time ON copies (copied_at);
