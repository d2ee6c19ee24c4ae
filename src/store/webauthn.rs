//! Passkeys and security keys (WebAuthn credentials) and their unfinished ceremonies.

use super::db::{self, Connection};

crate::row_struct! {
    #[derive(Debug, Clone)]
    pub struct CredentialRow {
        pub id: String,
        pub user_id: String,
        pub credential_id: String,
        pub name: String,
        pub credential: String,
        pub sign_count: i64,
        pub created_at: i64,
        pub last_used_at: Option<i64>,
    }
}

const CREDENTIAL_COLUMNS: &str = "id, user_id, credential_id, name, credential, sign_count, created_at, last_used_at";

pub async fn count_credentials(conn: &mut Connection, user_id: &str) -> db::Result<i64> {
    let (count,): (i64,) = db::query_as("SELECT COUNT(*) FROM webauthn_credentials WHERE user_id = $1")
        .bind(user_id)
        .fetch_one(conn)
        .await?;
    Ok(count)
}

/// The user's credentials, oldest first.
pub async fn list_credentials(conn: &mut Connection, user_id: &str) -> db::Result<Vec<CredentialRow>> {
    db::query_as(format!(
        "SELECT {CREDENTIAL_COLUMNS} FROM webauthn_credentials WHERE user_id = $1 ORDER BY created_at, id"
    ))
    .bind(user_id)
    .fetch_all(conn)
    .await
}

pub async fn find_credential(conn: &mut Connection, user_id: &str, id: &str) -> db::Result<Option<CredentialRow>> {
    db::query_as(format!(
        "SELECT {CREDENTIAL_COLUMNS} FROM webauthn_credentials WHERE id = $1 AND user_id = $2"
    ))
    .bind(id)
    .bind(user_id)
    .fetch_optional(conn)
    .await
}

pub async fn credential_id_taken(conn: &mut Connection, credential_id: &str) -> db::Result<bool> {
    let row: Option<(String,)> = db::query_as("SELECT id FROM webauthn_credentials WHERE credential_id = $1")
        .bind(credential_id)
        .fetch_optional(conn)
        .await?;
    Ok(row.is_some())
}

/// Inserts the credential unless its credential id is registered already; answers whether it was.
pub async fn insert_credential(conn: &mut Connection, row: &CredentialRow) -> db::Result<bool> {
    let result = db::query(
        "INSERT INTO webauthn_credentials (id, user_id, credential_id, name, credential, sign_count, created_at, last_used_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (credential_id) DO NOTHING",
    )
    .bind(&row.id)
    .bind(&row.user_id)
    .bind(&row.credential_id)
    .bind(&row.name)
    .bind(&row.credential)
    .bind(row.sign_count)
    .bind(row.created_at)
    .bind(row.last_used_at)
    .execute(conn)
    .await?;
    Ok(result.rows_affected() == 1)
}

/// Records a use of the credential, provided nobody recorded another use since `previous_count`
/// was read: answers whether this call did (two assertions can never both move the counter).
pub async fn record_use(
    conn: &mut Connection,
    id: &str,
    previous_count: i64,
    sign_count: i64,
    credential: &str,
    now: i64,
) -> db::Result<bool> {
    let result = db::query(
        "UPDATE webauthn_credentials SET sign_count = $1, credential = $2, last_used_at = $3
         WHERE id = $4 AND sign_count = $5",
    )
    .bind(sign_count)
    .bind(credential)
    .bind(now)
    .bind(id)
    .bind(previous_count)
    .execute(conn)
    .await?;
    Ok(result.rows_affected() == 1)
}

pub async fn rename_credential(conn: &mut Connection, user_id: &str, id: &str, name: &str) -> db::Result<bool> {
    let result = db::query("UPDATE webauthn_credentials SET name = $1 WHERE id = $2 AND user_id = $3")
        .bind(name)
        .bind(id)
        .bind(user_id)
        .execute(conn)
        .await?;
    Ok(result.rows_affected() == 1)
}

pub async fn delete_credential(conn: &mut Connection, user_id: &str, id: &str) -> db::Result<bool> {
    let result = db::query("DELETE FROM webauthn_credentials WHERE id = $1 AND user_id = $2")
        .bind(id)
        .bind(user_id)
        .execute(conn)
        .await?;
    Ok(result.rows_affected() == 1)
}

/// Deletes every credential and unfinished ceremony of the user.
pub async fn delete_all_for_user(conn: &mut Connection, user_id: &str) -> db::Result<()> {
    for statement in [
        "DELETE FROM webauthn_ceremonies WHERE user_id = $1",
        "DELETE FROM webauthn_credentials WHERE user_id = $1",
    ] {
        db::query(statement).bind(user_id).execute(&mut *conn).await?;
    }
    Ok(())
}

/// What a ceremony is bound to: the session registering a key, or the login challenge it answers.
#[derive(Debug, Clone, Copy)]
pub enum CeremonyOwner<'a> {
    Session(&'a str),
    Challenge(&'a str),
}

impl CeremonyOwner<'_> {
    fn column(self) -> &'static str {
        match self {
            CeremonyOwner::Session(_) => "session_id",
            CeremonyOwner::Challenge(_) => "challenge_id",
        }
    }

    fn id(&self) -> &str {
        match self {
            CeremonyOwner::Session(id) | CeremonyOwner::Challenge(id) => id,
        }
    }
}

crate::row_struct! {
    #[derive(Debug, Clone)]
    pub struct CeremonyRow {
        pub id: String,
        pub user_id: String,
        pub name: Option<String>,
        pub state: String,
    }
}

/// Starts a ceremony for `owner`, replacing its earlier unfinished one.
#[allow(clippy::too_many_arguments)]
pub async fn replace_ceremony(
    conn: &mut Connection,
    id: &str,
    user_id: &str,
    owner: CeremonyOwner<'_>,
    name: Option<&str>,
    state: &str,
    now: i64,
    expires_at: i64,
) -> db::Result<()> {
    let column = owner.column();
    db::query(format!("DELETE FROM webauthn_ceremonies WHERE {column} = $1"))
        .bind(owner.id())
        .execute(&mut *conn)
        .await?;
    db::query(format!(
        "INSERT INTO webauthn_ceremonies (id, user_id, {column}, name, state, created_at, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)"
    ))
    .bind(id)
    .bind(user_id)
    .bind(owner.id())
    .bind(name)
    .bind(state)
    .bind(now)
    .bind(expires_at)
    .execute(conn)
    .await?;
    Ok(())
}

/// The owner's unexpired ceremony, if any.
pub async fn find_ceremony(
    conn: &mut Connection,
    owner: CeremonyOwner<'_>,
    now: i64,
) -> db::Result<Option<CeremonyRow>> {
    db::query_as(format!(
        "SELECT id, user_id, name, state FROM webauthn_ceremonies WHERE {} = $1 AND expires_at > $2",
        owner.column()
    ))
    .bind(owner.id())
    .bind(now)
    .fetch_optional(conn)
    .await
}

/// Uses the ceremony up; answers whether this call did (a ceremony completes once).
pub async fn consume_ceremony(conn: &mut Connection, id: &str, now: i64) -> db::Result<bool> {
    let result = db::query("DELETE FROM webauthn_ceremonies WHERE id = $1 AND expires_at > $2")
        .bind(id)
        .bind(now)
        .execute(conn)
        .await?;
    Ok(result.rows_affected() == 1)
}

pub async fn delete_expired_ceremonies(conn: &mut Connection, now: i64) -> db::Result<u64> {
    let result = db::query("DELETE FROM webauthn_ceremonies WHERE expires_at <= $1")
        .bind(now)
        .execute(conn)
        .await?;
    Ok(result.rows_affected())
}
