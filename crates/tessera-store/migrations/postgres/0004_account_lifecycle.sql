-- When the current email address was confirmed through a mailed link; NULL: never
-- (changing the address clears it).
ALTER TABLE users ADD COLUMN email_verified_at BIGINT;

-- Single-use links sent by mail (verification, password reset, email change,
-- invitation): only the SHA-256 of the token, in hex, is stored.
CREATE TABLE account_tokens (
    token_hash TEXT PRIMARY KEY,
    purpose    TEXT NOT NULL,
    user_id    UUID REFERENCES users(id) ON DELETE CASCADE,
    email      TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX account_tokens_by_user ON account_tokens(user_id, purpose);

-- Mails waiting to be delivered; a row leaves when its mail was handed over.
CREATE TABLE mail_queue (
    id              UUID PRIMARY KEY,
    recipient       TEXT NOT NULL,
    subject         TEXT NOT NULL,
    text_body       TEXT NOT NULL,
    html_body       TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    last_error      TEXT
);
CREATE INDEX mail_queue_due ON mail_queue(next_attempt_at);
