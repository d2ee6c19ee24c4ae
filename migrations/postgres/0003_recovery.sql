-- Email recovery of a lost second factor. A row is born when the link is emailed (status
-- 'requested'); confirming the link starts the waiting period ('pending'); it ends 'completed',
-- 'cancelled' or 'expired'. The recovery token completes it, the cancel token cancels it; both
-- are stored only as keyed hashes.
CREATE TABLE recovery_requests (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    token_hash BYTEA NOT NULL UNIQUE,
    status TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    link_expires_at BIGINT NOT NULL,
    lost_password BIGINT NOT NULL DEFAULT 0,
    confirmed_at BIGINT,
    completes_at BIGINT,
    expires_at BIGINT,
    cancel_token_hash BYTEA UNIQUE,
    reminder_due_at BIGINT,
    reminded_at BIGINT,
    ended_at BIGINT,
    -- Where the recovery was confirmed from, for the notices.
    ip TEXT,
    user_agent TEXT
);
-- Only one pending recovery per account, whatever the number of instances.
CREATE UNIQUE INDEX recovery_requests_one_pending ON recovery_requests(user_id) WHERE status = 'pending';
CREATE INDEX recovery_requests_by_status ON recovery_requests(status, reminder_due_at);

CREATE TABLE password_resets (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    token_hash BYTEA NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at BIGINT
);
CREATE INDEX password_resets_by_user ON password_resets(user_id);

-- A second administrator's approval, when LATCHKEY_ADMIN_RESET_APPROVALS=2.
CREATE TABLE admin_reset_requests (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    requested_by TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    reason TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    approved_by TEXT,
    approved_at BIGINT
);
CREATE INDEX admin_reset_requests_by_expiry ON admin_reset_requests(expires_at);

-- Recovery and password-reset requests per address (a keyed hash of it, the same whether or not
-- an account exists) in a one-hour window.
CREATE TABLE request_counts (
    subject TEXT NOT NULL,
    kind TEXT NOT NULL,
    window_started_at BIGINT NOT NULL,
    requests BIGINT NOT NULL,
    PRIMARY KEY (subject, kind)
);
