CREATE TABLE oauth_clients (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    secret_hash TEXT,
    grant_types TEXT NOT NULL,
    first_party INTEGER NOT NULL DEFAULT 0,
    created_at  INTEGER NOT NULL
);

-- Fixed-window counters for login, registration and refresh throttling.
CREATE TABLE throttle (
    key          TEXT PRIMARY KEY,
    window_start INTEGER NOT NULL,
    window_len   INTEGER NOT NULL,
    hits         INTEGER NOT NULL
);
