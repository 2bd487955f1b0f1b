-- A copy found at the destination without a ledger record (a lost or
-- restored ledger) and proved to hold the source's bytes: when ferry adopted
-- it instead of sending it again. NULL: ferry sent the bytes itself.
ALTER TABLE copies ADD COLUMN adopted_at TEXT;
-- `status` counts them per bucket without walking every copy.
CREATE INDEX copies_adopted ON copies (object_id) WHERE adopted_at IS NOT NULL;
