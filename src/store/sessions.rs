use super::db::{self, Connection};

crate::row_struct! {
    #[derive(Debug, Clone)]
    pub struct SessionRow {
        pub id: String,
        pub user_id: String,
        pub state: String,
        pub created_at: i64,
        pub last_seen_at: i64,
        pub expires_at: i64,
        pub sudo_until: i64,
        pub user_agent: Option<String>,
        pub ip: Option<String>,
    }
}

crate::row_struct! {
    /// A session with the user it belongs to, as needed to authenticate a request in one query.
    #[derive(Debug, Clone)]
    pub struct SessionWithUser {
        pub id: String,
        pub user_id: String,
        pub state: String,
        pub created_at: i64,
        pub last_seen_at: i64,
        pub expires_at: i64,
        pub sudo_until: i64,
        pub email: String,
        pub role: String,
    }
}

pub async fn insert(conn: &mut Connection, token_hash: &[u8], session: &SessionRow) -> db::Result<()> {
    db::query(
        "INSERT INTO sessions (id, token_hash, user_id, state, created_at, last_seen_at, expires_at, sudo_until, user_agent, ip)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(&session.id)
    .bind(token_hash)
    .bind(&session.user_id)
    .bind(&session.state)
    .bind(session.created_at)
    .bind(session.last_seen_at)
    .bind(session.expires_at)
    .bind(session.sudo_until)
    .bind(&session.user_agent)
    .bind(&session.ip)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn find_by_token_hash(conn: &mut Connection, token_hash: &[u8]) -> db::Result<Option<SessionWithUser>> {
    db::query_as(
        "SELECT s.id, s.user_id, s.state, s.created_at, s.last_seen_at, s.expires_at, s.sudo_until, u.email, u.role
         FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.token_hash = $1",
    )
    .bind(token_hash)
    .fetch_optional(conn)
    .await
}

pub async fn list_for_user(conn: &mut Connection, user_id: &str) -> db::Result<Vec<SessionRow>> {
    db::query_as(
        "SELECT id, user_id, state, created_at, last_seen_at, expires_at, sudo_until, user_agent, ip
         FROM sessions WHERE user_id = $1 ORDER BY created_at DESC, id",
    )
    .bind(user_id)
    .fetch_all(conn)
    .await
}

/// Activity is recorded at most this often per session, to keep reads from turning into writes.
pub const TOUCH_INTERVAL_SECONDS: i64 = 60;

pub async fn touch(conn: &mut Connection, id: &str, now: i64) -> db::Result<()> {
    db::query("UPDATE sessions SET last_seen_at = $1 WHERE id = $2 AND last_seen_at < $3")
        .bind(now)
        .bind(id)
        .bind(now - TOUCH_INTERVAL_SECONDS)
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn set_sudo_until(conn: &mut Connection, id: &str, until: i64) -> db::Result<()> {
    db::query("UPDATE sessions SET sudo_until = $1 WHERE id = $2")
        .bind(until)
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn set_state(conn: &mut Connection, id: &str, state: &str) -> db::Result<()> {
    db::query("UPDATE sessions SET state = $1 WHERE id = $2")
        .bind(state)
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Deletes one of the user's sessions; answers whether it existed.
pub async fn delete_for_user(conn: &mut Connection, user_id: &str, id: &str) -> db::Result<bool> {
    let result = db::query("DELETE FROM sessions WHERE id = $1 AND user_id = $2")
        .bind(id)
        .bind(user_id)
        .execute(conn)
        .await?;
    Ok(result.rows_affected() == 1)
}

pub async fn delete(conn: &mut Connection, id: &str) -> db::Result<()> {
    db::query("DELETE FROM sessions WHERE id = $1")
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Revokes every session of the user except `keep` (None revokes all); answers how many.
pub async fn delete_all_for_user(conn: &mut Connection, user_id: &str, keep: Option<&str>) -> db::Result<u64> {
    let result = db::query("DELETE FROM sessions WHERE user_id = $1 AND id <> $2")
        .bind(user_id)
        .bind(keep.unwrap_or(""))
        .execute(conn)
        .await?;
    Ok(result.rows_affected())
}

pub async fn delete_expired(conn: &mut Connection, now: i64, idle_cutoff: i64) -> db::Result<u64> {
    let result = db::query("DELETE FROM sessions WHERE expires_at <= $1 OR last_seen_at <= $2")
        .bind(now)
        .bind(idle_cutoff)
        .execute(conn)
        .await?;
    Ok(result.rows_affected())
}
