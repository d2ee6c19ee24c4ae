//! A small, real SMTP server that the integration tests point latchkey at.
//!
//! The tests deliberately do not stub out the mailer: latchkey sends its mail
//! through lettre's SMTP transport exactly as it would in production, and this
//! sink speaks enough genuine SMTP (greeting, EHLO/HELO, MAIL, RCPT, DATA with
//! dot-unstuffing, RSET, NOOP, QUIT, several messages per pooled connection)
//! to receive it. That way the tests also cover the wire format of the mail
//! (MIME structure, encodings, headers), connection handling, and the retry
//! behaviour when the SMTP server is down ([`SmtpSink::start_on`]) or answers
//! with temporary failures ([`SmtpSink::refuse_with`]). Received messages are
//! parsed with `mailparse` so tests can look at subjects, bodies and links.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use mailparse::{MailHeaderMap, ParsedMail};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, Notify};
use tokio::task::{JoinHandle, JoinSet};

/// How long [`SmtpSink::wait_for`] and [`SmtpSink::wait_for_count`] wait.
const WAIT_DEADLINE: Duration = Duration::from_secs(15);
/// Longest command or data line accepted (RFC 5321 asks for at least 1000).
const MAX_LINE: usize = 64 * 1024;
/// Largest message accepted by DATA.
const MAX_MESSAGE: usize = 32 * 1024 * 1024;
/// Most recipients accepted in one transaction.
const MAX_RECIPIENTS: usize = 1000;

/// One message received by the sink, with its envelope and parsed content.
#[derive(Clone, Debug)]
pub struct ReceivedEmail {
    /// Reverse-path of `MAIL FROM` (without angle brackets; empty for `<>`).
    pub envelope_from: String,
    /// Forward-paths of every accepted `RCPT TO`, without angle brackets.
    pub envelope_to: Vec<String>,
    /// Decoded `From:` header (empty if absent).
    pub from: String,
    /// Decoded `To:` header (empty if absent).
    pub to: String,
    /// Decoded (RFC 2047) `Subject:` header (empty if absent).
    pub subject: String,
    /// First non-attachment text/plain part, transfer- and charset-decoded,
    /// CRLF turned into LF (may end with a line break the mailer added).
    pub text: String,
    /// First non-attachment text/html part, decoded like `text`.
    pub html: String,
    /// The message exactly as received after DATA (dot-stuffing undone).
    pub raw: String,
}

impl ReceivedEmail {
    fn parse(envelope_from: String, envelope_to: Vec<String>, data: &[u8]) -> ReceivedEmail {
        let mut email = ReceivedEmail {
            envelope_from,
            envelope_to,
            from: String::new(),
            to: String::new(),
            subject: String::new(),
            text: String::new(),
            html: String::new(),
            raw: String::from_utf8_lossy(data).into_owned(),
        };
        if let Ok(parsed) = mailparse::parse_mail(data) {
            let header = |name: &str| parsed.headers.get_first_value(name).unwrap_or_default();
            email.from = header("From");
            email.to = header("To");
            email.subject = header("Subject");
            email.text = first_body(&parsed, "text/plain");
            email.html = first_body(&parsed, "text/html");
        }
        email
    }

    /// Every `http://` or `https://` URL in the text part, in order. A URL
    /// ends at whitespace, `<`, `>`, `"` or `)`; trailing sentence punctuation
    /// (`.`, `,`, `;`, `:`, `!`, `?`, `'`) is dropped. If the message has no
    /// text part, the HTML part is scanned instead (with `&amp;` decoded).
    pub fn links(&self) -> Vec<String> {
        if self.text.trim().is_empty() && !self.html.is_empty() {
            extract_links(&self.html)
                .into_iter()
                .map(|link| link.replace("&amp;", "&"))
                .collect()
        } else {
            extract_links(&self.text)
        }
    }

    /// The first link (see [`ReceivedEmail::links`]) containing `needle`.
    pub fn link_containing(&self, needle: &str) -> Option<String> {
        self.links().into_iter().find(|link| link.contains(needle))
    }

    /// Whether `recipient` is one of the envelope recipients (ASCII case-insensitive).
    pub fn is_to(&self, recipient: &str) -> bool {
        self.envelope_to
            .iter()
            .any(|to| to.eq_ignore_ascii_case(recipient.trim()))
    }
}

/// The body of the first part (depth first) with MIME type `mimetype` that
/// is not an attachment, or an empty string.
fn first_body(mail: &ParsedMail<'_>, mimetype: &str) -> String {
    mail.parts()
        .filter(|part| part.subparts.is_empty())
        .filter(|part| part.ctype.mimetype.eq_ignore_ascii_case(mimetype))
        .find(|part| part.get_content_disposition().disposition != mailparse::DispositionType::Attachment)
        .and_then(|part| part.get_body().ok())
        .map(|body| body.replace("\r\n", "\n"))
        .unwrap_or_default()
}

fn extract_links(text: &str) -> Vec<String> {
    let mut links = Vec::new();
    let mut rest = text;
    loop {
        let start = match (rest.find("http://"), rest.find("https://")) {
            (Some(a), Some(b)) => a.min(b),
            (Some(a), None) | (None, Some(a)) => a,
            (None, None) => break,
        };
        let candidate = &rest[start..];
        let end = candidate
            .find(|c: char| c.is_whitespace() || matches!(c, '<' | '>' | '"' | ')'))
            .unwrap_or(candidate.len());
        let link = candidate[..end].trim_end_matches(['.', ',', ';', ':', '!', '?', '\'']);
        if link != "http://" && link != "https://" {
            links.push(link.to_string());
        }
        // Every scheme prefix is at least 7 bytes long, so this always advances.
        rest = &candidate[end.max(7)..];
    }
    links
}

/// State shared between the sink handle and its server tasks.
struct Shared {
    emails: Mutex<Vec<ReceivedEmail>>,
    delivered: Notify,
    refuse: Mutex<Option<u16>>,
    refused: Mutex<usize>,
    connections: Mutex<usize>,
    stall: Mutex<bool>,
    stalled: Mutex<usize>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking test thread must not make every later call panic too.
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A running SMTP sink. Stop it with [`SmtpSink::stop`]; dropping it also
/// stops it (the listener and all open connections are closed).
pub struct SmtpSink {
    addr: SocketAddr,
    shared: Arc<Shared>,
    server: Option<JoinHandle<()>>,
    shutdown: Option<oneshot::Sender<()>>,
}

impl SmtpSink {
    /// Start a sink on an ephemeral port of 127.0.0.1.
    pub async fn start() -> SmtpSink {
        SmtpSink::start_on(0).await.expect("smtp sink: cannot bind 127.0.0.1:0")
    }

    /// Start a sink on the given port of 127.0.0.1 (0 = any free port).
    pub async fn start_on(port: u16) -> std::io::Result<SmtpSink> {
        let listener = TcpListener::bind(("127.0.0.1", port)).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            emails: Mutex::new(Vec::new()),
            delivered: Notify::new(),
            refuse: Mutex::new(None),
            refused: Mutex::new(0),
            connections: Mutex::new(0),
            stall: Mutex::new(false),
            stalled: Mutex::new(0),
        });
        let (shutdown, shutdown_requested) = oneshot::channel();
        let server = tokio::spawn(serve(listener, Arc::clone(&shared), shutdown_requested));
        Ok(SmtpSink {
            addr,
            shared,
            server: Some(server),
            shutdown: Some(shutdown),
        })
    }

    /// A port of 127.0.0.1 on which nothing listens right now (bound, then
    /// released), for configuring latchkey before the sink is started there
    /// with [`SmtpSink::start_on`].
    pub fn unused_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("smtp sink: cannot find a free port")
            .port()
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `smtp://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port())
    }

    /// Stop accepting, close the listener (freeing the port) and every open
    /// connection. Received emails are gone with the sink.
    pub async fn stop(mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(server) = self.server.take() {
            // Once the server task is done, the listener and every
            // connection are closed.
            let _ = server.await;
        }
    }

    /// While `Some(code)` (a 4xx or 5xx code, e.g. 451), every `MAIL FROM`
    /// is answered with that code, so the client's send fails. `None` accepts
    /// mail again. Applies to connections that are already open, too.
    pub fn refuse_with(&self, code: Option<u16>) {
        if let Some(code) = code {
            assert!(
                (400..600).contains(&code),
                "smtp sink: refuse_with needs a 4xx or 5xx code, got {code}"
            );
        }
        *lock(&self.shared.refuse) = code;
    }

    /// While `true`, new connections are accepted but never greeted or answered: the client
    /// waits until its own timeout. Connections stalled so far stay stalled.
    pub fn stall_new_connections(&self, stall: bool) {
        *lock(&self.shared.stall) = stall;
    }

    /// How many connections were stalled because of [`SmtpSink::stall_new_connections`].
    pub fn stalled_count(&self) -> usize {
        *lock(&self.shared.stalled)
    }

    /// How many `MAIL FROM` commands were refused because of [`SmtpSink::refuse_with`].
    pub fn refused_count(&self) -> usize {
        *lock(&self.shared.refused)
    }

    /// How many connections the sink has accepted so far.
    pub fn connection_count(&self) -> usize {
        *lock(&self.shared.connections)
    }

    /// Every email received so far, oldest first.
    pub fn emails(&self) -> Vec<ReceivedEmail> {
        lock(&self.shared.emails).clone()
    }

    /// Every email received so far whose envelope recipients include
    /// `recipient` (ASCII case-insensitive), oldest first.
    pub fn emails_to(&self, recipient: &str) -> Vec<ReceivedEmail> {
        lock(&self.shared.emails)
            .iter()
            .filter(|email| email.is_to(recipient))
            .cloned()
            .collect()
    }

    /// Wait (up to 15 seconds) until an email matching `predicate` has been
    /// received and return the first such email. Emails received before the
    /// call count. Panics, naming `what` and listing what did arrive, on timeout.
    pub async fn wait_for<F: Fn(&ReceivedEmail) -> bool>(&self, what: &str, predicate: F) -> ReceivedEmail {
        self.wait_until(what, |emails| emails.iter().find(|email| predicate(email)).cloned())
            .await
    }

    /// Wait (up to 15 seconds) until at least `count` emails to `recipient`
    /// have been received and return all of them (possibly more than `count`).
    pub async fn wait_for_count(&self, recipient: &str, count: usize) -> Vec<ReceivedEmail> {
        let what = format!("{count} email(s) to {recipient}");
        self.wait_until(&what, |emails| {
            let matching: Vec<ReceivedEmail> = emails.iter().filter(|email| email.is_to(recipient)).cloned().collect();
            (matching.len() >= count).then_some(matching)
        })
        .await
    }

    async fn wait_until<T>(&self, what: &str, check: impl Fn(&[ReceivedEmail]) -> Option<T>) -> T {
        let deadline = tokio::time::Instant::now() + WAIT_DEADLINE;
        loop {
            // Register for the wake-up before looking, so that a delivery
            // between the look and the wait is not missed.
            let delivered = self.shared.delivered.notified();
            tokio::pin!(delivered);
            delivered.as_mut().enable();
            // Look at a snapshot, so the check may call back into the sink.
            if let Some(found) = check(&self.emails()) {
                return found;
            }
            if tokio::time::timeout_at(deadline, delivered).await.is_err() {
                let received: Vec<String> = lock(&self.shared.emails)
                    .iter()
                    .map(|email| format!("{:?} to {:?}", email.subject, email.envelope_to))
                    .collect();
                panic!(
                    "smtp sink: timed out after {WAIT_DEADLINE:?} waiting for {what}; \
                     received {} email(s): [{}]",
                    received.len(),
                    received.join(", ")
                );
            }
        }
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }
}

/// Accept loop. Connection tasks live in a `JoinSet` owned by this task, so
/// aborting it (on drop) also aborts every connection; on an orderly
/// shutdown it closes the listener and then waits for the connections to end.
async fn serve(listener: TcpListener, shared: Arc<Shared>, mut shutdown: oneshot::Receiver<()>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    *lock(&shared.connections) += 1;
                    connections.spawn(handle_connection(stream, Arc::clone(&shared)));
                }
                // E.g. too many open files: back off instead of spinning.
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            },
            // Reap finished connections so the set does not grow forever.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    connections.shutdown().await;
}

async fn handle_connection(mut stream: TcpStream, shared: Arc<Shared>) {
    let _ = stream.set_nodelay(true);
    if *lock(&shared.stall) {
        *lock(&shared.stalled) += 1;
        // Say nothing; read (and drop) whatever comes until the client hangs up.
        let mut sink = [0u8; 512];
        while matches!(stream.read(&mut sink).await, Ok(read) if read > 0) {}
        return;
    }
    let (reader, writer) = stream.into_split();
    // Errors only mean the client went away; nothing to report.
    let _ = Session::new(reader, writer, shared).run().await;
}

enum Line {
    Complete(Vec<u8>),
    TooLong,
    Closed,
}

struct Session<R, W> {
    reader: BufReader<R>,
    writer: W,
    shared: Arc<Shared>,
    greeted: bool,
    mail_from: Option<String>,
    rcpt_to: Vec<String>,
}

impl<R: AsyncRead + Unpin, W: AsyncWrite + Unpin> Session<R, W> {
    fn new(reader: R, writer: W, shared: Arc<Shared>) -> Self {
        Session {
            reader: BufReader::new(reader),
            writer,
            shared,
            greeted: false,
            mail_from: None,
            rcpt_to: Vec::new(),
        }
    }

    async fn reply(&mut self, text: &str) -> std::io::Result<()> {
        self.writer.write_all(text.as_bytes()).await?;
        self.writer.write_all(b"\r\n").await?;
        self.writer.flush().await
    }

    /// Read one line, without its CRLF (a bare LF is tolerated). Lines longer
    /// than `MAX_LINE` are consumed up to their end and reported as too long.
    async fn read_line(&mut self) -> std::io::Result<Line> {
        let mut line = Vec::new();
        let mut too_long = false;
        loop {
            let available = self.reader.fill_buf().await?;
            if available.is_empty() {
                return Ok(Line::Closed);
            }
            let (chunk, done) = match available.iter().position(|&b| b == b'\n') {
                Some(i) => (&available[..=i], true),
                None => (available, false),
            };
            let used = chunk.len();
            if !too_long && line.len() + used <= MAX_LINE + 2 {
                line.extend_from_slice(chunk);
            } else {
                too_long = true;
                line.clear();
            }
            self.reader.consume(used);
            if done {
                break;
            }
        }
        if too_long {
            return Ok(Line::TooLong);
        }
        line.pop(); // '\n'
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        Ok(Line::Complete(line))
    }

    fn reset_transaction(&mut self) {
        self.mail_from = None;
        self.rcpt_to.clear();
    }

    async fn run(mut self) -> std::io::Result<()> {
        self.reply("220 127.0.0.1 ESMTP latchkey test sink ready").await?;
        loop {
            let line = match self.read_line().await? {
                Line::Complete(line) => line,
                Line::TooLong => {
                    self.reply("500 5.5.2 Line too long").await?;
                    continue;
                }
                Line::Closed => return Ok(()),
            };
            let line = String::from_utf8_lossy(&line).into_owned();
            let (verb, argument) = match line.split_once(' ') {
                Some((verb, argument)) => (verb.to_ascii_uppercase(), argument.trim()),
                None => (line.trim().to_ascii_uppercase(), ""),
            };
            match verb.as_str() {
                "EHLO" | "HELO" if argument.is_empty() => {
                    self.reply("501 5.5.4 Syntax: EHLO hostname").await?;
                }
                "EHLO" => {
                    self.reset_transaction();
                    self.greeted = true;
                    let hello = format!("250-127.0.0.1 Hello {argument}");
                    self.reply(&hello).await?;
                    self.reply("250-PIPELINING").await?;
                    self.reply("250-8BITMIME").await?;
                    self.reply("250-ENHANCEDSTATUSCODES").await?;
                    self.reply("250 SMTPUTF8").await?;
                }
                "HELO" => {
                    self.reset_transaction();
                    self.greeted = true;
                    let hello = format!("250 127.0.0.1 Hello {argument}");
                    self.reply(&hello).await?;
                }
                "MAIL" => self.mail(argument).await?,
                "RCPT" => self.rcpt(argument).await?,
                "DATA" => self.data(argument).await?,
                "RSET" => {
                    self.reset_transaction();
                    self.reply("250 2.0.0 OK").await?;
                }
                "NOOP" => self.reply("250 2.0.0 OK").await?,
                "QUIT" => {
                    self.reply("221 2.0.0 Bye").await?;
                    let _ = self.writer.shutdown().await;
                    return Ok(());
                }
                _ => self.reply("502 5.5.1 Command not implemented").await?,
            }
        }
    }

    async fn mail(&mut self, argument: &str) -> std::io::Result<()> {
        if !self.greeted {
            return self.reply("503 5.5.1 Send EHLO or HELO first").await;
        }
        if self.mail_from.is_some() {
            return self.reply("503 5.5.1 Nested MAIL command").await;
        }
        let Some(path) = parse_path(argument, "FROM:") else {
            return self.reply("501 5.5.4 Syntax: MAIL FROM:<address>").await;
        };
        let refuse = *lock(&self.shared.refuse);
        if let Some(code) = refuse {
            *lock(&self.shared.refused) += 1;
            let class = code / 100;
            let reply = format!("{code} {class}.3.0 Simulated failure, try again later");
            return self.reply(&reply).await;
        }
        self.mail_from = Some(path);
        self.reply("250 2.1.0 Sender OK").await
    }

    async fn rcpt(&mut self, argument: &str) -> std::io::Result<()> {
        if self.mail_from.is_none() {
            return self.reply("503 5.5.1 Need MAIL before RCPT").await;
        }
        let Some(path) = parse_path(argument, "TO:") else {
            return self.reply("501 5.5.4 Syntax: RCPT TO:<address>").await;
        };
        if path.is_empty() {
            return self.reply("501 5.1.3 Empty recipient").await;
        }
        if self.rcpt_to.len() >= MAX_RECIPIENTS {
            return self.reply("452 4.5.3 Too many recipients").await;
        }
        self.rcpt_to.push(path);
        self.reply("250 2.1.5 Recipient OK").await
    }

    async fn data(&mut self, argument: &str) -> std::io::Result<()> {
        if !argument.is_empty() {
            return self.reply("501 5.5.4 Syntax: DATA").await;
        }
        if self.mail_from.is_none() {
            return self.reply("503 5.5.1 Need MAIL before DATA").await;
        }
        if self.rcpt_to.is_empty() {
            return self.reply("554 5.5.1 No valid recipients").await;
        }
        self.reply("354 Start mail input; end with <CRLF>.<CRLF>").await?;
        let mut message = Vec::new();
        let mut too_big = false;
        loop {
            let line = match self.read_line().await? {
                Line::Complete(line) => line,
                Line::TooLong => {
                    too_big = true;
                    continue;
                }
                Line::Closed => {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
            };
            if line == b"." {
                break;
            }
            // Undo dot-stuffing (RFC 5321 section 4.5.2).
            let line = line.strip_prefix(b".").unwrap_or(&line);
            if message.len() + line.len() + 2 > MAX_MESSAGE {
                too_big = true;
            }
            if !too_big {
                message.extend_from_slice(line);
                message.extend_from_slice(b"\r\n");
            }
        }
        let mail_from = self.mail_from.take().unwrap_or_default();
        let rcpt_to = std::mem::take(&mut self.rcpt_to);
        if too_big {
            return self.reply("552 5.3.4 Message too big").await;
        }
        let email = ReceivedEmail::parse(mail_from, rcpt_to, &message);
        let number = {
            let mut emails = lock(&self.shared.emails);
            emails.push(email);
            emails.len()
        };
        // Stored before the 250 goes out: once the client's send returns,
        // the email is visible to `emails()`.
        self.shared.delivered.notify_waiters();
        let reply = format!("250 2.0.0 OK queued as {number}");
        self.reply(&reply).await
    }
}

/// Parse `FROM:<path> PARAMS...` / `TO:<path> PARAMS...` (keyword
/// case-insensitive, optional space after the colon, brackets optional for
/// lenient clients). Returns the address without brackets.
fn parse_path(argument: &str, keyword: &str) -> Option<String> {
    let head = argument.get(..keyword.len())?;
    if !head.eq_ignore_ascii_case(keyword) {
        return None;
    }
    let rest = argument[keyword.len()..].trim_start();
    if let Some(inner) = rest.strip_prefix('<') {
        let end = inner.find('>')?;
        Some(inner[..end].to_string())
    } else {
        let path = rest.split_whitespace().next()?;
        Some(path.to_string())
    }
}
