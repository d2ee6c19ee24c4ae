//! The user's choice about email recovery. Turning it off means "no recovery by email": backup
//! codes and the administrator are then the only ways back in, and a mailbox thief gets nothing.

use serde::Serialize;
use serde_json::json;

use super::cancel::{cancel_pending, CancelledBy};
use super::{notices, RecoveryError};
use crate::accounts::sessions::CurrentSession;
use crate::app::AppState;
use crate::audit::{self, ClientInfo, Event};
use crate::mail;
use crate::store::users;

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RecoverySettings {
    /// As sent: whether a lost second factor can be recovered by email.
    pub email_recovery: bool,
    /// The same, under the name `GET /me/2fa` uses.
    pub email_recovery_enabled: bool,
    /// What the setting means for the user, in plain words.
    pub explanation: String,
}

impl RecoverySettings {
    pub fn new(email_recovery: bool) -> RecoverySettings {
        RecoverySettings {
            email_recovery,
            email_recovery_enabled: email_recovery,
            explanation: if email_recovery {
                "Recovery by email is on: if you lose your second factor and your backup codes, you can recover the account \
                 from a link we email you, after a waiting period during which you are notified and can cancel."
            } else {
                "Recovery by email is off: if you lose your second factor, only your backup codes or an administrator can \
                 get you back in. Keep your backup codes somewhere safe."
            }
            .to_string(),
        }
    }
}

/// Turns email recovery on or off (sudo). Turning it off also cancels a pending recovery.
pub async fn set_email_recovery(
    state: &AppState,
    client: &ClientInfo,
    session: &CurrentSession,
    enabled: bool,
) -> Result<RecoverySettings, RecoveryError> {
    let now = state.clock.unix();
    if !session.is_sudo(now) {
        return Err(RecoveryError::ReauthRequired);
    }
    let mut tx = state.store.begin().await?;
    let was_enabled = users::find_by_id(&mut tx, &session.user_id)
        .await?
        .map(|user| user.email_recovery_enabled != 0)
        .ok_or(RecoveryError::NotFound)?;
    if was_enabled != enabled {
        users::set_email_recovery(&mut tx, &session.user_id, enabled).await?;
        if !enabled {
            cancel_pending(
                &mut tx,
                state,
                &session.user_id,
                &session.email,
                client,
                now,
                CancelledBy::EmailRecoveryTurnedOff,
            )
            .await?;
        }
        let event = Event::by_user("recovery_settings_changed", &session.user_id)
            .with_detail(json!({"email_recovery": enabled}));
        let notice = notices::email_recovery_changed(state, now, client, enabled);
        mail::queue(&mut tx, &state.config, &state.keys, now, &session.email, &notice).await?;
        audit::record(&mut tx, now, client, event).await?;
    }
    tx.commit().await?;
    Ok(RecoverySettings::new(enabled))
}
