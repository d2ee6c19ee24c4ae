//! Key material and the ciphertexts a master-key rotation re-encrypts.

use super::db::{self, Connection};

pub const MAC_ROOT: &str = "mac_root";

crate::row_struct! {
    #[derive(Debug, Clone)]
    pub struct SealedMaterial {
        pub sealed: Vec<u8>,
        pub key_id: String,
    }
}

pub async fn material(conn: &mut Connection, name: &str) -> db::Result<Option<SealedMaterial>> {
    db::query_as("SELECT sealed, key_id FROM key_material WHERE name = $1")
        .bind(name)
        .fetch_optional(conn)
        .await
}

/// Stores key material unless another instance stored it first (the caller reads it back).
pub async fn insert_material_once(
    conn: &mut Connection,
    name: &str,
    sealed: &[u8],
    key_id: &str,
    now: i64,
) -> db::Result<()> {
    db::query(
        "INSERT INTO key_material (name, sealed, key_id, created_at) VALUES ($1, $2, $3, $4) ON CONFLICT (name) DO NOTHING",
    )
    .bind(name)
    .bind(sealed)
    .bind(key_id)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn reseal_material(
    conn: &mut Connection,
    name: &str,
    sealed: &[u8],
    key_id: &str,
    old_key_id: &str,
) -> db::Result<bool> {
    let result = db::query("UPDATE key_material SET sealed = $1, key_id = $2 WHERE name = $3 AND key_id = $4")
        .bind(sealed)
        .bind(key_id)
        .bind(name)
        .bind(old_key_id)
        .execute(conn)
        .await?;
    Ok(result.rows_affected() == 1)
}

crate::row_struct! {
    /// A TOTP secret (active or pending) sealed under a master key other than the current one.
    #[derive(Debug, Clone)]
    pub struct SealedSecretRow {
        pub user_id: String,
        pub secret: Vec<u8>,
        pub key_id: String,
    }
}

/// The two tables that hold sealed TOTP secrets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretTable {
    Active,
    Pending,
}

impl SecretTable {
    fn name(self) -> &'static str {
        match self {
            SecretTable::Active => "totp_credentials",
            SecretTable::Pending => "totp_pending",
        }
    }
}

pub async fn secrets_not_under(
    conn: &mut Connection,
    table: SecretTable,
    key_id: &str,
) -> db::Result<Vec<SealedSecretRow>> {
    db::query_as(format!(
        "SELECT user_id, secret, key_id FROM {} WHERE key_id <> $1 ORDER BY user_id",
        table.name()
    ))
    .bind(key_id)
    .fetch_all(conn)
    .await
}

/// Replaces one sealed secret, only if it is still the one that was read.
pub async fn reseal_secret(
    conn: &mut Connection,
    table: SecretTable,
    row: &SealedSecretRow,
    sealed: &[u8],
    key_id: &str,
) -> db::Result<bool> {
    let result = db::query(format!(
        "UPDATE {} SET secret = $1, key_id = $2 WHERE user_id = $3 AND key_id = $4",
        table.name()
    ))
    .bind(sealed)
    .bind(key_id)
    .bind(&row.user_id)
    .bind(&row.key_id)
    .execute(conn)
    .await?;
    Ok(result.rows_affected() == 1)
}

pub async fn count_secrets_not_under(conn: &mut Connection, table: SecretTable, key_id: &str) -> db::Result<i64> {
    let (count,): (i64,) = db::query_as(format!("SELECT COUNT(*) FROM {} WHERE key_id <> $1", table.name()))
        .bind(key_id)
        .fetch_one(conn)
        .await?;
    Ok(count)
}

/// Bodies of emails not yet delivered (delivered ones are wiped).
pub async fn queued_bodies(conn: &mut Connection) -> db::Result<Vec<(String, Vec<u8>)>> {
    db::query_as("SELECT id, body FROM outbox WHERE body IS NOT NULL AND sent_at IS NULL AND failed_at IS NULL")
        .fetch_all(conn)
        .await
}

pub async fn reseal_queued_body(conn: &mut Connection, id: &str, sealed: &[u8]) -> db::Result<bool> {
    let result = db::query("UPDATE outbox SET body = $1 WHERE id = $2 AND body IS NOT NULL AND sent_at IS NULL")
        .bind(sealed)
        .bind(id)
        .execute(conn)
        .await?;
    Ok(result.rows_affected() == 1)
}
