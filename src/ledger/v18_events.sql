-- Version 18: S3 event notifications followed through SQS (issue 26).

-- Per object, the newest event applied to its key: `event_sequencer`
-- orders events of one key (S3's own order); `event_at` is the event's time,
-- and `event_lag_ms` the time from it to the copy read back (NULL until
-- then), which `status` and the metrics show.
ALTER TABLE objects ADD COLUMN event_sequencer TEXT;
ALTER TABLE objects ADD COLUMN event_at TEXT;
ALTER TABLE objects ADD COLUMN event_lag_ms INTEGER;
-- When ferry removed the key at the destination (`delete = true`): the
-- destination changed then, which cut-over's "equal since" counts.
ALTER TABLE objects ADD COLUMN removed_at TEXT;
-- Only the objects an event touched and that are not copied yet: small.
CREATE INDEX objects_awaiting_event_copy ON objects (id)
    WHERE event_at IS NOT NULL AND event_lag_ms IS NULL;

-- One row per bucket pair that follows a queue. `following_since`: the
-- first time ferry read the queue (changes before it are not the feed's to
-- tell); `received_at`: the last receive, empty or not (a queue not read
-- for long holds events of unknown age); `drained_at`: the last receive that
-- found the queue empty.
CREATE TABLE event_feeds (
    bucket_id        INTEGER PRIMARY KEY REFERENCES buckets(id),
    queue_url        TEXT NOT NULL,
    following_since  TEXT NOT NULL,
    received_at      TEXT,
    drained_at       TEXT,
    last_event_at    TEXT,
    events           INTEGER NOT NULL DEFAULT 0,
    stale_events     INTEGER NOT NULL DEFAULT 0,
    last_lag_ms      INTEGER,
    missed_keys      INTEGER NOT NULL DEFAULT 0
);
