//! latchkey benchmarks. Every figure is measured in this one run on this machine and printed next to
//! a reference measured in the same run, so the ratios mean something on a shared, noisy box.
//! Run with `scripts/bench` (builds the release binary first). Loopback only, bounded in time.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use latchkey::twofactor::totp;
use serde_json::{json, Value};

const PASSWORD: &str = "correct horse battery staple";

struct Server {
    child: Child,
    base: String,
    dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn binary() -> PathBuf {
    std::env::var_os("LATCHKEY_BIN").map(PathBuf::from).unwrap_or_else(|| {
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| "target".into());
        target.join("release/latchkey")
    })
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn start_server(
    database_url: Option<&str>,
    extra: &[(&str, &str)],
    dir: Option<tempfile::TempDir>,
) -> (Server, Duration) {
    let dir = dir.unwrap_or_else(|| tempfile::tempdir().unwrap());
    let port = free_port();
    let mut command = Command::new(binary());
    command
        .arg("serve")
        .env("LATCHKEY_BIND", format!("127.0.0.1:{port}"))
        .env("LATCHKEY_DATA_DIR", dir.path())
        .env("LATCHKEY_REQUIRE_2FA", "none")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Some(url) = database_url {
        command.env("LATCHKEY_DATABASE_URL", url);
    }
    for (name, value) in extra {
        command.env(name, value);
    }
    let started = Instant::now();
    let child = command
        .spawn()
        .expect("start latchkey (run scripts/bench, which builds it)");
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    loop {
        if let Ok(response) = client.get(format!("{base}/readyz")).send().await {
            if response.status() == 200 {
                break;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "server did not become ready"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    (Server { child, base, dir }, started.elapsed())
}

/// Resident memory once the server has settled: polled until five readings 20 ms apart agree
/// (at most 2 s), since a hashing thread gives back its working memory just after it answers.
async fn settled_rss_kib(pid: u32) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(2);
    let (mut last, mut same) = (rss_kib(pid), 0);
    while same < 5 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let now = rss_kib(pid);
        same = if now == last { same + 1 } else { 0 };
        last = now;
    }
    last
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|line| line.starts_with("VmRSS:"))
                .and_then(|line| line.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

async fn post(client: &reqwest::Client, url: String, body: Value, token: Option<&str>) -> (u16, Value) {
    let mut request = client.post(url).json(&body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    match request.send().await {
        Ok(response) => {
            let status = response.status().as_u16();
            (status, response.json().await.unwrap_or(Value::Null))
        }
        Err(_) => (0, Value::Null),
    }
}

/// Runs `work(i)` for i in 0..count with `concurrency` in flight; answers (elapsed, successes).
async fn run_concurrently<F, Fut>(count: usize, concurrency: usize, work: F) -> (Duration, usize)
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let work = Arc::new(work);
    let next = Arc::new(AtomicU64::new(0));
    let successes = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (work, next, successes) = (work.clone(), next.clone(), successes.clone());
            tokio::spawn(async move {
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed) as usize;
                    if index >= count {
                        break;
                    }
                    if work(index).await {
                        successes.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.unwrap();
    }
    (started.elapsed(), successes.load(Ordering::Relaxed) as usize)
}

/// Runs `work` for `duration` with `concurrency` loops; answers completed operations per second.
async fn rate_for<F, Fut>(duration: Duration, concurrency: usize, work: F) -> f64
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let work = Arc::new(work);
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (work, done, stop) = (work.clone(), done.clone(), stop.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    if work().await {
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(duration).await;
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.await.unwrap();
    }
    done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

/// Raw Argon2id hashes per second on `threads` threads: allocating the working memory per hash (as
/// `Argon2::hash_password` does) or reusing one buffer per thread (as latchkey's hashing pool does).
fn raw_argon2_rate(threads: usize, duration: Duration, reuse_memory: bool) -> f64 {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let params = argon2::Params::new(19456, 2, 1, None).unwrap();
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..threads {
            let done = done.clone();
            let params = params.clone();
            scope.spawn(move || {
                let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
                let mut memory = vec![argon2::Block::default(); argon.params().block_count()];
                let mut output = [0u8; 32];
                while started.elapsed() < duration {
                    let salt = SaltString::generate(&mut rand::rngs::OsRng);
                    if reuse_memory {
                        argon
                            .hash_password_into_with_memory(
                                PASSWORD.as_bytes(),
                                salt.as_str().as_bytes(),
                                &mut output,
                                &mut memory,
                            )
                            .unwrap();
                    } else {
                        argon.hash_password(PASSWORD.as_bytes(), &salt).unwrap();
                    }
                    done.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
    });
    done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

struct Row {
    what: String,
    measured: String,
    reference: String,
    goal: String,
}

fn row(rows: &mut Vec<Row>, what: &str, measured: String, reference: String, goal: &str) {
    println!("  {what}: {measured}   [{reference}]   goal: {goal}");
    rows.push(Row {
        what: what.into(),
        measured,
        reference,
        goal: goal.into(),
    });
}

/// Password logins per second against the raw Argon2id rate, /healthz latency during the flood,
/// and resident memory idle and at the peak of a 200-connection flood.
async fn password_logins(rows: &mut Vec<Row>) {
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
    let (server, _) = start_server(None, &[], None).await;
    let client = reqwest::Client::new();
    let base = server.base.clone();
    post(
        &client,
        format!("{base}/api/v1/signup"),
        json!({"email": "bench@example.com", "password": PASSWORD}),
        None,
    )
    .await;
    let pid = server.child.id();
    let idle_rss = settled_rss_kib(pid).await;

    let raw_allocating = raw_argon2_rate(cores, Duration::from_secs(3), false);
    let raw_reusing = raw_argon2_rate(cores, Duration::from_secs(3), true);
    let raw = raw_allocating.max(raw_reusing);
    let login_client = client.clone();
    let login_base = base.clone();
    let login = move || {
        let (client, base) = (login_client.clone(), login_base.clone());
        async move {
            let (status, _) = post(
                &client,
                format!("{base}/api/v1/login"),
                json!({"email": "bench@example.com", "password": PASSWORD}),
                None,
            )
            .await;
            status == 200
        }
    };
    // /healthz probed sequentially while the flood saturates the hashing pool.
    let probing = Arc::new(AtomicBool::new(true));
    let probe = {
        let (client, base, probing) = (client.clone(), base.clone(), probing.clone());
        tokio::spawn(async move {
            let mut latencies = Vec::new();
            while probing.load(Ordering::Relaxed) {
                let started = Instant::now();
                let _ = client.get(format!("{base}/healthz")).send().await;
                latencies.push(started.elapsed());
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            latencies
        })
    };
    let logins_per_second = rate_for(Duration::from_secs(6), cores * 4, login.clone()).await;
    probing.store(false, Ordering::Relaxed);
    let mut latencies = probe.await.unwrap();
    latencies.sort();
    let p99 = latencies.get(latencies.len() * 99 / 100).copied().unwrap_or_default();

    row(
        rows,
        "password logins/s vs raw Argon2id (m=19456,t=2,p=1)",
        format!("{logins_per_second:.1}/s"),
        format!(
            "raw on {cores} threads {raw_allocating:.1}/s allocating per hash, {raw_reusing:.1}/s reusing memory; ratio to the faster {:.2}",
            logins_per_second / raw
        ),
        "ratio >= 0.85",
    );
    row(
        rows,
        "/healthz p99 during a login flood",
        format!("{:.1} ms", p99.as_secs_f64() * 1000.0),
        format!("{} probes", latencies.len()),
        "<= 25 ms",
    );

    // 200 connections at once.
    let peak = Arc::new(AtomicU64::new(0));
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let (peak, sampling) = (peak.clone(), sampling.clone());
        tokio::spawn(async move {
            while sampling.load(Ordering::Relaxed) {
                peak.fetch_max(rss_kib(pid), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let flood_client = reqwest::Client::builder().pool_max_idle_per_host(200).build().unwrap();
    let flood_base = base.clone();
    let (elapsed, ok) = run_concurrently(400, 200, move |_| {
        let (client, base) = (flood_client.clone(), flood_base.clone());
        async move {
            let (status, _) = post(
                &client,
                format!("{base}/api/v1/login"),
                json!({"email": "bench@example.com", "password": PASSWORD}),
                None,
            )
            .await;
            status == 200
        }
    })
    .await;
    sampling.store(false, Ordering::Relaxed);
    sampler.await.unwrap();
    row(
        rows,
        "resident memory idle",
        format!("{:.1} MiB", idle_rss as f64 / 1024.0),
        "settled after start and one sign-up".into(),
        "<= 40 MiB",
    );
    row(
        rows,
        "resident memory peak, 200-connection login flood",
        format!("{:.1} MiB", peak.load(Ordering::Relaxed) as f64 / 1024.0),
        format!("{ok}/400 logins succeeded in {:.1} s", elapsed.as_secs_f64()),
        "<= 200 MiB, all succeed",
    );
}

/// Users with an authenticator and two pending login challenges each, written straight into the
/// database through the library before the server starts (set-up, not measured). Answers each
/// user's TOTP secret, the challenge tokens (user i's are i and i + users), and the time step
/// whose code and the next one's every user can still use.
async fn prepare_pending_logins(
    data_dir: &std::path::Path,
    database_url: Option<&str>,
    users: usize,
) -> (Vec<Vec<u8>>, Vec<String>, i64) {
    use latchkey::twofactor::challenge;
    let mut values = std::collections::BTreeMap::new();
    values.insert("LATCHKEY_DATA_DIR".to_string(), data_dir.display().to_string());
    if let Some(url) = database_url {
        values.insert("LATCHKEY_DATABASE_URL".to_string(), url.to_string());
    }
    let config = latchkey::Config::from_values(&values).unwrap();
    let state = latchkey::AppState::build(config, Arc::new(latchkey::clock::SystemClock))
        .await
        .unwrap();
    let now = chrono::Utc::now().timestamp();
    let step = totp::step_at(now);
    let client = latchkey::audit::ClientInfo::default();
    let mut secrets = Vec::with_capacity(users);
    let mut tokens = vec![String::new(); users * 2];
    let mut tx = state.store.begin().await.unwrap();
    for index in 0..users {
        let user = latchkey::store::users::UserRow {
            id: uuid::Uuid::new_v4().to_string(),
            email: format!("totp{index}@example.com"),
            password_hash: "unused: the password step is not measured".into(),
            role: "user".into(),
            created_at: now,
            email_recovery_enabled: 1,
        };
        latchkey::store::users::insert(&mut tx, &user).await.unwrap();
        let secret = totp::generate_secret(&mut rand::rngs::OsRng);
        let sealed = state.keys.seal_secret(&user.id, &secret);
        // As if enrolled with the previous step's code: this step and the next are unused.
        latchkey::store::two_factor::replace_totp(&mut tx, &user.id, &sealed, &state.keys.key_id, step - 1, now)
            .await
            .unwrap();
        for login in [index, index + users] {
            let pending = challenge::create(&mut tx, &state, &user.id, vec!["totp"], &client, now)
                .await
                .unwrap();
            tokens[login] = pending.token;
        }
        secrets.push(secret.to_vec());
    }
    tx.commit().await.unwrap();
    state.store.close().await;
    (secrets, tokens, step)
}

/// Second-step TOTP logins per second (each writes the replay marker, a session and two audit
/// events) with 2 × `users` logins pending, next to the same server's /healthz rate.
async fn totp_logins(rows: &mut Vec<Row>, label: &str, database_url: Option<String>) {
    // Each user's two codes stay valid at least 30 s from set-up: the run must end before that.
    let users = if database_url.is_some() { 6_000 } else { 15_000 };
    let logins = users * 2;
    let dir = tempfile::tempdir().unwrap();
    let (secrets, challenges, step) = prepare_pending_logins(dir.path(), database_url.as_deref(), users).await;
    let (server, _) = start_server(database_url.as_deref(), &[], Some(dir)).await;
    let base = server.base.clone();
    let client = reqwest::Client::builder().pool_max_idle_per_host(64).build().unwrap();
    let challenges = Arc::new(challenges);
    let secrets = Arc::new(secrets);
    eprintln!(
        "  measuring {logins} TOTP second steps ({label}, server pid {})",
        server.child.id()
    );
    let commits_before = sqlite_commit_counters(&client, &base).await;
    // Every answer other than 200, by status and error code, so a failure is explained.
    let failures = Arc::new(std::sync::Mutex::new(std::collections::BTreeMap::<String, usize>::new()));
    let (elapsed, ok) = {
        let (client, base, failures) = (client.clone(), base.clone(), failures.clone());
        run_concurrently(logins, 32, move |index| {
            let (client, base, challenges, secrets, failures) = (
                client.clone(),
                base.clone(),
                challenges.clone(),
                secrets.clone(),
                failures.clone(),
            );
            async move {
                // The first half uses the current step, the second half the next one.
                let offset = (index / users) as i64;
                let code = totp::code_for_step(&secrets[index % users], step + offset);
                let body = json!({"challenge_token": challenges[index], "method": "totp", "code": code});
                let (status, answer) = post(&client, format!("{base}/api/v1/login/mfa"), body, None).await;
                if status != 200 {
                    let error = answer["error"].as_str().unwrap_or("-").to_string();
                    *failures.lock().unwrap().entry(format!("{status} {error}")).or_insert(0) += 1;
                }
                status == 200
            }
        })
        .await
    };
    for (what, count) in failures.lock().unwrap().iter() {
        println!("    not accepted: {count} × {what}");
    }
    let totp_rate = ok as f64 / elapsed.as_secs_f64();
    let batching = match (commits_before, sqlite_commit_counters(&client, &base).await) {
        (Some((transactions_before, commits_before)), Some((transactions, commits))) if commits > commits_before => {
            format!(
                "; {:.1} transactions per commit",
                (transactions - transactions_before) / (commits - commits_before)
            )
        }
        _ => String::new(),
    };
    let healthz_client = client.clone();
    let healthz_base = base.clone();
    let healthz_rate = rate_for(Duration::from_secs(2), 32, move || {
        let (client, base) = (healthz_client.clone(), healthz_base.clone());
        async move { client.get(format!("{base}/healthz")).send().await.is_ok() }
    })
    .await;
    row(
        rows,
        &format!("TOTP second-step logins/s ({label})"),
        format!("{totp_rate:.0}/s ({ok}/{logins} ok)"),
        format!(
            "/healthz {healthz_rate:.0}/s, ratio {:.2}{batching}",
            totp_rate / healthz_rate
        ),
        if label == "SQLite" {
            ">= 5000/s"
        } else {
            "beats Kanidm ~1700/s"
        },
    );
}

/// On SQLite, the server's counts of transactions and of COMMITs (group commit puts several
/// transactions in one COMMIT).
async fn sqlite_commit_counters(client: &reqwest::Client, base: &str) -> Option<(f64, f64)> {
    let text = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    let counter = |name: &str| -> Option<f64> {
        text.lines()
            .find(|line| line.starts_with(name))
            .and_then(|line| line.split_whitespace().last()?.parse().ok())
    };
    Some((
        counter("latchkey_sqlite_transactions_total")?,
        counter("latchkey_sqlite_commits_total")?,
    ))
}

/// Backup-code and session-token checks with 100 and with 100,000 users: one indexed lookup each,
/// so the time must not grow with the number of users.
async fn lookups_scale(rows: &mut Vec<Row>) {
    use latchkey::accounts::sessions;
    use latchkey::audit::ClientInfo;
    use latchkey::twofactor::{backup_codes, SecondFactor};

    let mut per_size = Vec::new();
    for users in [100usize, 100_000] {
        let dir = tempfile::tempdir().unwrap();
        let mut values = std::collections::BTreeMap::new();
        values.insert("LATCHKEY_DATA_DIR".to_string(), dir.path().display().to_string());
        values.insert(
            "LATCHKEY_PASSWORD_HASH".to_string(),
            "argon2id:m=1024,t=1,p=1".to_string(),
        );
        let config = latchkey::Config::from_values(&values).unwrap();
        let state = latchkey::AppState::build(config, Arc::new(latchkey::clock::SystemClock))
            .await
            .unwrap();
        let now = chrono::Utc::now().timestamp();
        // Fill the tables directly: users, 10 backup codes each, one session each.
        let mut codes_of_probe_users = Vec::new();
        let mut session_tokens = Vec::new();
        let mut tx = state.store.begin().await.unwrap();
        for index in 0..users {
            let id = format!("user-{index}");
            latchkey::store::db::query(
                "INSERT INTO users (id, email, password_hash, role, created_at) VALUES ($1, $2, 'x', 'user', $3)",
            )
            .bind(&id)
            .bind(format!("u{index}@example.com"))
            .bind(now)
            .execute(&mut tx)
            .await
            .unwrap();
            let codes = backup_codes::generate_set(&mut rand::rngs::OsRng);
            let hashes: Vec<Vec<u8>> = codes
                .iter()
                .map(|code| state.keys.backup_code_hash(&id, code.canonical()))
                .collect();
            latchkey::store::two_factor::replace_backup_codes(&mut tx, &id, &hashes, now)
                .await
                .unwrap();
            let token = latchkey::crypto::random_token();
            let session = latchkey::store::sessions::SessionRow {
                id: format!("session-{index}"),
                user_id: id.clone(),
                state: "full".into(),
                created_at: now,
                last_seen_at: now,
                expires_at: now + 86400,
                sudo_until: now,
                user_agent: None,
                ip: None,
            };
            latchkey::store::sessions::insert(&mut tx, &state.keys.token_hash(&token), &session)
                .await
                .unwrap();
            if index % (users / 100).max(1) == 0 {
                codes_of_probe_users.push((id, codes));
                session_tokens.push(token);
            }
        }
        tx.commit().await.unwrap();
        let client = ClientInfo::default();
        // Backup codes: consume 10 codes of each of 100 users spread over the table.
        let mut checks = 0;
        let started = Instant::now();
        for (id, codes) in &codes_of_probe_users {
            for code in codes {
                let mut tx = state.store.begin().await.unwrap();
                let factor = SecondFactor::BackupCode(backup_codes::parse(&code.formatted()).unwrap());
                let used = latchkey::twofactor::verify_second_factor(
                    &mut tx,
                    &state,
                    id,
                    "x@example.com",
                    &factor,
                    &client,
                    now,
                )
                .await
                .unwrap();
                assert!(used.is_ok());
                drop(tx); // rolled back: measure the check, not the email queueing's commit
                checks += 1;
            }
        }
        let backup_code_check = started.elapsed() / checks;
        let started = Instant::now();
        let rounds = 20;
        for _ in 0..rounds {
            for token in &session_tokens {
                assert!(sessions::authenticate(&state, token).await.unwrap().is_some());
            }
        }
        let session_check = started.elapsed() / (rounds * session_tokens.len() as u32);
        per_size.push((users, backup_code_check, session_check));
        state.store.close().await;
    }
    let (small, large) = (per_size[0], per_size[1]);
    row(
        rows,
        "backup-code check, 100 vs 100,000 users",
        format!(
            "{:.0} µs vs {:.0} µs",
            small.1.as_secs_f64() * 1e6,
            large.1.as_secs_f64() * 1e6
        ),
        format!("ratio {:.2}", large.1.as_secs_f64() / small.1.as_secs_f64()),
        "ratio <= 1.5",
    );
    row(
        rows,
        "session-token check, 100 vs 100,000 users",
        format!(
            "{:.0} µs vs {:.0} µs",
            small.2.as_secs_f64() * 1e6,
            large.2.as_secs_f64() * 1e6
        ),
        format!("ratio {:.2}", large.2.as_secs_f64() / small.2.as_secs_f64()),
        "ratio <= 1.5",
    );
}

/// Start-up to ready on an existing database.
async fn startup(rows: &mut Vec<Row>) {
    let (first, cold) = start_server(None, &[], None).await;
    let client = reqwest::Client::new();
    for index in 0..50 {
        post(
            &client,
            format!("{}/api/v1/signup", first.base),
            json!({"email": format!("s{index}@example.com"), "password": PASSWORD}),
            None,
        )
        .await;
    }
    // Keep a copy of the data dir: each start below sees the same existing database.
    let seed = tempfile::tempdir().unwrap();
    let path = seed.path().to_path_buf();
    for entry in std::fs::read_dir(first.dir.path()).unwrap().flatten() {
        if entry.path().is_file() {
            std::fs::copy(entry.path(), path.join(entry.file_name())).unwrap();
        }
    }
    drop(first);
    let mut best = Duration::MAX;
    for _ in 0..3 {
        let reuse = tempfile::Builder::new().tempdir().unwrap();
        // Copy the data dir so each start sees the same existing database.
        for entry in std::fs::read_dir(&path).unwrap().flatten() {
            if entry.path().is_file() {
                std::fs::copy(entry.path(), reuse.path().join(entry.file_name())).unwrap();
            }
        }
        let (server, ready) = start_server(None, &[], Some(reuse)).await;
        best = best.min(ready);
        drop(server);
    }
    row(
        rows,
        "start-up to ready, existing database",
        format!("{:.0} ms", best.as_secs_f64() * 1000.0),
        format!("first start on an empty data dir {:.0} ms", cold.as_secs_f64() * 1000.0),
        "<= 300 ms",
    );
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut rows = Vec::new();
        let only = std::env::args().nth(1).filter(|arg| !arg.starts_with('-'));
        let wants = |name: &str| only.as_deref().is_none_or(|only| only == name);
        println!(
            "latchkey benchmarks ({} cores)",
            std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)
        );
        if wants("totp") {
            totp_logins(&mut rows, "SQLite", None).await;
            if let Ok(admin_url) = std::env::var("LATCHKEY_TEST_POSTGRES_URL") {
                let name = format!("latchkey_bench_{}", uuid::Uuid::new_v4().simple());
                sqlx::any::install_default_drivers();
                let mut admin = <sqlx::AnyConnection as sqlx::Connection>::connect(&admin_url)
                    .await
                    .unwrap();
                sqlx::query(&format!("CREATE DATABASE {name}"))
                    .execute(&mut admin)
                    .await
                    .unwrap();
                let mut url = url::Url::parse(&admin_url).unwrap();
                url.set_path(&format!("/{name}"));
                totp_logins(&mut rows, "PostgreSQL", Some(url.to_string())).await;
                let _ = sqlx::query(&format!("DROP DATABASE {name} WITH (FORCE)"))
                    .execute(&mut admin)
                    .await;
            }
        }
        if wants("lookups") {
            lookups_scale(&mut rows).await;
        }
        if wants("password") {
            password_logins(&mut rows).await;
        }
        if wants("startup") {
            startup(&mut rows).await;
        }
        println!("\n| measurement | measured | reference (same run) | goal |\n|---|---|---|---|");
        for row in rows {
            println!("| {} | {} | {} | {} |", row.what, row.measured, row.reference, row.goal);
        }
    });
}
