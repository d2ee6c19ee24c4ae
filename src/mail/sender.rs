//! Delivers queued emails: claims due rows one at a time (a conditional UPDATE, so two instances
//! never send the same email), sends them, wipes delivered bodies, and retries failures with
//! exponential back-off up to a bound. State lives in the database, so a restart loses nothing.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use lettre::message::{header::ContentType, Mailbox, MultiPart, SinglePart};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::app::AppState;
use crate::mail::Body;
use crate::store::outbox;

/// Attempts before an email is given up (with an error log and a metric).
pub const MAX_ATTEMPTS: i64 = 12;
/// A claimed email is retried by anyone after this many seconds if its sender died (a crash
/// between claim and send). Every send is cut off after `send_timeout`, well within the lease,
/// so a live sender never loses its claim to another instance mid-send.
const CLAIM_LEASE_SECONDS: i64 = 40;

/// The whole send's cut-off: SMTP's own per-step timeout plus room for the steps before it.
fn send_timeout(smtp_timeout: Duration) -> Duration {
    smtp_timeout + Duration::from_secs(5)
}

pub struct OutgoingEmail<'a> {
    pub id: &'a str,
    pub recipient: &'a str,
    pub subject: &'a str,
    pub body: &'a Body,
}

#[async_trait]
pub trait MailTransport: Send + Sync {
    async fn send(&self, email: &OutgoingEmail<'_>) -> Result<(), String>;
    fn describe(&self) -> String;
}

pub fn transport_for(state_config: &crate::config::Config) -> anyhow::Result<Arc<dyn MailTransport>> {
    let from: Mailbox = state_config
        .mail_from
        .parse()
        .with_context(|| "LATCHKEY_MAIL_FROM: not a valid mailbox".to_string())?;
    match &state_config.smtp_url {
        Some(url) => {
            let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(&url.0)
                .map_err(|_| anyhow::anyhow!("LATCHKEY_SMTP_URL: not a usable SMTP URL"))?
                .timeout(Some(state_config.smtp_timeout))
                .build();
            let host = url::Url::parse(&url.0)
                .ok()
                .and_then(|parsed| {
                    parsed
                        .host_str()
                        .map(|host| format!("{host}:{}", parsed.port().unwrap_or(25)))
                })
                .unwrap_or_default();
            Ok(Arc::new(SmtpMail { transport, from, host }))
        }
        None => Ok(Arc::new(FileMail {
            directory: state_config.data_dir.join("mail"),
            from,
        })),
    }
}

fn build_message(from: &Mailbox, email: &OutgoingEmail<'_>) -> Result<Message, String> {
    let to: Mailbox = email
        .recipient
        .parse()
        .map_err(|_| "recipient is not a valid address".to_string())?;
    Message::builder()
        .from(from.clone())
        .to(to)
        .subject(email.subject)
        .message_id(Some(format!("<{}@latchkey>", email.id)))
        .multipart(
            MultiPart::alternative()
                .singlepart(
                    SinglePart::builder()
                        .header(ContentType::TEXT_PLAIN)
                        .body(email.body.text.clone()),
                )
                .singlepart(
                    SinglePart::builder()
                        .header(ContentType::TEXT_HTML)
                        .body(email.body.html.clone()),
                ),
        )
        .map_err(|error| format!("building message: {error}"))
}

struct SmtpMail {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    host: String,
}

#[async_trait]
impl MailTransport for SmtpMail {
    async fn send(&self, email: &OutgoingEmail<'_>) -> Result<(), String> {
        let message = build_message(&self.from, email)?;
        self.transport
            .send(message)
            .await
            .map(|_| ())
            .map_err(|error| format!("SMTP: {error}"))
    }

    fn describe(&self) -> String {
        format!("SMTP to {}", self.host)
    }
}

/// With no SMTP configured, each email becomes an .eml file, so the default setup works offline.
struct FileMail {
    directory: PathBuf,
    from: Mailbox,
}

#[async_trait]
impl MailTransport for FileMail {
    async fn send(&self, email: &OutgoingEmail<'_>) -> Result<(), String> {
        let message = build_message(&self.from, email)?;
        tokio::fs::create_dir_all(&self.directory)
            .await
            .map_err(|error| error.to_string())?;
        let path = self.directory.join(format!("{}.eml", email.id));
        tokio::fs::write(&path, message.formatted())
            .await
            .map_err(|error| error.to_string())?;
        // The log names the file and subject, never the body: it may hold a token.
        tracing::info!(file = %path.display(), subject = email.subject, "email written to file (no SMTP configured)");
        Ok(())
    }

    fn describe(&self) -> String {
        format!("files in {}", self.directory.display())
    }
}

/// Delay before attempt `attempts + 1`: base × 2^attempts, at most an hour.
pub fn retry_delay(base: Duration, attempts: i64) -> Duration {
    let factor = 1u32 << attempts.clamp(0, 16);
    base.saturating_mul(factor)
        .min(Duration::from_secs(3600))
        .max(Duration::from_millis(100))
}

/// Delivers everything due now; answers how many were sent.
pub async fn deliver_due(state: &AppState) -> anyhow::Result<usize> {
    let now = state.clock.unix();
    let ids = {
        let mut conn = state.store.read().await?;
        outbox::due(&mut conn, now, 50).await?
    };
    let mut sent = 0;
    for id in ids {
        let claimed = {
            let mut tx = state.store.begin().await?;
            let claimed = outbox::claim(&mut tx, &id, now, CLAIM_LEASE_SECONDS).await?;
            tx.commit().await?;
            claimed
        };
        let Some(row) = claimed else { continue };
        let outcome = match row
            .body
            .as_deref()
            .map(|sealed| state.keys.open_outbox(&row.id, sealed))
        {
            Some(Ok(plain)) => match serde_json::from_slice::<Body>(&plain) {
                Ok(body) => {
                    let email = OutgoingEmail {
                        id: &row.id,
                        recipient: &row.recipient,
                        subject: &row.subject,
                        body: &body,
                    };
                    let cut_off = send_timeout(state.config.smtp_timeout);
                    tokio::time::timeout(cut_off, state.mail_transport.send(&email))
                        .await
                        .unwrap_or_else(|_| Err(format!("no answer within {cut_off:?}")))
                }
                Err(_) => Err("queued body is unreadable".to_string()),
            },
            _ => Err("queued body does not decrypt (master key changed?)".to_string()),
        };
        let mut tx = state.store.begin().await?;
        let now = state.clock.unix();
        match outcome {
            Ok(()) => {
                outbox::mark_sent(&mut tx, &row.id, now).await?;
                metrics::counter!("latchkey_emails_sent_total").increment(1);
                sent += 1;
            }
            Err(error) if row.attempts + 1 >= MAX_ATTEMPTS => {
                tracing::error!(email_id = %row.id, attempts = row.attempts + 1, %error, "giving up on an email");
                metrics::counter!("latchkey_emails_failed_total").increment(1);
                outbox::mark_failed(&mut tx, &row.id, now, &error).await?;
            }
            Err(error) => {
                let delay = retry_delay(state.config.background_interval, row.attempts);
                tracing::warn!(email_id = %row.id, attempts = row.attempts + 1, %error, retry_in_ms = delay.as_millis() as u64, "email delivery failed; will retry");
                metrics::counter!("latchkey_email_retries_total").increment(1);
                let next = now + (delay.as_millis() as i64 + 999) / 1000;
                outbox::mark_retry(&mut tx, &row.id, next, &error).await?;
            }
        }
        tx.commit().await?;
    }
    Ok(sent)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_send_ends_within_the_claim_lease() {
        let longest = send_timeout(crate::config::MAX_SMTP_TIMEOUT);
        assert!(longest.as_secs() as i64 * 3 / 2 <= CLAIM_LEASE_SECONDS, "{longest:?}");
    }

    #[test]
    fn retries_back_off_exponentially_up_to_an_hour() {
        let base = Duration::from_secs(1);
        assert_eq!(retry_delay(base, 0), Duration::from_secs(1));
        assert_eq!(retry_delay(base, 3), Duration::from_secs(8));
        assert_eq!(retry_delay(base, 40), Duration::from_secs(3600));
    }
}
