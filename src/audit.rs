//! The tamper-evident audit log: every security event, in the same transaction as the change it
//! describes, each row holding SHA-256(previous hash || canonical encoding of the row).

use crate::store::Connection;
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::clock::rfc3339;
use crate::store::audit::{self as rows, AuditRow};
use crate::store::Store;

/// Who did it and from where, carried from the request to the event and the email.
#[derive(Debug, Clone, Default)]
pub struct ClientInfo {
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

impl ClientInfo {
    pub fn cli() -> ClientInfo {
        ClientInfo {
            ip: None,
            user_agent: Some("latchkey command line".into()),
        }
    }

    /// A short human description of the device, for emails and the account page.
    pub fn device(&self) -> String {
        describe_user_agent(self.user_agent.as_deref())
    }
}

/// One event to record. `user_id` is the subject (whose account), `actor_id` who acted.
pub struct Event<'a> {
    pub kind: &'static str,
    pub user_id: Option<&'a str>,
    pub actor_id: Option<&'a str>,
    pub detail: Value,
}

impl<'a> Event<'a> {
    /// An event the user did to their own account.
    pub fn by_user(kind: &'static str, user_id: &'a str) -> Event<'a> {
        Event {
            kind,
            user_id: Some(user_id),
            actor_id: Some(user_id),
            detail: Value::Object(Default::default()),
        }
    }

    pub fn with_detail(mut self, detail: Value) -> Event<'a> {
        self.detail = detail;
        self
    }
}

/// Appends an event inside the caller's transaction.
pub async fn record(conn: &mut Connection, now: i64, client: &ClientInfo, event: Event<'_>) -> anyhow::Result<()> {
    record_all(conn, now, client, vec![event]).await
}

/// Appends several events of one change with a single turn of the chain's head.
pub async fn record_all(
    conn: &mut Connection,
    now: i64,
    client: &ClientInfo,
    events: Vec<Event<'_>>,
) -> anyhow::Result<()> {
    if events.is_empty() {
        return Ok(());
    }
    let count = events.len() as i64;
    let mut rows: Vec<AuditRow> = events
        .into_iter()
        .map(|event| AuditRow {
            seq: 0,
            at: now,
            kind: event.kind.to_string(),
            user_id: event.user_id.map(str::to_string),
            actor_id: event.actor_id.map(str::to_string),
            ip: client.ip.clone(),
            user_agent: client
                .user_agent
                .as_deref()
                .map(|agent| agent.chars().take(300).collect()),
            detail: event.detail.to_string(),
            hash: String::new(),
        })
        .collect();
    if let Some((head_seq, head_hash)) = conn.take_cached_audit_head().await {
        let last = link(&mut rows, head_seq + 1, head_hash);
        if rows::append_if_head_is(conn, head_seq, &rows).await? {
            conn.audit_head_after_commit(last);
            return Ok(());
        }
    }
    let (last_seq, previous_hash) = rows::advance_head(conn, count).await?;
    let last = link(&mut rows, last_seq - count + 1, previous_hash);
    rows::insert_all(conn, &rows).await?;
    rows::set_head_hash(conn, &last.1).await?;
    conn.audit_head_after_commit(last);
    Ok(())
}

/// Numbers the rows from `first_seq` and chains each to the one before, the first to
/// `previous_hash`; answers the head they leave.
fn link(rows: &mut [AuditRow], first_seq: i64, mut previous_hash: String) -> (i64, String) {
    let mut seq = first_seq - 1;
    for row in rows.iter_mut() {
        seq += 1;
        row.seq = seq;
        row.hash = chain_hash(&previous_hash, row);
        previous_hash = row.hash.clone();
    }
    (seq, previous_hash)
}

/// SHA-256 over the previous hash and a canonical JSON array of the row's fields.
fn chain_hash(previous_hash: &str, row: &AuditRow) -> String {
    let canonical = serde_json::json!([
        row.seq,
        row.at,
        row.kind,
        row.user_id,
        row.actor_id,
        row.ip,
        row.user_agent,
        row.detail
    ]);
    let mut hasher = Sha256::new();
    hasher.update(previous_hash.as_bytes());
    hasher.update(canonical.to_string().as_bytes());
    hex::encode(hasher.finalize())
}

pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verification {
    pub events: i64,
    /// The first sequence number whose link does not hold: changed, inserted or deleted rows.
    pub first_broken: Option<i64>,
}

/// Walks the whole chain from the start.
pub async fn verify(store: &Store) -> anyhow::Result<Verification> {
    let mut conn = store.read().await?;
    let mut previous_hash = GENESIS_HASH.to_string();
    let mut expected_seq = 1;
    let mut events = 0;
    loop {
        let page = rows::page(&mut conn, None, expected_seq - 1, 1000).await?;
        if page.is_empty() {
            break;
        }
        for row in page {
            if row.seq != expected_seq || chain_hash(&previous_hash, &row) != row.hash {
                return Ok(Verification {
                    events,
                    first_broken: Some(expected_seq.min(row.seq)),
                });
            }
            previous_hash = row.hash;
            expected_seq += 1;
            events += 1;
        }
    }
    // Rows deleted from the end leave the head pointing past the last row.
    let (head_seq, head_hash) = rows::head(&mut conn).await?;
    if head_seq != events || head_hash != previous_hash {
        return Ok(Verification {
            events,
            first_broken: Some(events + 1),
        });
    }
    Ok(Verification {
        events,
        first_broken: None,
    })
}

/// An event as the API and the export show it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct EventView {
    pub seq: i64,
    pub at: String,
    pub kind: String,
    pub user_id: Option<String>,
    pub actor_id: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    #[schema(value_type = Object)]
    pub detail: Value,
    pub hash: String,
}

impl From<AuditRow> for EventView {
    fn from(row: AuditRow) -> EventView {
        EventView {
            seq: row.seq,
            at: rfc3339(row.at),
            kind: row.kind,
            user_id: row.user_id,
            actor_id: row.actor_id,
            ip: row.ip,
            user_agent: row.user_agent,
            detail: serde_json::from_str(&row.detail).unwrap_or(Value::Null),
            hash: row.hash,
        }
    }
}

/// Events with `seq > after` (optionally about one user), and the cursor of the next page.
pub async fn page(
    store: &Store,
    user_id: Option<&str>,
    after: i64,
    limit: i64,
) -> anyhow::Result<(Vec<EventView>, Option<i64>)> {
    let mut conn = store.read().await?;
    let rows = rows::page(&mut conn, user_id, after, limit + 1).await?;
    let has_more = rows.len() as i64 > limit;
    let events: Vec<EventView> = rows.into_iter().take(limit as usize).map(EventView::from).collect();
    let next = if has_more {
        events.last().map(|event| event.seq)
    } else {
        None
    };
    Ok((events, next))
}

pub async fn recent_for_user(store: &Store, user_id: &str, limit: i64) -> anyhow::Result<Vec<EventView>> {
    let mut conn = store.read().await?;
    Ok(rows::recent_for_user(&mut conn, user_id, limit)
        .await?
        .into_iter()
        .map(EventView::from)
        .collect())
}

fn describe_user_agent(agent: Option<&str>) -> String {
    let Some(agent) = agent else {
        return "an unknown device".into();
    };
    let browser = ["Edg/", "Firefox/", "Chrome/", "Safari/", "curl/"]
        .iter()
        .find(|marker| agent.contains(*marker))
        .map(|marker| match *marker {
            "Edg/" => "Edge",
            "Firefox/" => "Firefox",
            "Chrome/" => "Chrome",
            "Safari/" => "Safari",
            _ => "curl",
        });
    let system = ["Android", "iPhone", "iPad", "Windows", "Mac OS X", "Linux"]
        .iter()
        .find(|marker| agent.contains(*marker))
        .map(|marker| if *marker == "Mac OS X" { "macOS" } else { marker });
    match (browser, system) {
        (Some(browser), Some(system)) => format!("{browser} on {system}"),
        (Some(browser), None) => browser.to_string(),
        (None, Some(system)) => system.to_string(),
        (None, None) => agent.chars().take(60).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(seq: i64) -> AuditRow {
        AuditRow {
            seq,
            at: 1,
            kind: "signup".into(),
            user_id: Some("u".into()),
            actor_id: None,
            ip: None,
            user_agent: None,
            detail: "{}".into(),
            hash: String::new(),
        }
    }

    #[test]
    fn hash_covers_every_field_and_the_previous_hash() {
        let base = chain_hash(GENESIS_HASH, &row(1));
        assert_eq!(base.len(), 64);
        assert_ne!(base, chain_hash(&"1".repeat(64), &row(1)));
        let mut changed = row(1);
        changed.detail = r#"{"reason":"x"}"#.into();
        assert_ne!(base, chain_hash(GENESIS_HASH, &changed));
        let mut changed = row(1);
        changed.ip = Some("10.0.0.1".into());
        assert_ne!(base, chain_hash(GENESIS_HASH, &changed));
    }

    #[test]
    fn devices_are_described_briefly() {
        let chrome =
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36";
        assert_eq!(describe_user_agent(Some(chrome)), "Chrome on Linux");
        assert_eq!(describe_user_agent(None), "an unknown device");
    }
}
