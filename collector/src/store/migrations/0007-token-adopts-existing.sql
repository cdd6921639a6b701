-- An agent id that has streamed with the shared token but holds no
-- certificate can be claimed by enrollment only with a token created with
-- `--adopt-existing`: otherwise anyone holding a fleet enrollment token
-- could take over an existing host's identity (and its asset) by naming its id.
ALTER TABLE enrollment_tokens ADD COLUMN adopts_existing INTEGER NOT NULL DEFAULT 0;
