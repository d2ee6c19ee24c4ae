//! Two-factor authentication: TOTP (RFC 6238), passkeys and security keys (WebAuthn), single-use
//! backup codes, enrollment, the second step of login, and turning it off.

pub mod backup_codes;
pub mod challenge;
pub mod enrollment;
pub mod totp;
pub mod webauthn;

use crate::store::Connection;
use rand::rngs::OsRng;
use serde_json::json;

use crate::app::AppState;
use crate::audit::{self, ClientInfo, Event};
use crate::mail::{self, notices};
use crate::store::two_factor as rows;

/// A second factor as the user typed it, parsed once at the edge.
pub enum SecondFactor {
    Totp(totp::TotpCode),
    BackupCode(backup_codes::BackupCode),
    /// A code that cannot be right (wrong shape): it fails like a wrong code, and counts.
    Unreadable(&'static str),
}

impl SecondFactor {
    /// `method` must be `totp` or `backup_code`; `None` means the method itself is unknown.
    pub fn parse(method: &str, code: &str) -> Option<SecondFactor> {
        match method {
            "totp" => Some(
                totp::TotpCode::parse(code)
                    .map(SecondFactor::Totp)
                    .unwrap_or(SecondFactor::Unreadable("totp")),
            ),
            "backup_code" => Some(
                backup_codes::parse(code)
                    .map(SecondFactor::BackupCode)
                    .unwrap_or(SecondFactor::Unreadable("backup_code")),
            ),
            _ => None,
        }
    }

    pub fn method(&self) -> &'static str {
        match self {
            SecondFactor::Totp(_) => "totp",
            SecondFactor::BackupCode(_) => "backup_code",
            SecondFactor::Unreadable(method) => method,
        }
    }
}

/// Why a code was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeError {
    Invalid,
    AlreadyUsed,
}

/// A second factor that was accepted (and used up).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FactorUsed {
    Totp,
    BackupCode { remaining: i64 },
    Webauthn,
}

impl FactorUsed {
    pub fn backup_codes_low(self) -> bool {
        matches!(self, FactorUsed::BackupCode { remaining } if backup_codes::is_low(remaining))
    }
}

/// The second-factor methods a user can log in with; empty when 2FA is off.
pub async fn methods(conn: &mut Connection, user_id: &str) -> anyhow::Result<Vec<&'static str>> {
    let mut methods = Vec::new();
    if rows::has_totp(conn, user_id).await? {
        methods.push("totp");
    }
    let has_passkeys = webauthn::credential_count(conn, user_id).await? > 0;
    if has_passkeys {
        methods.push("webauthn");
    }
    if !methods.is_empty() {
        methods.insert(
            methods.iter().position(|m| *m == "webauthn").unwrap_or(methods.len()),
            "backup_code",
        );
    }
    Ok(methods)
}

/// Checks a code against the user's factors inside the caller's transaction and uses it up: a
/// TOTP step is recorded with one conditional UPDATE (so the same or an earlier step is a
/// replay), a backup code is consumed with one conditional UPDATE. Using a backup code is
/// audited and emailed here, whatever flow it served.
pub async fn verify_second_factor(
    conn: &mut Connection,
    state: &AppState,
    user_id: &str,
    email: &str,
    factor: &SecondFactor,
    client: &ClientInfo,
    now: i64,
) -> anyhow::Result<Result<FactorUsed, CodeError>> {
    match factor {
        SecondFactor::Unreadable(_) => Ok(Err(CodeError::Invalid)),
        SecondFactor::Totp(code) => {
            let Some(sealed) = rows::totp_secret(conn, user_id).await? else {
                return Ok(Err(CodeError::Invalid));
            };
            let secret = state.keys.open_secret(user_id, &sealed.secret, &sealed.key_id)?;
            let Some(step) = totp::matching_step(&secret, code, now) else {
                return Ok(Err(CodeError::Invalid));
            };
            if rows::claim_totp_step(conn, user_id, step).await? {
                Ok(Ok(FactorUsed::Totp))
            } else {
                Ok(Err(CodeError::AlreadyUsed))
            }
        }
        SecondFactor::BackupCode(code) => {
            let hash = state.keys.backup_code_hash(user_id, code.canonical());
            if !rows::consume_backup_code(conn, user_id, &hash, now).await? {
                return Ok(Err(if rows::backup_code_exists(conn, user_id, &hash).await? {
                    CodeError::AlreadyUsed
                } else {
                    CodeError::Invalid
                }));
            }
            let remaining = rows::remaining_backup_codes(conn, user_id).await?;
            let event = Event::by_user("backup_code_used", user_id).with_detail(json!({"remaining": remaining}));
            audit::record(conn, now, client, event).await?;
            if backup_codes::is_low(remaining) {
                let event = Event::by_user("backup_codes_low", user_id).with_detail(json!({"remaining": remaining}));
                audit::record(conn, now, client, event).await?;
            }
            let notice = notices::backup_code_used(state, now, client, remaining);
            mail::queue(conn, &state.config, &state.keys, now, email, &notice).await?;
            Ok(Ok(FactorUsed::BackupCode { remaining }))
        }
    }
}

/// A new set of backup codes for the user, replacing every earlier one; answers the codes in
/// their display form (shown once, never stored in clear).
pub async fn issue_backup_codes(
    conn: &mut Connection,
    state: &AppState,
    user_id: &str,
    now: i64,
) -> anyhow::Result<Vec<String>> {
    let codes = backup_codes::generate_set(&mut OsRng);
    let hashes: Vec<Vec<u8>> = codes
        .iter()
        .map(|code| state.keys.backup_code_hash(user_id, code.canonical()))
        .collect();
    rows::replace_backup_codes(conn, user_id, &hashes, now).await?;
    Ok(codes.iter().map(|code| code.formatted()).collect())
}

/// What follows adding a second factor, whichever kind: when it turns 2FA on, a first set of
/// backup codes (answered once); and a session that existed only to enroll becomes `full`.
pub async fn factor_added(
    conn: &mut Connection,
    state: &AppState,
    client: &ClientInfo,
    session: &crate::accounts::sessions::CurrentSession,
    was_enabled: bool,
    now: i64,
) -> anyhow::Result<Option<Vec<String>>> {
    let backup_codes = if was_enabled {
        None
    } else {
        let codes = issue_backup_codes(conn, state, &session.user_id, now).await?;
        audit::record(
            conn,
            now,
            client,
            Event::by_user("backup_codes_generated", &session.user_id),
        )
        .await?;
        Some(codes)
    };
    if !session.is_full() {
        let full = crate::accounts::sessions::SessionState::Full;
        crate::store::sessions::set_state(conn, &session.id, full.as_str()).await?;
    }
    Ok(backup_codes)
}

/// Removes every second factor of the user (disable, recovery, admin reset).
pub async fn delete_all_factors(conn: &mut Connection, user_id: &str) -> anyhow::Result<()> {
    rows::delete_all_factors(conn, user_id).await?;
    webauthn::delete_all(conn, user_id).await?;
    Ok(())
}
