CREATE TABLE totp_credentials (
    user_id TEXT PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
    secret BLOB NOT NULL,
    key_id TEXT NOT NULL,
    -- The last accepted time step: a code of this step or an earlier one is a replay.
    last_used_step BIGINT NOT NULL DEFAULT -1,
    created_at BIGINT NOT NULL
);

CREATE TABLE totp_pending (
    user_id TEXT PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
    secret BLOB NOT NULL,
    key_id TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);

-- code_hash = HMAC(subkey, user id || code): found by one indexed lookup, never stored in clear.
CREATE TABLE backup_codes (
    code_hash BLOB PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    used_at BIGINT
);
CREATE INDEX backup_codes_by_user ON backup_codes(user_id);

CREATE TABLE login_challenges (
    id TEXT PRIMARY KEY,
    token_hash BLOB NOT NULL UNIQUE,
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    failures BIGINT NOT NULL DEFAULT 0,
    used_at BIGINT,
    ip TEXT,
    user_agent TEXT
);
CREATE INDEX login_challenges_by_expiry ON login_challenges(expires_at);
