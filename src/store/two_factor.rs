use super::db::{self, Connection};

crate::row_struct! {
    #[derive(Debug, Clone)]
    pub struct SealedSecret {
        pub secret: Vec<u8>,
        pub key_id: String,
    }
}

pub async fn totp_secret(conn: &mut Connection, user_id: &str) -> db::Result<Option<SealedSecret>> {
    db::query_as("SELECT secret, key_id FROM totp_credentials WHERE user_id = $1")
        .bind(user_id)
        .fetch_optional(conn)
        .await
}

pub async fn has_totp(conn: &mut Connection, user_id: &str) -> db::Result<bool> {
    let row: Option<(String,)> = db::query_as("SELECT user_id FROM totp_credentials WHERE user_id = $1")
        .bind(user_id)
        .fetch_optional(conn)
        .await?;
    Ok(row.is_some())
}

/// Replaces the user's active TOTP secret; `used_step` is the step of the confirming code.
pub async fn replace_totp(
    conn: &mut Connection,
    user_id: &str,
    sealed: &[u8],
    key_id: &str,
    used_step: i64,
    now: i64,
) -> db::Result<()> {
    db::query("DELETE FROM totp_credentials WHERE user_id = $1")
        .bind(user_id)
        .execute(&mut *conn)
        .await?;
    db::query("INSERT INTO totp_credentials (user_id, secret, key_id, last_used_step, created_at) VALUES ($1, $2, $3, $4, $5)")
        .bind(user_id)
        .bind(sealed)
        .bind(key_id)
        .bind(used_step)
        .bind(now)
        .execute(conn)
        .await?;
    Ok(())
}

/// Records `step` as used unless it, or a later one, already was: the replay guard. Answers
/// whether this call won.
pub async fn claim_totp_step(conn: &mut Connection, user_id: &str, step: i64) -> db::Result<bool> {
    let result =
        db::query("UPDATE totp_credentials SET last_used_step = $1 WHERE user_id = $2 AND last_used_step < $1")
            .bind(step)
            .bind(user_id)
            .execute(conn)
            .await?;
    Ok(result.rows_affected() == 1)
}

pub async fn save_pending_totp(
    conn: &mut Connection,
    user_id: &str,
    sealed: &[u8],
    key_id: &str,
    now: i64,
    expires_at: i64,
) -> db::Result<()> {
    db::query("DELETE FROM totp_pending WHERE user_id = $1")
        .bind(user_id)
        .execute(&mut *conn)
        .await?;
    db::query("INSERT INTO totp_pending (user_id, secret, key_id, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)")
        .bind(user_id)
        .bind(sealed)
        .bind(key_id)
        .bind(now)
        .bind(expires_at)
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn pending_totp(conn: &mut Connection, user_id: &str, now: i64) -> db::Result<Option<SealedSecret>> {
    db::query_as("SELECT secret, key_id FROM totp_pending WHERE user_id = $1 AND expires_at > $2")
        .bind(user_id)
        .bind(now)
        .fetch_optional(conn)
        .await
}

pub async fn delete_pending_totp(conn: &mut Connection, user_id: &str) -> db::Result<()> {
    db::query("DELETE FROM totp_pending WHERE user_id = $1")
        .bind(user_id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Replaces every backup code of the user with new ones (given as keyed hashes).
pub async fn replace_backup_codes(
    conn: &mut Connection,
    user_id: &str,
    code_hashes: &[Vec<u8>],
    now: i64,
) -> db::Result<()> {
    db::query("DELETE FROM backup_codes WHERE user_id = $1")
        .bind(user_id)
        .execute(&mut *conn)
        .await?;
    for hash in code_hashes {
        db::query("INSERT INTO backup_codes (code_hash, user_id, created_at) VALUES ($1, $2, $3)")
            .bind(hash)
            .bind(user_id)
            .bind(now)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// Consumes an unused code with one conditional UPDATE; answers whether this call consumed it.
pub async fn consume_backup_code(conn: &mut Connection, user_id: &str, code_hash: &[u8], now: i64) -> db::Result<bool> {
    let result =
        db::query("UPDATE backup_codes SET used_at = $1 WHERE code_hash = $2 AND user_id = $3 AND used_at IS NULL")
            .bind(now)
            .bind(code_hash)
            .bind(user_id)
            .execute(conn)
            .await?;
    Ok(result.rows_affected() == 1)
}

pub async fn backup_code_exists(conn: &mut Connection, user_id: &str, code_hash: &[u8]) -> db::Result<bool> {
    let row: Option<(String,)> = db::query_as("SELECT user_id FROM backup_codes WHERE code_hash = $1 AND user_id = $2")
        .bind(code_hash)
        .bind(user_id)
        .fetch_optional(conn)
        .await?;
    Ok(row.is_some())
}

pub async fn remaining_backup_codes(conn: &mut Connection, user_id: &str) -> db::Result<i64> {
    let (count,): (i64,) = db::query_as("SELECT COUNT(*) FROM backup_codes WHERE user_id = $1 AND used_at IS NULL")
        .bind(user_id)
        .fetch_one(conn)
        .await?;
    Ok(count)
}

/// Deletes every second factor of the user: TOTP secret, pending setup, backup codes, and the
/// replay state with them (it lives on the secret's row). Passkeys are deleted by their module.
pub async fn delete_all_factors(conn: &mut Connection, user_id: &str) -> db::Result<()> {
    for statement in [
        "DELETE FROM totp_credentials WHERE user_id = $1",
        "DELETE FROM totp_pending WHERE user_id = $1",
        "DELETE FROM backup_codes WHERE user_id = $1",
        "DELETE FROM login_challenges WHERE user_id = $1",
    ] {
        db::query(statement).bind(user_id).execute(&mut *conn).await?;
    }
    Ok(())
}

pub struct NewChallenge<'a> {
    pub id: &'a str,
    pub token_hash: &'a [u8],
    pub user_id: &'a str,
    pub created_at: i64,
    pub expires_at: i64,
    pub ip: Option<&'a str>,
    pub user_agent: Option<&'a str>,
}

pub async fn insert_challenge(conn: &mut Connection, challenge: &NewChallenge<'_>) -> db::Result<()> {
    db::query(
        "INSERT INTO login_challenges (id, token_hash, user_id, created_at, expires_at, failures, ip, user_agent)
         VALUES ($1, $2, $3, $4, $5, 0, $6, $7)",
    )
    .bind(challenge.id)
    .bind(challenge.token_hash)
    .bind(challenge.user_id)
    .bind(challenge.created_at)
    .bind(challenge.expires_at)
    .bind(challenge.ip)
    .bind(challenge.user_agent)
    .execute(conn)
    .await?;
    Ok(())
}

crate::row_struct! {
    /// A login challenge with all that answering it needs, read in one query: its user, the
    /// user's second-factor throttle (absent when there were no failures), the backup codes left
    /// and whether a recovery of the account is pending.
    #[derive(Debug, Clone)]
    pub struct OpenChallengeRow {
        pub id: String,
        pub user_id: String,
        pub email: String,
        pub expires_at: i64,
        pub failures: i64,
        pub used_at: Option<i64>,
        pub throttle_failures: Option<i64>,
        pub throttle_retry_at_ms: Option<i64>,
        pub throttle_locked: Option<i64>,
        pub backup_codes_remaining: i64,
        pub pending_recoveries: i64,
    }
}

/// The challenge of `token_hash` for answering it; `throttle_kind` names the throttle to read.
pub async fn open_challenge(
    conn: &mut Connection,
    token_hash: &[u8],
    throttle_kind: &str,
) -> db::Result<Option<OpenChallengeRow>> {
    db::query_as(concat!(
        "SELECT c.id, c.user_id, u.email, c.expires_at, c.failures, c.used_at,
                t.failures AS throttle_failures, ",
        super::throttles::later_retry_at_ms!(),
        " AS throttle_retry_at_ms, t.locked AS throttle_locked,
                (SELECT COUNT(*) FROM backup_codes b WHERE b.user_id = c.user_id AND b.used_at IS NULL)
                    AS backup_codes_remaining,
                (SELECT COUNT(*) FROM recovery_requests r WHERE r.user_id = c.user_id AND r.status = 'pending')
                    AS pending_recoveries
         FROM login_challenges c
         JOIN users u ON u.id = c.user_id
         LEFT JOIN throttles t ON t.subject = c.user_id AND t.kind = $2
         WHERE c.token_hash = $1"
    ))
    .bind(token_hash)
    .bind(throttle_kind)
    .fetch_optional(conn)
    .await
}

pub async fn add_challenge_failure(conn: &mut Connection, id: &str) -> db::Result<()> {
    db::query("UPDATE login_challenges SET failures = failures + 1 WHERE id = $1")
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Uses the challenge up; answers whether this call did (a challenge completes one login).
pub async fn consume_challenge(conn: &mut Connection, id: &str, now: i64, max_failures: i64) -> db::Result<bool> {
    let result = db::query(
        "UPDATE login_challenges SET used_at = $1 WHERE id = $2 AND used_at IS NULL AND expires_at > $1 AND failures < $3",
    )
    .bind(now)
    .bind(id)
    .bind(max_failures)
    .execute(conn)
    .await?;
    Ok(result.rows_affected() == 1)
}

pub async fn delete_old_challenges(conn: &mut Connection, before: i64) -> db::Result<u64> {
    let result = db::query("DELETE FROM login_challenges WHERE expires_at < $1")
        .bind(before)
        .execute(conn)
        .await?;
    Ok(result.rows_affected())
}

/// The pending TOTP secret with its expiry, so a page can show the same QR code again.
pub async fn pending_totp_with_expiry(
    conn: &mut Connection,
    user_id: &str,
    now: i64,
) -> db::Result<Option<(Vec<u8>, String, i64)>> {
    db::query_as("SELECT secret, key_id, expires_at FROM totp_pending WHERE user_id = $1 AND expires_at > $2")
        .bind(user_id)
        .bind(now)
        .fetch_optional(conn)
        .await
}
