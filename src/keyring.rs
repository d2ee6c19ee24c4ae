//! The keys a running latchkey uses, and `latchkey keys rotate`.
//!
//! The master key encrypts; the MAC root (random, stored sealed in the database) keys the HMACs
//! of tokens and backup codes. Rotating the master key re-encrypts every TOTP secret, queued email
//! and the MAC root under the new key, so the old key can then be removed from the configuration,
//! while every stored hash keeps working. See `crypto::Keys` and docs/operations.md.

use anyhow::Context;
use rand::RngCore;
use serde::Serialize;
use serde_json::json;

use crate::audit::{self, ClientInfo, Event};
use crate::config::Config;
use crate::crypto::{Keys, MasterKeys};
use crate::store::keys::{self as rows, SecretTable, MAC_ROOT};
use crate::store::Store;

/// The configured master keys plus the MAC root from the database, created on first start.
/// Fails at start-up, naming the key id, when the database was sealed under a key that is not
/// configured, rather than failing later at every login.
pub async fn load(config: &Config, store: &Store, now: i64) -> anyhow::Result<Keys> {
    let master = MasterKeys::load(config)?;
    let mut conn = store.read().await?;
    if rows::material(&mut conn, MAC_ROOT).await?.is_none() {
        let mut mac_root = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut mac_root);
        let (sealed, key_id) = master.seal_mac_root(&mac_root);
        // Two instances starting on an empty database race here; one row wins and both read it.
        let mut tx = store.begin().await?;
        rows::insert_material_once(&mut tx, MAC_ROOT, &sealed, &key_id, now).await?;
        tx.commit().await?;
    }
    let stored = rows::material(&mut conn, MAC_ROOT)
        .await?
        .context("the MAC root is missing from key_material")?;
    let mac_root = master
        .open_mac_root(&stored.sealed, &stored.key_id)
        .context("opening the database's MAC root")?;
    Ok(master.with_mac_root(&mac_root))
}

/// What a rotation re-encrypted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RotationReport {
    /// The master key everything is now sealed under.
    pub key_id: String,
    pub totp_secrets: u64,
    pub pending_totp_secrets: u64,
    pub queued_emails: u64,
    pub mac_root: bool,
    /// Rows still sealed under another key afterwards (written by an instance that still runs with
    /// the old key as its current one); 0 means the previous keys can be removed.
    pub remaining: i64,
}

/// Re-encrypts everything not sealed under the current master key, in one transaction: either all
/// of it moves to the new key or nothing does. Safe to run again.
pub async fn rotate(store: &Store, config: &Config, now: i64) -> anyhow::Result<RotationReport> {
    let master = MasterKeys::load(config)?;
    let keys = load(config, store, now).await?;
    let key_id = keys.key_id.clone();
    let mut report = RotationReport {
        key_id: key_id.clone(),
        ..RotationReport::default()
    };
    let mut tx = store.begin().await?;

    for table in [SecretTable::Active, SecretTable::Pending] {
        let mut resealed = 0;
        for row in rows::secrets_not_under(&mut tx, table, &key_id).await? {
            let plain = keys
                .open_secret(&row.user_id, &row.secret, &row.key_id)
                .with_context(|| format!("opening the {table:?} TOTP secret of user {}", row.user_id))?;
            let sealed = keys.seal_secret(&row.user_id, &plain);
            if rows::reseal_secret(&mut tx, table, &row, &sealed, &key_id).await? {
                resealed += 1;
            }
        }
        match table {
            SecretTable::Active => report.totp_secrets = resealed,
            SecretTable::Pending => report.pending_totp_secrets = resealed,
        }
    }

    for (id, sealed) in rows::queued_bodies(&mut tx).await? {
        if keys.outbox_is_current(&id, &sealed) {
            continue;
        }
        let plain = keys
            .open_outbox(&id, &sealed)
            .with_context(|| format!("opening queued email {id}"))?;
        if rows::reseal_queued_body(&mut tx, &id, &keys.seal_outbox(&id, &plain)).await? {
            report.queued_emails += 1;
        }
    }

    if let Some(stored) = rows::material(&mut tx, MAC_ROOT).await? {
        if stored.key_id != key_id {
            let mac_root = master.open_mac_root(&stored.sealed, &stored.key_id)?;
            let (sealed, new_key_id) = master.seal_mac_root(&mac_root);
            report.mac_root = rows::reseal_material(&mut tx, MAC_ROOT, &sealed, &new_key_id, &stored.key_id).await?;
        }
    }

    for table in [SecretTable::Active, SecretTable::Pending] {
        report.remaining += rows::count_secrets_not_under(&mut tx, table, &key_id).await?;
    }
    let event = Event {
        kind: "keys_rotated",
        user_id: None,
        actor_id: None,
        detail: json!({
            "key_id": key_id,
            "previous_key_ids": keys.previous_key_ids(),
            "totp_secrets": report.totp_secrets,
            "pending_totp_secrets": report.pending_totp_secrets,
            "queued_emails": report.queued_emails,
            "mac_root": report.mac_root,
        }),
    };
    audit::record(&mut tx, now, &ClientInfo::cli(), event).await?;
    tx.commit().await?;
    Ok(report)
}
