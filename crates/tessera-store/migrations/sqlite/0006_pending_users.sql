-- Registrations waiting for their address to be confirmed (email verification
-- `required`): the account is created when the mailed link is followed. The
-- username and the address stay reserved meanwhile.
CREATE TABLE pending_users (
    id            TEXT PRIMARY KEY,
    email         TEXT NOT NULL,
    email_key     TEXT NOT NULL UNIQUE,
    username      TEXT NOT NULL UNIQUE,
    fullname      TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    -- SHA-256 of the mailed link's token; NULL when the address has an account.
    token_hash    TEXT UNIQUE,
    created_at    INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL
);
