-- Version 8: the SHA-256 state at each part's end. A part hashed in order
-- with the parts before it records the whole object's SHA-256 state at its
-- last byte (`LENGTH:STATE:TAIL`, hashing::Sha256Chain); `sha256` is then
-- empty, for each byte is hashed once. A resumed upload carries on hashing
-- from the last part with a state, and the read-back checks each part by it.
-- A part hashed on its own (too large to hold until the parts before it are
-- hashed) keeps its own SHA-256 in `sha256` and has no state.
ALTER TABLE parts ADD COLUMN sha256_state TEXT;
