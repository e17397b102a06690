-- Registrations waiting for their address to be confirmed (email verification
-- `required`): the account is created when the mailed link is followed. The
-- username and the address stay reserved meanwhile.
CREATE TABLE pending_users (
    id            UUID PRIMARY KEY,
    email         TEXT NOT NULL,
    email_key     TEXT NOT NULL CONSTRAINT pending_users_email_key_unique UNIQUE,
    username      TEXT NOT NULL CONSTRAINT pending_users_username_unique UNIQUE,
    fullname      TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    -- SHA-256 of the mailed link's token; NULL when the address has an account.
    token_hash    TEXT CONSTRAINT pending_users_token_unique UNIQUE,
    created_at    BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL
);
