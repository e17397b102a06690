-- The id an imported user had in the system they came from (a MongoDB ObjectId,
-- for instance). Only imported users have one; several NULLs are allowed.
ALTER TABLE users ADD COLUMN legacy_id TEXT;
CREATE UNIQUE INDEX users_legacy_id_unique ON users(legacy_id);
