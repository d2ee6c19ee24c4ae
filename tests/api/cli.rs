//! The command line, run as the real binary against a real database.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::common::{fresh_database, Backend};
use crate::on_both_databases;

on_both_databases!(cli_creates_users_and_verifies_the_audit_chain);

fn latchkey(data_dir: &std::path::Path, database_url: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_latchkey"));
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("LATCHKEY_DATA_DIR", data_dir)
        .env("LATCHKEY_DATABASE_URL", database_url)
        .env("LATCHKEY_PASSWORD_HASH", "argon2id:m=1024,t=1,p=1")
        .env("RUST_LOG", "warn");
    command
}

fn run_with_stdin(mut command: Command, input: &str) -> std::process::Output {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

async fn cli_creates_users_and_verifies_the_audit_chain(backend: Backend) {
    let data_dir = tempfile::tempdir().unwrap();
    let url = fresh_database(backend, data_dir.path()).await;
    let mut create = latchkey(data_dir.path(), &url);
    create.args([
        "user",
        "create",
        "--email",
        "Root@Example.com",
        "--admin",
        "--password-stdin",
    ]);
    let output = run_with_stdin(create, "a long admin passphrase\nignored second line\n");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(String::from_utf8_lossy(&output.stdout).contains("created admin root@example.com"));

    let mut again = latchkey(data_dir.path(), &url);
    again.args(["user", "create", "--email", "root@example.com", "--password-stdin"]);
    let output = run_with_stdin(again, "a long admin passphrase\n");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("already exists"));

    let mut weak = latchkey(data_dir.path(), &url);
    weak.args(["user", "create", "--email", "weak@example.com", "--password-stdin"]);
    assert!(!run_with_stdin(weak, "password\n").status.success());

    let verify = latchkey(data_dir.path(), &url)
        .args(["audit", "verify"])
        .output()
        .unwrap();
    assert!(verify.status.success());
    assert!(String::from_utf8_lossy(&verify.stdout).contains("intact: 1 events"));

    let export = latchkey(data_dir.path(), &url)
        .args(["audit", "export", "--format", "jsonl"])
        .output()
        .unwrap();
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&export.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["kind"], "signup");
    assert_eq!(lines[0]["actor_id"], "cli");

    sqlx::any::install_default_drivers();
    let mut db = <sqlx::AnyConnection as sqlx::Connection>::connect(&url).await.unwrap();
    sqlx::query("UPDATE audit_events SET kind = 'login_succeeded' WHERE seq = 1")
        .execute(&mut db)
        .await
        .unwrap();
    let broken = latchkey(data_dir.path(), &url)
        .args(["audit", "verify"])
        .output()
        .unwrap();
    assert_eq!(broken.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&broken.stdout).contains("BROKEN at sequence number 1"));
}

#[test]
fn a_bad_setting_stops_start_up_with_one_line_naming_it() {
    let data_dir = tempfile::tempdir().unwrap();
    let output = latchkey(data_dir.path(), "sqlite://x.db")
        .env("LATCHKEY_REQUIRE_2FA", "sometimes")
        .args(["config", "check"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("LATCHKEY_REQUIRE_2FA"));
}

#[test]
fn config_check_never_prints_secrets() {
    let data_dir = tempfile::tempdir().unwrap();
    let output = latchkey(data_dir.path(), "sqlite://x.db")
        .env("LATCHKEY_SMTP_URL", "smtps://user:hunter2secret@mail.example.com")
        .env("LATCHKEY_MASTER_KEY", "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=")
        .args(["config", "check"])
        .output()
        .unwrap();
    assert!(output.status.success());
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(!stdout.contains("hunter2secret"));
    assert!(stdout.contains("[redacted]"));
}
