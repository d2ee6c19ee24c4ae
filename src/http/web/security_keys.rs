//! Security keys and passkeys (WebAuthn): list, add, remove. Adding needs the browser's WebAuthn
//! API, so this is the one page that needs JavaScript (static/webauthn.js); removing does not.

use askama::Template;
use axum::extract::{Query, State};
use axum::response::Response;
use serde::Deserialize;

use crate::accounts::sessions::CurrentSession;
use crate::app::AppState;
use crate::audit::ClientInfo;
use crate::http::error::ApiError;
use crate::http::web::auth::PageQuery;
use crate::http::web::forms::SessionForm;
use crate::http::web::page::{
    field_message, notice, readable_time, render, render_status, see_other, Layout, PageError,
};
use crate::http::web::session::{reauth_redirect, PageSession};
use crate::http::web::two_factor::codes_page;
use crate::twofactor::{enrollment, webauthn};

const PATH: &str = "/account/2fa/security-keys";

pub struct KeyRow {
    pub id: String,
    pub name: String,
    pub added: String,
}

#[derive(Template)]
#[template(path = "pages/security_keys.html")]
pub struct SecurityKeysPage {
    layout: Layout,
    csrf: String,
    keys: Vec<KeyRow>,
    is_full: bool,
    notice: Option<&'static str>,
    error: Option<String>,
}

async fn page_for(
    state: &AppState,
    session: &CurrentSession,
    error: Option<String>,
) -> Result<SecurityKeysPage, PageError> {
    let status = enrollment::status(state, session).await.map_err(ApiError::from)?;
    Ok(SecurityKeysPage {
        layout: Layout::signed_in(state, session, "Security keys"),
        csrf: state.keys.csrf_token(&session.token),
        keys: status
            .webauthn
            .into_iter()
            .map(|key| KeyRow {
                added: readable_time(&key.created_at),
                id: key.id,
                name: key.name,
            })
            .collect(),
        is_full: session.is_full(),
        notice: None,
        error,
    })
}

/// Adding a key needs sudo in a full session (as the API does); an enrolling session may add one.
fn needs_reauth(state: &AppState, session: &CurrentSession) -> bool {
    session.is_full() && !session.is_sudo(state.clock.unix())
}

pub async fn security_keys_page(
    State(state): State<AppState>,
    PageSession(session): PageSession,
    Query(query): Query<PageQuery>,
) -> Result<Response, PageError> {
    if needs_reauth(&state, &session) {
        return Err(reauth_redirect(PATH));
    }
    let mut page = page_for(&state, &session, None).await?;
    page.notice = notice(query.done.as_deref());
    render(&page)
}

#[derive(Deserialize)]
pub struct KeyForm {
    #[serde(default)]
    action: String,
    credential: Option<String>,
    key_id: Option<String>,
}

pub async fn change_security_keys(
    State(state): State<AppState>,
    client: ClientInfo,
    PageSession(session): PageSession,
    SessionForm(form): SessionForm<KeyForm>,
) -> Result<Response, PageError> {
    let result = match form.action.as_str() {
        "add" => {
            let credential = serde_json::from_str::<serde_json::Value>(form.credential.as_deref().unwrap_or_default())
                .unwrap_or(serde_json::Value::Null);
            match webauthn::finish_registration(&state, &client, &session, &credential).await {
                // The first factor turns 2FA on: its backup codes are shown now, once.
                Ok(registered) => match registered.backup_codes {
                    Some(codes) => return render(&codes_page(&state, &session, codes, true)),
                    None => Ok(format!("{PATH}?done=security_key_added")),
                },
                Err(error) => Err(error),
            }
        }
        "remove" if session.is_full() => {
            let id = form.key_id.unwrap_or_default();
            webauthn::remove(&state, &client, &session, &id)
                .await
                .map(|()| format!("{PATH}?done=security_key_removed"))
        }
        _ => return Err(PageError::bad_request("Unknown action.")),
    };
    match result.map_err(ApiError::from) {
        Ok(location) => Ok(see_other(&location)),
        Err(error) if error.code == "reauth_required" => Err(reauth_redirect(PATH)),
        Err(error) if error.status.is_client_error() => {
            let page = page_for(&state, &session, Some(field_message(&error))).await?;
            render_status(error.status, &page)
        }
        Err(error) => Err(error.into()),
    }
}
