//! The second step of login with a passkey or security key: options for the login challenge, then
//! the signed assertion, which completes the challenge exactly as a code does.

use anyhow::Context;
use serde_json::{json, Value};
use webauthn_rs::prelude::{
    PublicKeyCredential, RequestChallengeResponse, SecurityKey, SecurityKeyAuthentication, Uuid, Webauthn,
    WebauthnError,
};

use super::{encode_credential_id, notices, relying_party, rows, user_handle, CEREMONY_LIFETIME_SECONDS};
use crate::app::AppState;
use crate::audit::{self, ClientInfo, Event};
use crate::mail;
use crate::twofactor::challenge::{self, ChallengeError, LoginCompleted, OpenChallenge};
use crate::twofactor::{CodeError, FactorUsed};

/// Answers the options for `navigator.credentials.get()` for a live login challenge, allowing
/// the account's keys. Asking again replaces the earlier options.
pub async fn start(
    state: &AppState,
    client: &ClientInfo,
    token: &str,
) -> Result<RequestChallengeResponse, ChallengeError> {
    let now = state.clock.unix();
    let relying_party = relying_party(state).map_err(|_| ChallengeError::NoSecurityKey)?;
    let OpenChallenge {
        mut tx,
        challenge: login_challenge,
    } = challenge::open(state, client, token, now).await?;
    let keys = stored_keys(&rows::list_credentials(&mut tx, &login_challenge.user_id).await?)?;
    if keys.is_empty() {
        return Err(ChallengeError::NoSecurityKey);
    }
    let (options, authentication) = relying_party
        .start_securitykey_authentication(&keys)
        .context("starting a WebAuthn authentication")?;
    rows::delete_expired_ceremonies(&mut tx, now).await?;
    rows::replace_ceremony(
        &mut tx,
        &Uuid::new_v4().to_string(),
        &login_challenge.user_id,
        rows::CeremonyOwner::Challenge(&login_challenge.id),
        None,
        &serde_json::to_string(&authentication).context("storing a WebAuthn authentication")?,
        now,
        (now + CEREMONY_LIFETIME_SECONDS).min(login_challenge.expires_at),
    )
    .await?;
    tx.commit().await?;
    Ok(options)
}

fn stored_keys(rows: &[rows::CredentialRow]) -> anyhow::Result<Vec<SecurityKey>> {
    rows.iter()
        .map(|row| serde_json::from_str(&row.credential).context("reading a stored WebAuthn credential"))
        .collect()
}

/// A verified assertion, ready to be recorded.
struct Verified {
    row: rows::CredentialRow,
    counter: i64,
    updated_record: String,
}

/// Why an assertion was refused.
enum Refusal {
    Invalid(String),
    /// The signature is good but the counter did not move forward: two copies of the key exist.
    PossibleClone {
        row: rows::CredentialRow,
        counter: i64,
    },
}

/// Completes the login challenge with a signed assertion. A refused assertion counts against the
/// challenge, the account and the client like a wrong code.
pub async fn finish(
    state: &AppState,
    client: &ClientInfo,
    token: &str,
    credential: &Value,
) -> Result<LoginCompleted, ChallengeError> {
    let now = state.clock.unix();
    let relying_party = relying_party(state).map_err(|_| ChallengeError::InvalidCredential)?;
    let mut opened = challenge::open(state, client, token, now).await?;
    let owner = rows::CeremonyOwner::Challenge(&opened.challenge.id);
    let Some(ceremony) = rows::find_ceremony(&mut opened.tx, owner, now).await? else {
        // Nothing was asked of a key yet (no start): there is no answer to check.
        return Err(ChallengeError::InvalidCredential);
    };
    let keys = rows::list_credentials(&mut opened.tx, &opened.challenge.user_id).await?;
    let authentication: SecurityKeyAuthentication =
        serde_json::from_str(&ceremony.state).context("reading a stored WebAuthn authentication")?;
    let verified = match verify(
        &relying_party,
        &authentication,
        credential,
        keys,
        &opened.challenge.user_id,
    )? {
        Ok(verified) => verified,
        Err(refusal) => return refuse(opened, state, client, refusal, now).await,
    };
    if !rows::consume_ceremony(&mut opened.tx, &ceremony.id, now).await? {
        return Err(ChallengeError::Expired);
    }
    let recorded = rows::record_use(
        &mut opened.tx,
        &verified.row.id,
        verified.row.sign_count,
        verified.counter,
        &verified.updated_record,
        now,
    )
    .await?;
    if !recorded {
        // Another login with this key moved its counter meanwhile; this one changes nothing.
        return Err(ChallengeError::InvalidCredential);
    }
    challenge::finish(opened, state, client, "webauthn", FactorUsed::Webauthn, now).await
}

fn verify(
    relying_party: &Webauthn,
    authentication: &SecurityKeyAuthentication,
    credential: &Value,
    keys: Vec<rows::CredentialRow>,
    user_id: &str,
) -> anyhow::Result<Result<Verified, Refusal>> {
    let Ok(credential) = serde_json::from_value::<PublicKeyCredential>(credential.clone()) else {
        return Ok(Err(Refusal::Invalid("unreadable".into())));
    };
    let credential_id = encode_credential_id(credential.get_credential_id());
    let Some(row) = keys.into_iter().find(|row| row.credential_id == credential_id) else {
        return Ok(Err(Refusal::Invalid("unknown key".into())));
    };
    if let Some(handle) = credential.get_user_unique_id() {
        if handle != user_handle(user_id).as_bytes() {
            return Ok(Err(Refusal::Invalid("another account's key".into())));
        }
    }
    let result = match relying_party.finish_securitykey_authentication(&credential, authentication) {
        Ok(result) => result,
        Err(WebauthnError::CredentialPossibleCompromise) => {
            let counter = counter_of(&credential);
            return Ok(Err(Refusal::PossibleClone { row, counter }));
        }
        Err(error) => return Ok(Err(Refusal::Invalid(error.to_string()))),
    };
    let counter = i64::from(result.counter());
    // The options were made from the counter as it was then; check against the counter as it is
    // now too, in case another login used the key in between.
    if (counter > 0 || row.sign_count > 0) && counter <= row.sign_count {
        return Ok(Err(Refusal::PossibleClone { row, counter }));
    }
    let mut key: SecurityKey = serde_json::from_str(&row.credential).context("reading a stored WebAuthn credential")?;
    key.update_credential(&result);
    Ok(Ok(Verified {
        updated_record: serde_json::to_string(&key)?,
        row,
        counter,
    }))
}

/// The signature counter an assertion claims (bytes 33..37 of the authenticator data).
fn counter_of(credential: &PublicKeyCredential) -> i64 {
    let data: &[u8] = credential.response.authenticator_data.as_ref();
    data.get(33..37)
        .and_then(|bytes| <[u8; 4]>::try_from(bytes).ok())
        .map(|bytes| i64::from(u32::from_be_bytes(bytes)))
        .unwrap_or(0)
}

async fn refuse(
    opened: OpenChallenge,
    state: &AppState,
    client: &ClientInfo,
    refusal: Refusal,
    now: i64,
) -> Result<LoginCompleted, ChallengeError> {
    let OpenChallenge {
        mut tx,
        challenge: login_challenge,
    } = opened;
    match &refusal {
        Refusal::Invalid(reason) => tracing::info!(reason, "WebAuthn assertion refused"),
        Refusal::PossibleClone { row, counter } => {
            tracing::warn!(
                credential = row.id,
                "WebAuthn counter went backwards: possible cloned key"
            );
            let event = Event::by_user("webauthn_possible_clone", &login_challenge.user_id).with_detail(json!({
                "credential": row.id,
                "name": row.name,
                "counter": counter,
                "stored_counter": row.sign_count,
            }));
            audit::record(&mut tx, now, client, event).await?;
            let notice = notices::possible_cloned_key(state, now, client, &row.name);
            mail::queue(
                &mut tx,
                &state.config,
                &state.keys,
                now,
                &login_challenge.email,
                &notice,
            )
            .await?;
        }
    }
    challenge::record_failure(
        &mut tx,
        state,
        client,
        &login_challenge.user_id,
        &login_challenge.email,
        &login_challenge.id,
        "webauthn",
        CodeError::Invalid,
        now,
    )
    .await?;
    tx.commit().await?;
    Err(ChallengeError::InvalidCredential)
}
