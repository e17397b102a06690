-- The id an imported user had in the system they came from (a MongoDB ObjectId,
-- for instance). Only imported users have one; several NULLs are allowed.
ALTER TABLE users ADD COLUMN legacy_id TEXT CONSTRAINT users_legacy_id_unique UNIQUE;
