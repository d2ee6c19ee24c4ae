//! Administration pages: the audit log (and, with the recovery service, finding users and
//! resetting their two-step verification).

use askama::Template;
use axum::extract::{Query, State};
use axum::response::Response;
use serde::Deserialize;

use crate::app::AppState;
use crate::audit;
use crate::http::web::account::describe_event;
use crate::http::web::forms::encode_next;
use crate::http::web::page::{readable_time, render, Layout, PageError};
use crate::http::web::session::AdminPageSession;

const AUDIT_PAGE_SIZE: i64 = 50;

pub struct AuditRow {
    pub seq: i64,
    pub when: String,
    pub kind: String,
    pub what: &'static str,
    pub user_id: String,
    pub actor_id: String,
    pub ip: String,
    pub detail: String,
}

#[derive(Template)]
#[template(path = "pages/admin_audit.html")]
pub struct AuditPage {
    layout: Layout,
    user_id: String,
    events: Vec<AuditRow>,
    next_link: Option<String>,
}

#[derive(Deserialize)]
pub struct AuditQuery {
    user_id: Option<String>,
    after: Option<String>,
}

pub async fn audit_log(
    State(state): State<AppState>,
    AdminPageSession(session): AdminPageSession,
    Query(query): Query<AuditQuery>,
) -> Result<Response, PageError> {
    let user_id = query
        .user_id
        .map(|id| id.trim().to_string())
        .filter(|id| !id.is_empty());
    let after = query
        .after
        .and_then(|after| after.trim().parse::<i64>().ok())
        .unwrap_or(0)
        .max(0);
    let (events, next) = audit::page(&state.store, user_id.as_deref(), after, AUDIT_PAGE_SIZE).await?;
    let next_link = next.map(|next| match &user_id {
        Some(id) => format!("/admin/audit?user_id={}&after={next}", encode_next(id)),
        None => format!("/admin/audit?after={next}"),
    });
    let events = events
        .into_iter()
        .map(|event| AuditRow {
            seq: event.seq,
            when: readable_time(&event.at),
            what: describe_event(&event.kind),
            kind: event.kind,
            user_id: event.user_id.unwrap_or_default(),
            actor_id: event.actor_id.unwrap_or_default(),
            ip: event.ip.unwrap_or_default(),
            detail: if event.detail.as_object().is_some_and(|object| object.is_empty()) {
                String::new()
            } else {
                event.detail.to_string()
            },
        })
        .collect();
    render(&AuditPage {
        layout: Layout::signed_in(&state, &session, "Audit log"),
        user_id: user_id.unwrap_or_default(),
        events,
        next_link,
    })
}
