//! The outbox: the durable queue every mail (notices and links) and every
//! back-channel logout notice goes through, and its delivery: mail over SMTP or,
//! without SMTP, as `.eml` files in the outbox folder (contract §10.1); logout
//! tokens posted to the clients' `backchannel_logout_uri`.
//!
//! A use case only queues a mail (one row, in the database every instance shares);
//! the delivery loop of each instance claims due mails, hands them over, and on
//! failure schedules a retry with a growing delay, so neither an SMTP outage nor a
//! restart loses one.

use crate::error::AppResult;
use crate::{App, MailSettings};
use lettre::message::{Mailbox, MultiPart};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tessera_core::{OutboxKind, QueuedMail};
use uuid::Uuid;

/// Mails handed over per pass.
const BATCH: u32 = 20;
/// How long a claimed mail is reserved for the instance delivering it: longer
/// than a whole pass can take (every mail of the batch using its full SMTP time
/// limit), so no other instance takes a mail that is still being sent.
const LEASE_SECS: i64 = BATCH as i64 * SMTP_TIMEOUT.as_secs() as i64 + 60;
/// How often the delivery loop looks for due mail when nothing wakes it.
const POLL: Duration = Duration::from_secs(1);
/// First retry delay; it doubles with each failed attempt, up to [`MAX_RETRY_SECS`].
const FIRST_RETRY_SECS: i64 = 30;
const MAX_RETRY_SECS: i64 = 3_600;
/// The SMTP conversation's time limit (and a back-channel logout request's).
const SMTP_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a client's back-channel logout endpoint may take to answer: short,
/// since mail waits behind it in the same outbox.
const BACKCHANNEL_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a logout token is valid after it was signed (at each attempt).
const LOGOUT_TOKEN_TTL: i64 = 120;

/// Where mail goes.
enum Transport {
    Smtp {
        transport: AsyncSmtpTransport<Tokio1Executor>,
        /// The URL without its password, for the banner.
        shown: String,
    },
    /// No SMTP configured: each mail becomes an `.eml` file in this folder.
    Outbox(PathBuf),
}

/// Builds and sends messages.
pub struct Mailer {
    transport: Transport,
    from: Mailbox,
}

/// A mail before it is queued: a subject and the same text as plain text and HTML.
#[derive(Debug, Clone)]
pub struct Composed {
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// Checks an `smtp_url`: `smtp://` (STARTTLS when the server offers it, or
/// required with `?tls=required`), `smtps://` (TLS from the start), with an
/// optional user and password. Returns a description without the password.
pub fn check_smtp_url(url: &str) -> Result<String, String> {
    let parsed = url::Url::parse(url).map_err(|e| e.to_string())?;
    if !matches!(parsed.scheme(), "smtp" | "smtps") {
        return Err("the scheme must be smtp:// or smtps://".into());
    }
    if parsed.host_str().unwrap_or("").is_empty() {
        return Err("a host is needed".into());
    }
    AsyncSmtpTransport::<Tokio1Executor>::from_url(url).map_err(|e| e.to_string())?;
    let mut shown = parsed;
    if shown.password().is_some() {
        let _ = shown.set_password(Some("redacted"));
    }
    Ok(shown.to_string())
}

/// Checks a `mail_from` address (`Name <addr@example.com>` or `addr@example.com`).
pub fn check_mail_from(from: &str) -> Result<(), String> {
    from.parse::<Mailbox>()
        .map(|_| ())
        .map_err(|e| e.to_string())
}

impl Mailer {
    pub fn new(settings: &MailSettings) -> Result<Self, String> {
        let from = settings
            .from
            .parse::<Mailbox>()
            .map_err(|e| format!("invalid setting `mail_from` (TESSERA_MAIL_FROM): {e}"))?;
        let transport = match &settings.smtp_url {
            Some(url) => {
                let shown = check_smtp_url(url)
                    .map_err(|e| format!("invalid setting `smtp_url` (TESSERA_SMTP_URL): {e}"))?;
                let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
                    .map_err(|e| e.to_string())?
                    .timeout(Some(SMTP_TIMEOUT))
                    .build();
                Transport::Smtp { transport, shown }
            }
            None => Transport::Outbox(settings.outbox_dir.clone()),
        };
        Ok(Self { transport, from })
    }

    /// One line for the banner: where mail goes.
    pub fn describe(&self) -> String {
        match &self.transport {
            Transport::Smtp { shown, .. } => format!("SMTP {shown}, from {}", self.from),
            Transport::Outbox(dir) => format!(
                "no smtp_url: mails are written as .eml files into {}",
                dir.display()
            ),
        }
    }

    fn message(&self, mail: &QueuedMail) -> Result<Message, String> {
        let to = mail
            .recipient
            .parse::<Mailbox>()
            .map_err(|e| format!("bad recipient: {e}"))?;
        Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(mail.subject.clone())
            .multipart(MultiPart::alternative_plain_html(
                mail.text.clone(),
                mail.html.clone(),
            ))
            .map_err(|e| e.to_string())
    }

    /// Hands one mail over; an error says why it could not.
    async fn send(&self, mail: &QueuedMail) -> Result<(), String> {
        let message = self.message(mail)?;
        match &self.transport {
            Transport::Smtp { transport, .. } => transport
                .send(message)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
            Transport::Outbox(dir) => {
                let dir = dir.clone();
                let name = format!("{}-{}.eml", mail.created_at, mail.id);
                let bytes = message.formatted();
                tokio::task::spawn_blocking(move || {
                    std::fs::create_dir_all(&dir)?;
                    // Written whole under a temporary name, then renamed: a reader
                    // never sees half a mail.
                    let tmp = dir.join(format!(".{name}.tmp"));
                    std::fs::write(&tmp, bytes)?;
                    std::fs::rename(&tmp, dir.join(name))
                })
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| format!("cannot write to the outbox: {e}"))
            }
        }
    }
}

/// The delay before attempt `attempts + 1`.
fn retry_delay(attempts: u32) -> i64 {
    FIRST_RETRY_SECS
        .saturating_mul(1_i64 << attempts.min(20))
        .min(MAX_RETRY_SECS)
}

impl App {
    /// Puts a mail in the queue and wakes the delivery loop.
    pub(crate) async fn queue_mail(&self, to: &str, mail: Composed) -> AppResult<()> {
        self.enqueue(QueuedMail {
            id: Uuid::now_v7(),
            kind: OutboxKind::Mail,
            recipient: to.to_string(),
            subject: mail.subject,
            text: mail.text,
            html: mail.html,
            created_at: 0,
            attempts: 0,
            next_attempt_at: 0,
        })
        .await
    }

    /// Puts another kind of notice in the outbox: `recipient` is where it goes,
    /// `label` names it in the logs, `body` is what it carries.
    pub(crate) async fn queue_outbox(
        &self,
        kind: OutboxKind,
        recipient: &str,
        label: &str,
        body: String,
    ) -> AppResult<()> {
        self.enqueue(QueuedMail {
            id: Uuid::now_v7(),
            kind,
            recipient: recipient.to_string(),
            subject: label.to_string(),
            text: body,
            html: String::new(),
            created_at: 0,
            attempts: 0,
            next_attempt_at: 0,
        })
        .await
    }

    async fn enqueue(&self, mut row: QueuedMail) -> AppResult<()> {
        let now = self.now();
        row.created_at = now;
        row.next_attempt_at = now;
        self.store.enqueue_mail(row).await?;
        self.mail_wake.notify_one();
        Ok(())
    }

    /// Hands one row of the outbox over: a mail to the mailer, a back-channel
    /// logout notice to its client.
    async fn deliver(&self, row: &QueuedMail) -> Result<(), String> {
        match row.kind {
            OutboxKind::Mail => self.mailer.send(row).await,
            OutboxKind::BackchannelLogout => self.post_logout_token(row).await,
        }
    }

    /// OpenID Connect Back-Channel Logout 1.0 §2.5: a logout token, signed now,
    /// posted as a form; any 2xx answer is delivery.
    async fn post_logout_token(&self, row: &QueuedMail) -> Result<(), String> {
        let notice: serde_json::Value =
            serde_json::from_str(&row.text).map_err(|e| format!("corrupt notice: {e}"))?;
        let now = self.now();
        let claims = serde_json::json!({
            "iss": self.settings.issuer,
            "aud": notice["aud"],
            "sub": notice["sub"],
            "sid": notice["sid"],
            "iat": now,
            "exp": now + LOGOUT_TOKEN_TTL,
            "jti": Uuid::now_v7().to_string(),
            "events": { "http://schemas.openid.net/event/backchannel-logout": {} },
        });
        let token = self
            .sign_rs256("logout+jwt", &claims)
            .map_err(|e| e.description)?;
        let res = self
            .http
            .post(&row.recipient)
            .timeout(BACKCHANNEL_TIMEOUT)
            .form(&[("logout_token", token)])
            .send()
            .await
            .map_err(|e| format!("{}: {e}", row.recipient))?;
        if res.status().is_success() {
            Ok(())
        } else {
            Err(format!("{} answered {}", row.recipient, res.status()))
        }
    }

    /// Delivers the mails due now; returns how many were handed over.
    pub async fn deliver_due_mail(&self) -> usize {
        let now = self.now();
        let due = match self.store.claim_mail(now, now + LEASE_SECS, BATCH).await {
            Ok(due) => due,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the mail queue; will retry");
                return 0;
            }
        };
        let mut delivered = 0;
        for mail in due {
            match self.deliver(&mail).await {
                Ok(()) => {
                    delivered += 1;
                    if let Err(e) = self.store.mail_delivered(mail.id).await {
                        tracing::warn!(error = %e, "mail sent but still queued; it may be sent twice");
                    }
                }
                Err(error) => {
                    let next = self.now() + retry_delay(mail.attempts);
                    tracing::warn!(%error, attempts = mail.attempts + 1, retry_at = next, "mail delivery failed; will retry");
                    if let Err(e) = self.store.mail_failed(mail.id, next, &error).await {
                        tracing::warn!(error = %e, "cannot record a failed delivery");
                    }
                }
            }
        }
        delivered
    }

    /// The delivery loop: runs until the task is aborted.
    pub fn spawn_mail_delivery(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let app = self.clone();
        tokio::spawn(async move {
            loop {
                while app.deliver_due_mail().await > 0 {}
                let _ = tokio::time::timeout(POLL, app.mail_wake.notified()).await;
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_up_to_an_hour() {
        assert_eq!(retry_delay(0), 30);
        assert_eq!(retry_delay(1), 60);
        assert_eq!(retry_delay(5), 960);
        assert_eq!(retry_delay(7), 3_600);
        assert_eq!(retry_delay(u32::MAX), 3_600);
    }

    #[test]
    fn smtp_urls() {
        assert_eq!(
            check_smtp_url("smtp://user:pw@mail.example.com:2525").unwrap(),
            "smtp://user:redacted@mail.example.com:2525"
        );
        assert!(check_smtp_url("smtps://mail.example.com").is_ok());
        assert!(check_smtp_url("smtp://mail.example.com:587?tls=required").is_ok());
        for bad in ["http://mail.example.com", "smtp://", "mail.example.com", ""] {
            assert!(check_smtp_url(bad).is_err(), "{bad}");
        }
        assert!(check_mail_from("Tessera <no-reply@example.com>").is_ok());
        assert!(check_mail_from("not an address").is_err());
    }
}
