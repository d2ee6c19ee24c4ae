//! Email: security notices are written to the `outbox` table in the same transaction as the
//! event, and a background sender delivers them (see `sender`). Bodies are sealed at rest because
//! they can hold links with tokens.

pub mod notices;
pub mod sender;

use crate::store::Connection;
use askama::Template;
use serde::{Deserialize, Serialize};

use crate::audit::ClientInfo;
use crate::clock::rfc3339;
use crate::config::Config;
use crate::crypto::Keys;
use crate::store::outbox;

/// A link button in an email.
#[derive(Debug, Clone)]
pub struct Action {
    pub label: String,
    pub url: String,
}

/// One security notice: what happened, the details of the event, and what to do.
#[derive(Debug, Clone, Default)]
pub struct Notice {
    pub subject: String,
    pub heading: String,
    pub paragraphs: Vec<String>,
    pub action: Option<Action>,
    pub secondary_action: Option<Action>,
    /// When, from where and on which device the event happened.
    pub event: Option<EventDetails>,
    /// What to do if it was not the user.
    pub not_you: Option<String>,
}

#[derive(Debug, Clone)]
pub struct EventDetails {
    pub when: String,
    pub ip: String,
    pub device: String,
}

impl EventDetails {
    pub fn new(now: i64, client: &ClientInfo) -> EventDetails {
        EventDetails {
            when: rfc3339(now).replace('T', " ").replace('Z', " UTC"),
            ip: client.ip.clone().unwrap_or_else(|| "unknown".into()),
            device: client.device(),
        }
    }
}

#[derive(Template)]
#[template(path = "email/notice.txt", escape = "none")]
struct NoticeText<'a> {
    product_name: &'a str,
    notice: &'a Notice,
}

#[derive(Template)]
#[template(path = "email/notice.html")]
struct NoticeHtml<'a> {
    product_name: &'a str,
    notice: &'a Notice,
}

/// The rendered parts, as sealed into the outbox.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Body {
    pub text: String,
    pub html: String,
}

pub fn render(product_name: &str, notice: &Notice) -> anyhow::Result<Body> {
    Ok(Body {
        text: NoticeText { product_name, notice }.render()?,
        html: NoticeHtml { product_name, notice }.render()?,
    })
}

/// Queues a notice to `recipient` inside the caller's transaction.
pub async fn queue(
    conn: &mut Connection,
    config: &Config,
    keys: &Keys,
    now: i64,
    recipient: &str,
    notice: &Notice,
) -> anyhow::Result<()> {
    let body = render(&config.product_name, notice)?;
    let id = uuid::Uuid::new_v4().to_string();
    let sealed = keys.seal_outbox(&id, &serde_json::to_vec(&body)?);
    let subject = format!("[{}] {}", config.product_name, notice.subject);
    outbox::insert(conn, &id, recipient, &subject, &sealed, now).await?;
    Ok(())
}
