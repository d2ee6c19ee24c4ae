//! Passkeys and security keys (WebAuthn) as a second factor. Not built yet: no user has one, so
//! these answer "none" and the rest of the code already asks them.

use sqlx::AnyConnection;

pub async fn credential_count(_conn: &mut AnyConnection, _user_id: &str) -> anyhow::Result<i64> {
    Ok(0)
}

pub async fn delete_all(_conn: &mut AnyConnection, _user_id: &str) -> anyhow::Result<()> {
    Ok(())
}
