//! The command line: `serve`, `migrate`, `user create|reset-2fa`, `audit verify|export`,
//! `keys rotate|generate`, `config check`.

use std::io::{BufRead, Write};
use std::sync::Arc;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand, ValueEnum};

use crate::accounts::{self, email::Email, sessions::Role};
use crate::app::{shutdown_signal, AppState, Application};
use crate::audit::{self, ClientInfo};
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::crypto;
use crate::keyring;
use crate::store::Store;

#[derive(Parser)]
#[command(
    name = "latchkey",
    version,
    about = "Self-hosted authentication with correct two-factor authentication and account recovery."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Migrate the database, then serve HTTP until SIGTERM or Ctrl-C.
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Manage accounts.
    #[command(subcommand)]
    User(UserCommand),
    /// Check or export the tamper-evident audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Master key rotation (see docs/operations.md).
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
}

#[derive(Subcommand)]
pub enum UserCommand {
    /// Create an account (prompts for the password unless --password-stdin).
    Create {
        #[arg(long)]
        email: String,
        /// Make the account an administrator.
        #[arg(long)]
        admin: bool,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Reset a user's two-factor authentication (e.g. a locked-out single administrator): deletes
    /// their second factors and backup codes, signs them out, emails them; audited with actor "cli".
    #[command(name = "reset-2fa")]
    ResetTwoFactor {
        #[arg(long)]
        email: String,
        /// Why: recorded in the audit log and told to the user.
        #[arg(long)]
        reason: String,
    },
}

#[derive(Subcommand)]
pub enum AuditCommand {
    /// Verify the hash chain; exits non-zero naming the first broken sequence number.
    Verify,
    /// Print every event.
    Export {
        #[arg(long, value_enum, default_value_t = ExportFormat::Jsonl)]
        format: ExportFormat,
    },
}

#[derive(Subcommand)]
pub enum KeysCommand {
    /// Re-encrypt every stored secret under LATCHKEY_MASTER_KEY, opening old ones with
    /// LATCHKEY_PREVIOUS_MASTER_KEYS; afterwards the previous keys can be removed.
    Rotate,
    /// Print a new random master key (base64 of 32 bytes).
    Generate,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum ExportFormat {
    Jsonl,
}

#[derive(Subcommand)]
pub enum ConfigCommand {
    /// Validate the configuration and print it (secrets redacted).
    Check,
}

/// Runs a command; the exit code is 0 on success.
pub async fn run(cli: Cli) -> anyhow::Result<i32> {
    let config = match Config::load() {
        Ok(config) => config,
        Err(error) => {
            eprintln!("latchkey: configuration error: {error}");
            return Ok(2);
        }
    };
    for name in Config::unknown_variables() {
        tracing::warn!(variable = %name, "unknown LATCHKEY_ variable (a typo?) is ignored");
    }
    match cli.command {
        Command::Serve => {
            let application = Application::build(config).await?;
            let state = application.state();
            let address = format!("{}", state.config.bind.ip());
            tracing::info!(
                url = %state.config.public_url,
                listening = %format!("{}:{}", address, application.port()),
                mail = %state.mail_transport.describe(),
                "latchkey is ready"
            );
            println!(
                "latchkey is serving at {} (listening on {}:{})",
                state.config.public_url,
                address,
                application.port()
            );
            application.run_until_stopped(shutdown_signal()).await?;
            Ok(0)
        }
        Command::Migrate => {
            let state = AppState::build(config, Arc::new(SystemClock)).await?;
            println!("database is up to date");
            state.store.close().await;
            Ok(0)
        }
        Command::User(UserCommand::Create {
            email,
            admin,
            password_stdin,
        }) => {
            let state = AppState::build(config, Arc::new(SystemClock)).await?;
            let email = Email::parse(&email).map_err(|error| anyhow::anyhow!("{error}"))?;
            let password = read_password(password_stdin)?;
            let password = accounts::password_policy::parse(&password).map_err(|error| anyhow::anyhow!("{error}"))?;
            let role = if admin { Role::Admin } else { Role::User };
            match accounts::create_user(&state, &ClientInfo::cli(), &email, password.expose(), role, Some("cli")).await
            {
                Ok(id) => {
                    println!("created {} {} ({id})", role.as_str(), email);
                    Ok(0)
                }
                Err(accounts::AccountError::EmailTaken) => bail!("an account with this email already exists"),
                Err(error) => Err(anyhow::anyhow!("{error}")),
            }
        }
        Command::User(UserCommand::ResetTwoFactor { email, reason }) => {
            let state = AppState::build(config, Arc::new(SystemClock)).await?;
            reset_two_factor(&state, &email, &reason).await
        }
        Command::Audit(AuditCommand::Verify) => {
            let state = AppState::build(config, Arc::new(SystemClock)).await?;
            let verification = audit::verify(&state.store).await?;
            match verification.first_broken {
                None => {
                    println!("audit log intact: {} events", verification.events);
                    Ok(0)
                }
                Some(seq) => {
                    println!(
                        "audit log BROKEN at sequence number {seq} ({} events verified before it)",
                        verification.events
                    );
                    Ok(1)
                }
            }
        }
        Command::Audit(AuditCommand::Export {
            format: ExportFormat::Jsonl,
        }) => {
            let state = AppState::build(config, Arc::new(SystemClock)).await?;
            let stdout = std::io::stdout();
            let mut out = stdout.lock();
            let mut after = 0;
            loop {
                let (events, next) = audit::page(&state.store, None, after, 1000).await?;
                for event in &events {
                    writeln!(out, "{}", serde_json::to_string(event)?)?;
                }
                match next {
                    Some(next) => after = next,
                    None => break,
                }
            }
            Ok(0)
        }
        Command::Keys(KeysCommand::Rotate) => {
            let store = Store::connect(&config.database_url).await?;
            store.migrate().await?;
            let report = keyring::rotate(&store, &config, SystemClock.unix()).await;
            store.close().await;
            let report = report?;
            println!(
                "re-encrypted under master key {}: {} TOTP secrets, {} pending TOTP setups, {} queued emails, MAC root {}",
                report.key_id,
                report.totp_secrets,
                report.pending_totp_secrets,
                report.queued_emails,
                if report.mac_root { "re-sealed" } else { "already current" },
            );
            if report.remaining == 0 {
                println!("nothing is sealed under another key: LATCHKEY_PREVIOUS_MASTER_KEYS can now be removed");
                Ok(0)
            } else {
                println!(
                    "{} secrets are still sealed under another key (an instance still runs with the old key?); run this again",
                    report.remaining
                );
                Ok(1)
            }
        }
        Command::Keys(KeysCommand::Generate) => {
            println!("{}", crypto::generate_master_key());
            Ok(0)
        }
        Command::Config(ConfigCommand::Check) => {
            println!("configuration is valid:\n{config:#?}");
            Ok(0)
        }
    }
}

/// The same service as the admin API, as the actor "cli" and without a second approval (whoever
/// runs it already controls the server).
async fn reset_two_factor(state: &AppState, email: &str, reason: &str) -> anyhow::Result<i32> {
    use crate::recovery::admin::{self, Actor, AdminError};
    let user = match admin::find_user_by_email(state, email).await {
        Ok(user) => user,
        Err(AdminError::UserNotFound) => bail!("no account with the email {email}"),
        Err(error) => return Err(anyhow::anyhow!("{error}")),
    };
    admin::reset_two_factor(state, &ClientInfo::cli(), Actor::CommandLine, &user.id, Some(reason))
        .await
        .map_err(|error| anyhow::anyhow!("{error}"))?;
    // Try to send the notice now; if that fails, the server's worker retries it from the outbox.
    if let Err(error) = crate::mail::sender::deliver_due(state).await {
        tracing::warn!(
            error = format!("{error:#}"),
            "the notice stays queued for the server to send"
        );
    }
    println!(
        "two-factor authentication of {} was reset; they can sign in with their password and set it up again",
        user.email
    );
    Ok(0)
}

fn read_password(from_stdin: bool) -> anyhow::Result<String> {
    if !from_stdin {
        eprint!("Password: ");
        std::io::stderr().flush().ok();
    }
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("reading the password from standard input")?;
    let password = line
        .strip_suffix('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .unwrap_or(&line);
    if password.is_empty() {
        bail!("no password given");
    }
    Ok(password.to_string())
}
