-- Passkeys and security keys (WebAuthn) registered as a second factor. Nothing here is secret:
-- a credential is a public key, and a ceremony holds the challenge the browser was sent.
CREATE TABLE webauthn_credentials (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    -- The authenticator's credential id (base64url): one credential belongs to one account.
    credential_id TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    -- The verifier's credential record as JSON (public key, flags, last signature counter).
    credential TEXT NOT NULL,
    -- The last signature counter accepted; a non-zero counter at or below it means a cloned key.
    sign_count BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    last_used_at BIGINT
);
CREATE INDEX webauthn_credentials_by_user ON webauthn_credentials(user_id);

-- An unfinished registration (bound to the session that started it) or authentication (bound to
-- the login challenge it answers): one of session_id and challenge_id is set. Single use, 5 minutes.
CREATE TABLE webauthn_ceremonies (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    session_id TEXT UNIQUE REFERENCES sessions(id) ON DELETE CASCADE,
    challenge_id TEXT UNIQUE REFERENCES login_challenges(id) ON DELETE CASCADE,
    -- The name the user gave the key being registered.
    name TEXT,
    -- The verifier's ceremony state as JSON (challenge, allowed credentials, policy).
    state TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX webauthn_ceremonies_by_expiry ON webauthn_ceremonies(expires_at);
CREATE INDEX webauthn_ceremonies_by_user ON webauthn_ceremonies(user_id);
