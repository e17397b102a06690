-- Browser and native apps: the authorization-code flow, OpenID Connect and
-- back-channel logout.

-- What each client may do in the browser flow; lists are space-separated.
ALTER TABLE oauth_clients ADD COLUMN redirect_uris TEXT NOT NULL DEFAULT '';
ALTER TABLE oauth_clients ADD COLUMN post_logout_redirect_uris TEXT NOT NULL DEFAULT '';
ALTER TABLE oauth_clients ADD COLUMN allowed_origins TEXT NOT NULL DEFAULT '';
ALTER TABLE oauth_clients ADD COLUMN backchannel_logout_uri TEXT;
ALTER TABLE oauth_clients ADD COLUMN scopes TEXT NOT NULL DEFAULT '';

-- The scopes a session was granted; NULL: a first-party session without scopes.
ALTER TABLE sessions ADD COLUMN scope TEXT;
-- The browser session an application's session was opened from (by a code
-- exchange): when the browser signs out, the application's session ends too.
ALTER TABLE sessions ADD COLUMN parent_id TEXT;
CREATE INDEX sessions_by_parent ON sessions(parent_id) WHERE parent_id IS NOT NULL;

-- An authorization code's request (client, redirect URI, PKCE challenge, ...).
ALTER TABLE account_tokens ADD COLUMN data TEXT;

-- The outbox carries mails and back-channel logout notices.
ALTER TABLE mail_queue ADD COLUMN kind TEXT NOT NULL DEFAULT 'mail';

-- A user's consent to a third-party client, until the user revokes it.
CREATE TABLE oauth_grants (
    user_id    TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    client_id  TEXT NOT NULL REFERENCES oauth_clients(id) ON DELETE CASCADE,
    scope      TEXT NOT NULL,
    granted_at INTEGER NOT NULL,
    PRIMARY KEY (user_id, client_id)
);
