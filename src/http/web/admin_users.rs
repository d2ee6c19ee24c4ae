//! Administration: find users, see their two-step state and recent events, reset their two-step
//! verification with a reason (or ask a second administrator to approve it), approve requests.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;

use crate::app::AppState;
use crate::audit::{self, ClientInfo};
use crate::http::error::ApiError;
use crate::http::web::account::{describe_event, ActivityRow};
use crate::http::web::forms::{encode_next, SessionForm};
use crate::http::web::page::{notice, readable_time, render, render_status, see_other, Layout, PageError};
use crate::http::web::session::AdminPageSession;
use crate::recovery::admin::{self, Actor, ResetOutcome, ResetRequestView, UserSummary};

/// Events shown on a user's page.
const USER_EVENTS_SHOWN: i64 = 20;

#[derive(Template)]
#[template(path = "pages/admin_users.html")]
pub struct UsersPage {
    layout: Layout,
    csrf: String,
    query: String,
    users: Vec<UserSummary>,
    next_link: Option<String>,
    requests: Vec<ResetRequestView>,
    admin_id: String,
    notice: Option<&'static str>,
    error: Option<String>,
}

#[derive(Deserialize)]
pub struct UsersQuery {
    email: Option<String>,
    page: Option<String>,
    done: Option<String>,
}

async fn users_page_for(
    state: &AppState,
    session: &crate::accounts::sessions::CurrentSession,
    query: UsersQuery,
    error: Option<String>,
) -> Result<UsersPage, PageError> {
    let fragment = query.email.unwrap_or_default().trim().to_string();
    let page = query
        .page
        .and_then(|page| page.parse::<i64>().ok())
        .unwrap_or(1)
        .clamp(1, 100_000);
    let found = admin::find_users(state, &fragment, page)
        .await
        .map_err(ApiError::from)?;
    let requests = admin::open_requests(state).await.map_err(ApiError::from)?;
    Ok(UsersPage {
        layout: Layout::signed_in(state, session, "Administration"),
        csrf: state.keys.csrf_token(&session.token),
        next_link: found
            .next_page
            .map(|next| format!("/admin?email={}&page={next}", encode_next(&fragment))),
        query: fragment,
        users: found.users,
        requests,
        admin_id: session.user_id.clone(),
        notice: notice(query.done.as_deref()),
        error,
    })
}

pub async fn users(
    State(state): State<AppState>,
    AdminPageSession(session): AdminPageSession,
    Query(query): Query<UsersQuery>,
) -> Result<Response, PageError> {
    render(&users_page_for(&state, &session, query, None).await?)
}

#[derive(Deserialize)]
pub struct ApproveForm {
    #[serde(default)]
    request_id: String,
}

/// The approvals listed on `/admin` post back to it.
pub async fn approve(
    State(state): State<AppState>,
    client: ClientInfo,
    AdminPageSession(session): AdminPageSession,
    SessionForm(form): SessionForm<ApproveForm>,
) -> Result<Response, PageError> {
    match admin::approve(&state, &client, &session, &form.request_id)
        .await
        .map_err(ApiError::from)
    {
        Ok(()) => Ok(see_other("/admin?done=reset_approved")),
        Err(error) if error.status.is_client_error() => {
            let query = UsersQuery {
                email: None,
                page: None,
                done: None,
            };
            let page = users_page_for(&state, &session, query, Some(error.message.clone())).await?;
            render_status(error.status, &page)
        }
        Err(error) => Err(error.into()),
    }
}

#[derive(Template)]
#[template(path = "pages/admin_user.html")]
pub struct UserPage {
    layout: Layout,
    csrf: String,
    user: UserSummary,
    created: String,
    is_self: bool,
    approvals: u8,
    events: Vec<ActivityRow>,
    reason: String,
    reason_error: Option<String>,
    notice: Option<&'static str>,
}

async fn user_page_for(
    state: &AppState,
    session: &crate::accounts::sessions::CurrentSession,
    user_id: &str,
) -> Result<UserPage, PageError> {
    let user = match admin::find_user(state, user_id).await.map_err(ApiError::from) {
        Ok(user) => user,
        Err(error) if error.status == StatusCode::NOT_FOUND => return Err(PageError::not_found()),
        Err(error) => return Err(error.into()),
    };
    let events = audit::recent_for_user(&state.store, &user.id, USER_EVENTS_SHOWN)
        .await?
        .into_iter()
        .map(|event| ActivityRow {
            when: readable_time(&event.at),
            what: describe_event(&event.kind),
            ip: event.ip.unwrap_or_default(),
        })
        .collect();
    Ok(UserPage {
        layout: Layout::signed_in(state, session, "User"),
        csrf: state.keys.csrf_token(&session.token),
        is_self: user.id == session.user_id,
        approvals: state.config.admin_reset_approvals,
        created: readable_time(&user.created_at),
        user,
        events,
        reason: String::new(),
        reason_error: None,
        notice: None,
    })
}

pub async fn user(
    State(state): State<AppState>,
    AdminPageSession(session): AdminPageSession,
    Path(user_id): Path<String>,
    Query(query): Query<UsersQuery>,
) -> Result<Response, PageError> {
    let mut page = user_page_for(&state, &session, &user_id).await?;
    page.notice = notice(query.done.as_deref());
    render(&page)
}

#[derive(Deserialize)]
pub struct ResetForm {
    reason: Option<String>,
}

pub async fn reset(
    State(state): State<AppState>,
    client: ClientInfo,
    AdminPageSession(session): AdminPageSession,
    Path(user_id): Path<String>,
    SessionForm(form): SessionForm<ResetForm>,
) -> Result<Response, PageError> {
    let here = format!("/admin/users/{}", encode_next(&user_id));
    match admin::reset_two_factor(
        &state,
        &client,
        Actor::Admin(&session),
        &user_id,
        form.reason.as_deref(),
    )
    .await
    .map_err(ApiError::from)
    {
        Ok(ResetOutcome::Reset) => Ok(see_other(&format!("{here}?done=two_factor_reset"))),
        Ok(ResetOutcome::AwaitingApproval { .. }) => Ok(see_other(&format!("{here}?done=reset_requested"))),
        Err(error) if error.status == StatusCode::NOT_FOUND => Err(PageError::not_found()),
        Err(error) if error.status.is_client_error() => {
            let mut page = user_page_for(&state, &session, &user_id).await?;
            page.reason = form.reason.unwrap_or_default();
            page.reason_error = Some(error.message.clone());
            render_status(error.status, &page)
        }
        Err(error) => Err(error.into()),
    }
}
