CREATE TABLE oauth_clients (
    id          TEXT CONSTRAINT oauth_clients_client_id_pkey PRIMARY KEY,
    name        TEXT NOT NULL,
    secret_hash TEXT,
    grant_types TEXT NOT NULL,
    first_party BOOLEAN NOT NULL DEFAULT FALSE,
    created_at  BIGINT NOT NULL
);

-- Fixed-window counters for login, registration and refresh throttling.
CREATE TABLE throttle (
    key          TEXT PRIMARY KEY,
    window_start BIGINT NOT NULL,
    window_len   BIGINT NOT NULL,
    hits         BIGINT NOT NULL
);
