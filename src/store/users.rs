use super::db::{self, Connection};

crate::row_struct! {
    #[derive(Debug, Clone)]
    pub struct UserRow {
        pub id: String,
        pub email: String,
        pub password_hash: String,
        pub role: String,
        pub created_at: i64,
        pub email_recovery_enabled: i64,
    }
}

const COLUMNS: &str = "id, email, password_hash, role, created_at, email_recovery_enabled";

/// Inserts the user unless the email is taken; answers whether it was inserted.
pub async fn insert(conn: &mut Connection, user: &UserRow) -> db::Result<bool> {
    let result = db::query(
        "INSERT INTO users (id, email, password_hash, role, created_at, email_recovery_enabled)
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (email) DO NOTHING",
    )
    .bind(&user.id)
    .bind(&user.email)
    .bind(&user.password_hash)
    .bind(&user.role)
    .bind(user.created_at)
    .bind(user.email_recovery_enabled)
    .execute(conn)
    .await?;
    Ok(result.rows_affected() == 1)
}

pub async fn find_by_email(conn: &mut Connection, email: &str) -> db::Result<Option<UserRow>> {
    db::query_as(format!("SELECT {COLUMNS} FROM users WHERE email = $1"))
        .bind(email)
        .fetch_optional(conn)
        .await
}

pub async fn find_by_id(conn: &mut Connection, id: &str) -> db::Result<Option<UserRow>> {
    db::query_as(format!("SELECT {COLUMNS} FROM users WHERE id = $1"))
        .bind(id)
        .fetch_optional(conn)
        .await
}

pub async fn set_password_hash(conn: &mut Connection, id: &str, password_hash: &str) -> db::Result<()> {
    db::query("UPDATE users SET password_hash = $1 WHERE id = $2")
        .bind(password_hash)
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn set_role(conn: &mut Connection, id: &str, role: &str) -> db::Result<()> {
    db::query("UPDATE users SET role = $1 WHERE id = $2")
        .bind(role)
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn set_email_recovery(conn: &mut Connection, id: &str, enabled: bool) -> db::Result<()> {
    db::query("UPDATE users SET email_recovery_enabled = $1 WHERE id = $2")
        .bind(i64::from(enabled))
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Users whose email contains `email_fragment`, by email, one page at a time.
pub async fn search(conn: &mut Connection, email_fragment: &str, limit: i64, offset: i64) -> db::Result<Vec<UserRow>> {
    let pattern = format!(
        "%{}%",
        email_fragment
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_")
    );
    db::query_as(format!(
        "SELECT {COLUMNS} FROM users WHERE email LIKE $1 ESCAPE '\\' ORDER BY email LIMIT $2 OFFSET $3"
    ))
    .bind(pattern)
    .bind(limit)
    .bind(offset)
    .fetch_all(conn)
    .await
}
