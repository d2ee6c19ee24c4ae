//! Passkeys and security keys (WebAuthn) as a second factor: registering several named keys,
//! renaming and removing them, and (in `login`) answering a login challenge with one.
//!
//! Verification is webauthn-rs's "security key" flow: user verification is preferred, not
//! required, because the password was already checked; any authenticator (a hardware key, or a
//! platform passkey) works. The relying party id is the host of `LATCHKEY_PUBLIC_URL` and the only
//! accepted origin is that URL's origin. Ceremony state lives in the database for 5 minutes, bound
//! to the session (registration) or the login challenge (authentication), so any instance can
//! finish what another started.

pub mod login;
pub mod notices;

use std::time::Duration;

use crate::store::Connection;
use anyhow::Context;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::Serialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use webauthn_rs::prelude::{
    CreationChallengeResponse, CredentialID, RegisterPublicKeyCredential, SecurityKey, SecurityKeyRegistration, Url,
    Uuid, Webauthn, WebauthnBuilder,
};

use crate::accounts::sessions::{CurrentSession, Role};
use crate::app::AppState;
use crate::audit::{self, ClientInfo, Event};
use crate::clock::rfc3339;
use crate::mail;
use crate::store::{self, webauthn as rows};
use crate::twofactor::enrollment::{may_enroll, PasskeyView};
use crate::twofactor::{self};

/// An unfinished registration or authentication is valid this long.
pub const CEREMONY_LIFETIME_SECONDS: i64 = 300;
/// Enough for every key a person owns; a bound keeps one account from filling the database.
pub const MAX_CREDENTIALS: usize = 20;
pub const MAX_NAME_CHARS: usize = 64;
const DEFAULT_NAME: &str = "Security key";

#[derive(Debug, thiserror::Error)]
pub enum PasskeyError {
    #[error("Confirm it's you first.")]
    ReauthRequired,
    #[error("Give the security key a name of at most 64 characters.")]
    InvalidName,
    #[error("This account already has 20 security keys. Remove one first.")]
    TooManyKeys,
    #[error("Start adding the security key again: there is no registration in progress, or it expired.")]
    NoPendingRegistration,
    #[error("The security key's answer was not accepted. Try again.")]
    InvalidCredential,
    #[error("This security key is already registered.")]
    AlreadyRegistered,
    #[error("No such security key.")]
    NotFound,
    #[error("Your organisation requires two-factor authentication for this account.")]
    TwoFactorRequired,
    #[error("This is your last second factor. To turn two-factor authentication off, use a current code (a backup code works) instead.")]
    LastSecondFactor,
    #[error("Security keys need LATCHKEY_PUBLIC_URL to name the server by a domain name.")]
    Unavailable,
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<crate::store::db::Error> for PasskeyError {
    fn from(error: crate::store::db::Error) -> Self {
        PasskeyError::Internal(error.into())
    }
}

impl From<serde_json::Error> for PasskeyError {
    fn from(error: serde_json::Error) -> Self {
        PasskeyError::Internal(error.into())
    }
}

pub async fn credential_count(conn: &mut Connection, user_id: &str) -> anyhow::Result<i64> {
    Ok(rows::count_credentials(conn, user_id).await?)
}

/// Deletes every passkey and unfinished ceremony of the user (disable, recovery, admin reset).
pub async fn delete_all(conn: &mut Connection, user_id: &str) -> anyhow::Result<()> {
    Ok(rows::delete_all_for_user(conn, user_id).await?)
}

/// The user's passkeys as `GET /me/2fa` shows them, oldest first.
pub async fn list(conn: &mut Connection, user_id: &str) -> anyhow::Result<Vec<PasskeyView>> {
    Ok(rows::list_credentials(conn, user_id)
        .await?
        .into_iter()
        .map(|row| view(&row))
        .collect())
}

fn view(row: &rows::CredentialRow) -> PasskeyView {
    PasskeyView {
        id: row.id.clone(),
        name: row.name.clone(),
        created_at: rfc3339(row.created_at),
        last_used_at: row.last_used_at.map(rfc3339),
    }
}

/// The relying party: this server, named by the host of its public URL.
pub(crate) fn relying_party(state: &AppState) -> Result<Webauthn, PasskeyError> {
    let public_url = &state.config.public_url;
    let host = public_url.host_str().ok_or(PasskeyError::Unavailable)?;
    // The origin alone: a public URL with a path (behind a proxy) still has one origin.
    let origin = Url::parse(&public_url.origin().ascii_serialization()).map_err(|_| PasskeyError::Unavailable)?;
    WebauthnBuilder::new(host, &origin)
        .and_then(|builder| {
            builder
                .rp_name(&state.config.product_name)
                .timeout(Duration::from_secs(CEREMONY_LIFETIME_SECONDS as u64))
                .build()
        })
        .map_err(|error| {
            tracing::warn!(%error, "LATCHKEY_PUBLIC_URL cannot serve as a WebAuthn relying party");
            PasskeyError::Unavailable
        })
}

/// The user handle given to authenticators: the user id when it is a UUID (it always is for
/// accounts latchkey creates), else a stable hash of it.
pub(crate) fn user_handle(user_id: &str) -> Uuid {
    Uuid::parse_str(user_id).unwrap_or_else(|_| {
        let digest = Sha256::digest(user_id.as_bytes());
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&digest[..16]);
        Uuid::from_bytes(bytes)
    })
}

pub(crate) fn encode_credential_id(id: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(id)
}

/// A key's display name: trimmed, control characters dropped, a default when blank.
pub fn clean_name(name: &str) -> Result<String, PasskeyError> {
    let cleaned: String = name.trim().chars().filter(|c| !c.is_control()).collect();
    if cleaned.chars().count() > MAX_NAME_CHARS {
        return Err(PasskeyError::InvalidName);
    }
    Ok(if cleaned.is_empty() {
        DEFAULT_NAME.to_string()
    } else {
        cleaned
    })
}

/// Starts registering a new key: answers the options for `navigator.credentials.create()`.
/// Needs sudo, except in a session that exists only to enroll a factor.
pub async fn start_registration(
    state: &AppState,
    session: &CurrentSession,
    name: &str,
) -> Result<CreationChallengeResponse, PasskeyError> {
    let now = state.clock.unix();
    if !may_enroll(session, now) {
        return Err(PasskeyError::ReauthRequired);
    }
    let name = clean_name(name)?;
    let relying_party = relying_party(state)?;
    let mut tx = state.store.begin().await?;
    let existing = rows::list_credentials(&mut tx, &session.user_id).await?;
    if existing.len() >= MAX_CREDENTIALS {
        return Err(PasskeyError::TooManyKeys);
    }
    // Authenticators refuse to register a second credential for the same account.
    let exclude: Vec<CredentialID> = existing
        .iter()
        .filter_map(|row| URL_SAFE_NO_PAD.decode(&row.credential_id).ok())
        .map(CredentialID::from)
        .collect();
    let (mut options, registration) = relying_party
        .start_securitykey_registration(
            user_handle(&session.user_id),
            &session.email,
            &session.email,
            Some(exclude),
            None,
            None,
        )
        .context("starting a WebAuthn registration")?;
    // webauthn-rs asks for credProtect "userVerificationRequired" beside userVerification
    // "preferred"; Chromium refuses that combination outright, so no key could be added. The
    // extension is advisory here (not enforced), so it is left out.
    if let Some(extensions) = options.public_key.extensions.as_mut() {
        extensions.cred_protect = None;
    }
    rows::delete_expired_ceremonies(&mut tx, now).await?;
    rows::replace_ceremony(
        &mut tx,
        &Uuid::new_v4().to_string(),
        &session.user_id,
        rows::CeremonyOwner::Session(&session.id),
        Some(&name),
        &serde_json::to_string(&registration)?,
        now,
        now + CEREMONY_LIFETIME_SECONDS,
    )
    .await?;
    tx.commit().await?;
    Ok(options)
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Registered {
    pub id: String,
    pub name: String,
    /// New backup codes when this key turned 2FA on; null when 2FA was already on.
    pub backup_codes: Option<Vec<String>>,
}

/// Finishes the registration the session started. The first second factor turns 2FA on and
/// issues backup codes exactly as TOTP confirmation does, and makes an enrolling session full.
pub async fn finish_registration(
    state: &AppState,
    client: &ClientInfo,
    session: &CurrentSession,
    credential: &Value,
) -> Result<Registered, PasskeyError> {
    let now = state.clock.unix();
    let relying_party = relying_party(state)?;
    let mut tx = state.store.begin().await?;
    let ceremony = rows::find_ceremony(&mut tx, rows::CeremonyOwner::Session(&session.id), now)
        .await?
        .ok_or(PasskeyError::NoPendingRegistration)?;
    let credential: RegisterPublicKeyCredential =
        serde_json::from_value(credential.clone()).map_err(|_| PasskeyError::InvalidCredential)?;
    let registration: SecurityKeyRegistration =
        serde_json::from_str(&ceremony.state).context("reading a stored WebAuthn registration")?;
    let key = relying_party
        .finish_securitykey_registration(&credential, &registration)
        .map_err(|error| {
            tracing::info!(%error, "WebAuthn registration refused");
            PasskeyError::InvalidCredential
        })?;
    if !rows::consume_ceremony(&mut tx, &ceremony.id, now).await? {
        return Err(PasskeyError::NoPendingRegistration);
    }
    let credential_id = encode_credential_id(key.cred_id().as_ref());
    if rows::credential_id_taken(&mut tx, &credential_id).await? {
        return Err(PasskeyError::AlreadyRegistered);
    }
    let was_enabled = !twofactor::methods(&mut tx, &session.user_id).await?.is_empty();
    let row = rows::CredentialRow {
        id: Uuid::new_v4().to_string(),
        user_id: session.user_id.clone(),
        credential_id,
        name: ceremony.name.unwrap_or_else(|| DEFAULT_NAME.to_string()),
        credential: serde_json::to_string(&key)?,
        sign_count: stored_counter(&key)?,
        created_at: now,
        last_used_at: None,
    };
    if !rows::insert_credential(&mut tx, &row).await? {
        return Err(PasskeyError::AlreadyRegistered);
    }
    let backup_codes = twofactor::factor_added(&mut tx, state, client, session, was_enabled, now).await?;
    let event = Event::by_user("webauthn_added", &session.user_id)
        .with_detail(json!({"credential": row.id, "name": row.name, "turned_on_2fa": !was_enabled}));
    audit::record(&mut tx, now, client, event).await?;
    let notice = notices::security_key_added(state, now, client, &row.name, !was_enabled);
    mail::queue(&mut tx, &state.config, &state.keys, now, &session.email, &notice).await?;
    tx.commit().await?;
    Ok(Registered {
        id: row.id,
        name: row.name,
        backup_codes,
    })
}

/// The signature counter inside a verified credential record, as stored beside it.
pub(crate) fn stored_counter(key: &SecurityKey) -> anyhow::Result<i64> {
    let record = serde_json::to_value(key)?;
    Ok(record["cred"]["counter"].as_i64().unwrap_or(0))
}

pub async fn rename(
    state: &AppState,
    client: &ClientInfo,
    session: &CurrentSession,
    id: &str,
    name: &str,
) -> Result<PasskeyView, PasskeyError> {
    let now = state.clock.unix();
    let name = clean_name(name)?;
    let mut tx = state.store.begin().await?;
    if !rows::rename_credential(&mut tx, &session.user_id, id, &name).await? {
        return Err(PasskeyError::NotFound);
    }
    let row = rows::find_credential(&mut tx, &session.user_id, id)
        .await?
        .ok_or(PasskeyError::NotFound)?;
    let event =
        Event::by_user("webauthn_renamed", &session.user_id).with_detail(json!({"credential": id, "name": name}));
    audit::record(&mut tx, now, client, event).await?;
    tx.commit().await?;
    Ok(view(&row))
}

/// Removes a key (sudo). Removing the last second factor follows the disable rules: refused
/// when policy requires 2FA; otherwise 2FA is off, so the backup codes go too and every other
/// session is signed out, as `POST /me/2fa/disable` does.
pub async fn remove(
    state: &AppState,
    client: &ClientInfo,
    session: &CurrentSession,
    id: &str,
) -> Result<(), PasskeyError> {
    let now = state.clock.unix();
    if !session.is_sudo(now) {
        return Err(PasskeyError::ReauthRequired);
    }
    let mut tx = state.store.begin().await?;
    let row = rows::find_credential(&mut tx, &session.user_id, id)
        .await?
        .ok_or(PasskeyError::NotFound)?;
    let is_last_factor = !store::two_factor::has_totp(&mut tx, &session.user_id).await?
        && rows::count_credentials(&mut tx, &session.user_id).await? == 1;
    if is_last_factor && state.config.require_2fa.requires(session.role == Role::Admin) {
        return Err(PasskeyError::TwoFactorRequired);
    }
    // Removing the last factor would turn 2FA off, which needs a current second factor, never a
    // password-backed sudo window alone: that path is POST /me/2fa/disable with a code.
    if is_last_factor {
        return Err(PasskeyError::LastSecondFactor);
    }
    if !rows::delete_credential(&mut tx, &session.user_id, id).await? {
        return Err(PasskeyError::NotFound);
    }
    let event = Event::by_user("webauthn_removed", &session.user_id)
        .with_detail(json!({"credential": row.id, "name": row.name}));
    audit::record(&mut tx, now, client, event).await?;
    let notice = notices::security_key_removed(state, now, client, &row.name);
    mail::queue(&mut tx, &state.config, &state.keys, now, &session.email, &notice).await?;
    tx.commit().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_trimmed_defaulted_and_bounded() {
        assert_eq!(clean_name("  YubiKey 5 ").unwrap(), "YubiKey 5");
        assert_eq!(clean_name(" \t").unwrap(), DEFAULT_NAME);
        assert_eq!(clean_name("a\u{0}b\nc").unwrap(), "abc");
        assert_eq!(clean_name(&"é".repeat(64)).unwrap().chars().count(), 64);
        assert!(matches!(clean_name(&"x".repeat(65)), Err(PasskeyError::InvalidName)));
    }

    #[test]
    fn user_handles_are_the_uuid_or_a_stable_hash() {
        let id = "5f0c6b8e-2a4b-4c1d-9e7f-0a1b2c3d4e5f";
        assert_eq!(user_handle(id).to_string(), id);
        assert_eq!(user_handle("not-a-uuid"), user_handle("not-a-uuid"));
        assert_ne!(user_handle("not-a-uuid"), user_handle("other"));
    }
}
