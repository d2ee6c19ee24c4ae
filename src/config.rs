//! Configuration, parsed once at start-up from defaults, an optional `latchkey.toml`, then
//! `LATCHKEY_*` environment variables (environment wins). A bad value stops start-up with one line
//! naming the variable, so an operator never runs with a setting silently ignored.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;
use url::Url;

/// Every setting latchkey understands, by its environment name. Used to warn about typos.
pub const KNOWN_VARIABLES: &[&str] = &[
    "LATCHKEY_BIND",
    "LATCHKEY_DATABASE_URL",
    "LATCHKEY_DATA_DIR",
    "LATCHKEY_PUBLIC_URL",
    "LATCHKEY_MASTER_KEY",
    "LATCHKEY_PREVIOUS_MASTER_KEYS",
    "LATCHKEY_SMTP_URL",
    "LATCHKEY_MAIL_FROM",
    "LATCHKEY_RECOVERY_DELAY",
    "LATCHKEY_RECOVERY_DELAY_LOST_PASSWORD",
    "LATCHKEY_REQUIRE_2FA",
    "LATCHKEY_ADMIN_RESET_APPROVALS",
    "LATCHKEY_SIGNUP",
    "LATCHKEY_SUDO_TTL",
    "LATCHKEY_SESSION_IDLE_TIMEOUT",
    "LATCHKEY_SESSION_LIFETIME",
    "LATCHKEY_TRUSTED_PROXIES",
    "LATCHKEY_PASSWORD_HASH",
    "LATCHKEY_PRODUCT_NAME",
    "LATCHKEY_CONFIG",
    "LATCHKEY_HASHING_THREADS",
    "LATCHKEY_BACKGROUND_INTERVAL",
    "LATCHKEY_SMTP_TIMEOUT",
    "LATCHKEY_TEST_POSTGRES_URL",
];

/// The longest `LATCHKEY_SMTP_TIMEOUT`: a whole send must end well within the outbox's claim lease.
pub const MAX_SMTP_TIMEOUT: Duration = Duration::from_secs(20);

/// A value that must never reach a log line or an error message.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret<T>(pub T);

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("[redacted]")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TwoFactorPolicy {
    None,
    Admins,
    All,
}

impl TwoFactorPolicy {
    pub fn requires(self, is_admin: bool) -> bool {
        match self {
            TwoFactorPolicy::None => false,
            TwoFactorPolicy::Admins => is_admin,
            TwoFactorPolicy::All => true,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PasswordHashParams {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub bind: SocketAddr,
    pub database_url: String,
    pub data_dir: PathBuf,
    pub public_url: Url,
    pub master_key: Option<Secret<[u8; 32]>>,
    /// Earlier master keys, kept only until `latchkey keys rotate` has re-encrypted what they sealed.
    pub previous_master_keys: Vec<Secret<[u8; 32]>>,
    pub smtp_url: Option<Secret<String>>,
    /// How long the SMTP server may take to answer one step of a conversation before the send
    /// is given up (and retried later).
    pub smtp_timeout: Duration,
    pub mail_from: String,
    pub recovery_delay: Duration,
    pub recovery_delay_lost_password: Duration,
    pub require_2fa: TwoFactorPolicy,
    pub admin_reset_approvals: u8,
    pub signup_open: bool,
    pub sudo_ttl: Duration,
    pub session_idle_timeout: Duration,
    pub session_lifetime: Duration,
    pub trusted_proxies: Vec<IpNet>,
    pub password_hash: PasswordHashParams,
    pub product_name: String,
    pub hashing_threads: usize,
    /// How often the background worker looks for due emails, reminders and expiries.
    pub background_interval: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub variable: String,
    pub problem: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}: {}", self.variable, self.problem)
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Reads `latchkey.toml` (or the file named by `LATCHKEY_CONFIG`) and the environment.
    pub fn load() -> Result<Config, ConfigError> {
        let mut values = BTreeMap::new();
        let file = std::env::var("LATCHKEY_CONFIG").unwrap_or_else(|_| "latchkey.toml".into());
        if let Ok(text) = std::fs::read_to_string(&file) {
            values.extend(parse_toml(&text).map_err(|problem| ConfigError {
                variable: file.clone(),
                problem,
            })?);
        }
        for (name, value) in std::env::vars() {
            if name.starts_with("LATCHKEY_") {
                values.insert(name, value);
            }
        }
        Config::from_values(&values)
    }

    /// Names of `LATCHKEY_*` variables in the environment that latchkey does not know.
    pub fn unknown_variables() -> Vec<String> {
        std::env::vars()
            .map(|(name, _)| name)
            .filter(|name| name.starts_with("LATCHKEY_") && !KNOWN_VARIABLES.contains(&name.as_str()))
            .collect()
    }

    /// Builds a configuration from `LATCHKEY_*` names and raw values; missing names take defaults.
    pub fn from_values(values: &BTreeMap<String, String>) -> Result<Config, ConfigError> {
        let raw = |name: &str| values.get(name).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
        let fail = |name: &str, problem: String| ConfigError {
            variable: name.to_string(),
            problem,
        };

        let bind = match raw("LATCHKEY_BIND") {
            Some(text) => text.parse().map_err(|_| {
                fail(
                    "LATCHKEY_BIND",
                    format!("expected host:port such as 127.0.0.1:8080, got {text:?}"),
                )
            })?,
            None => SocketAddr::from(([127, 0, 0, 1], 8080)),
        };
        let data_dir = PathBuf::from(raw("LATCHKEY_DATA_DIR").unwrap_or_else(|| "data".into()));
        let database_url =
            raw("LATCHKEY_DATABASE_URL").unwrap_or_else(|| format!("sqlite://{}/latchkey.db", data_dir.display()));
        if !(database_url.starts_with("sqlite:")
            || database_url.starts_with("postgres://")
            || database_url.starts_with("postgresql://"))
        {
            return Err(fail(
                "LATCHKEY_DATABASE_URL",
                "expected a sqlite://PATH or postgres://USER@HOST/DB url".into(),
            ));
        }
        let public_url_text = raw("LATCHKEY_PUBLIC_URL").unwrap_or_else(|| "http://localhost:8080".into());
        let public_url = Url::parse(&public_url_text)
            .ok()
            .filter(|url| matches!(url.scheme(), "http" | "https") && url.host().is_some())
            .ok_or_else(|| {
                fail(
                    "LATCHKEY_PUBLIC_URL",
                    format!("expected an http(s) URL, got {public_url_text:?}"),
                )
            })?;
        let master_key = match raw("LATCHKEY_MASTER_KEY") {
            Some(text) => Some(Secret(
                parse_master_key(&text).map_err(|problem| fail("LATCHKEY_MASTER_KEY", problem))?,
            )),
            None => None,
        };
        let previous_master_keys = match raw("LATCHKEY_PREVIOUS_MASTER_KEYS") {
            Some(text) => text
                .split(',')
                .map(str::trim)
                .filter(|part| !part.is_empty())
                .map(|part| {
                    parse_master_key(part).map(Secret).map_err(|problem| {
                        fail("LATCHKEY_PREVIOUS_MASTER_KEYS", format!("{problem} (comma-separated)"))
                    })
                })
                .collect::<Result<Vec<_>, _>>()?,
            None => Vec::new(),
        };
        let smtp_url = match raw("LATCHKEY_SMTP_URL") {
            Some(text) => {
                let parsed = Url::parse(&text).map_err(|_| {
                    fail(
                        "LATCHKEY_SMTP_URL",
                        "expected smtp://host:port or smtps://user:pass@host".into(),
                    )
                })?;
                if !matches!(parsed.scheme(), "smtp" | "smtps") || parsed.host().is_none() {
                    return Err(fail(
                        "LATCHKEY_SMTP_URL",
                        "expected smtp://host:port or smtps://user:pass@host".into(),
                    ));
                }
                Some(Secret(text))
            }
            None => None,
        };
        let product_name = raw("LATCHKEY_PRODUCT_NAME").unwrap_or_else(|| "latchkey".into());
        let mail_from = raw("LATCHKEY_MAIL_FROM").unwrap_or_else(|| {
            let host = public_url.host_str().unwrap_or("localhost");
            format!("{product_name} <no-reply@{host}>")
        });
        if !mail_from.contains('@') {
            return Err(fail(
                "LATCHKEY_MAIL_FROM",
                "expected an address such as Name <no-reply@example.com>".into(),
            ));
        }
        let duration = |name: &str, default: Duration| -> Result<Duration, ConfigError> {
            match raw(name) {
                Some(text) => parse_duration(&text).map_err(|problem| fail(name, problem)),
                None => Ok(default),
            }
        };
        let recovery_delay = duration("LATCHKEY_RECOVERY_DELAY", Duration::from_secs(72 * 3600))?;
        let recovery_delay_lost_password = duration(
            "LATCHKEY_RECOVERY_DELAY_LOST_PASSWORD",
            Duration::from_secs(7 * 24 * 3600),
        )?;
        let sudo_ttl = duration("LATCHKEY_SUDO_TTL", Duration::from_secs(600))?;
        let session_idle_timeout = duration("LATCHKEY_SESSION_IDLE_TIMEOUT", Duration::from_secs(7 * 24 * 3600))?;
        let session_lifetime = duration("LATCHKEY_SESSION_LIFETIME", Duration::from_secs(30 * 24 * 3600))?;
        let background_interval = duration("LATCHKEY_BACKGROUND_INTERVAL", Duration::from_secs(1))?;
        let smtp_timeout = duration("LATCHKEY_SMTP_TIMEOUT", Duration::from_secs(15))?;
        if !(Duration::from_secs(1)..=MAX_SMTP_TIMEOUT).contains(&smtp_timeout) {
            return Err(fail(
                "LATCHKEY_SMTP_TIMEOUT",
                format!("expected 1s to {}s", MAX_SMTP_TIMEOUT.as_secs()),
            ));
        }
        let require_2fa = match raw("LATCHKEY_REQUIRE_2FA").as_deref() {
            None | Some("admins") => TwoFactorPolicy::Admins,
            Some("none") => TwoFactorPolicy::None,
            Some("all") => TwoFactorPolicy::All,
            Some(other) => {
                return Err(fail(
                    "LATCHKEY_REQUIRE_2FA",
                    format!("expected none, admins or all, got {other:?}"),
                ))
            }
        };
        let admin_reset_approvals = match raw("LATCHKEY_ADMIN_RESET_APPROVALS").as_deref() {
            None | Some("1") => 1,
            Some("2") => 2,
            Some(other) => {
                return Err(fail(
                    "LATCHKEY_ADMIN_RESET_APPROVALS",
                    format!("expected 1 or 2, got {other:?}"),
                ))
            }
        };
        let signup_open = match raw("LATCHKEY_SIGNUP").as_deref() {
            None | Some("open") => true,
            Some("closed") => false,
            Some(other) => {
                return Err(fail(
                    "LATCHKEY_SIGNUP",
                    format!("expected open or closed, got {other:?}"),
                ))
            }
        };
        let trusted_proxies = match raw("LATCHKEY_TRUSTED_PROXIES") {
            Some(text) => text
                .split(',')
                .map(str::trim)
                .filter(|part| !part.is_empty())
                .map(|part| {
                    part.parse::<IpNet>()
                        .or_else(|_| part.parse::<std::net::IpAddr>().map(IpNet::from))
                        .map_err(|_| {
                            fail(
                                "LATCHKEY_TRUSTED_PROXIES",
                                format!("{part:?} is not an IP address or CIDR range"),
                            )
                        })
                })
                .collect::<Result<Vec<_>, _>>()?,
            None => Vec::new(),
        };
        let password_hash = match raw("LATCHKEY_PASSWORD_HASH") {
            Some(text) => parse_password_hash(&text).map_err(|problem| fail("LATCHKEY_PASSWORD_HASH", problem))?,
            None => PasswordHashParams {
                memory_kib: 19456,
                iterations: 2,
                parallelism: 1,
            },
        };
        let hashing_threads = match raw("LATCHKEY_HASHING_THREADS") {
            Some(text) => text
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=256).contains(n))
                .ok_or_else(|| {
                    fail(
                        "LATCHKEY_HASHING_THREADS",
                        format!("expected a number from 1 to 256, got {text:?}"),
                    )
                })?,
            None => std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2),
        };

        Ok(Config {
            bind,
            database_url,
            data_dir,
            public_url,
            master_key,
            previous_master_keys,
            smtp_url,
            smtp_timeout,
            mail_from,
            recovery_delay,
            recovery_delay_lost_password,
            require_2fa,
            admin_reset_approvals,
            signup_open,
            sudo_ttl,
            session_idle_timeout,
            session_lifetime,
            trusted_proxies,
            password_hash,
            product_name,
            hashing_threads,
            background_interval,
        })
    }

    /// Cookies are `Secure` unless the public URL is plain-http localhost (a developer's machine).
    pub fn cookies_secure(&self) -> bool {
        let local = matches!(
            self.public_url.host_str(),
            Some("localhost") | Some("127.0.0.1") | Some("[::1]")
        );
        !(self.public_url.scheme() == "http" && local)
    }

    /// `PUBLIC_URL` joined with a path, without a doubled slash.
    pub fn link(&self, path: &str) -> String {
        format!("{}{}", self.public_url.as_str().trim_end_matches('/'), path)
    }
}

/// `latchkey.toml` keys are the variable names without the prefix, in lower case:
/// `bind = "0.0.0.0:8080"`, `require_2fa = "all"`.
fn parse_toml(text: &str) -> Result<BTreeMap<String, String>, String> {
    let table: toml::Table = text
        .parse()
        .map_err(|error: toml::de::Error| error.message().to_string())?;
    let mut values = BTreeMap::new();
    for (key, value) in table {
        let text = match value {
            toml::Value::String(text) => text,
            toml::Value::Integer(number) => number.to_string(),
            toml::Value::Boolean(flag) => flag.to_string(),
            toml::Value::Array(items) => items
                .iter()
                .map(|item| item.as_str().map(str::to_string).unwrap_or_else(|| item.to_string()))
                .collect::<Vec<_>>()
                .join(","),
            other => other.to_string(),
        };
        values.insert(format!("LATCHKEY_{}", key.to_ascii_uppercase()), text);
    }
    Ok(values)
}

fn parse_master_key(text: &str) -> Result<[u8; 32], String> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(text))
        .map_err(|_| "expected 32 bytes in base64 (try: openssl rand -base64 32)".to_string())?;
    bytes
        .try_into()
        .map_err(|bytes: Vec<u8>| format!("expected 32 bytes in base64, got {} bytes", bytes.len()))
}

/// Durations such as `72h`, `10m`, `30s`, `250ms`, `7d`, `1h30m` or `0s`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let problem = || format!("expected a duration such as 72h, 10m, 30s or 0s, got {text:?}");
    let text = text.trim();
    let mut total_ms: u64 = 0;
    let mut rest = text;
    if rest.is_empty() {
        return Err(problem());
    }
    while !rest.is_empty() {
        let digits_end = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(problem)?;
        let amount: u64 = rest[..digits_end].parse().map_err(|_| problem())?;
        rest = &rest[digits_end..];
        let unit_end = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let unit_ms = match &rest[..unit_end] {
            "ms" => 1,
            "s" => 1000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return Err(problem()),
        };
        rest = &rest[unit_end..];
        total_ms = amount
            .checked_mul(unit_ms)
            .and_then(|ms| total_ms.checked_add(ms))
            .filter(|ms| *ms <= 10 * 365 * 86_400_000)
            .ok_or_else(problem)?;
    }
    Ok(Duration::from_millis(total_ms))
}

/// `argon2id:m=19456,t=2,p=1`
fn parse_password_hash(text: &str) -> Result<PasswordHashParams, String> {
    let problem = || format!("expected argon2id:m=KIB,t=N,p=N, got {text:?}");
    let parameters = text.strip_prefix("argon2id:").ok_or_else(problem)?;
    let (mut memory_kib, mut iterations, mut parallelism) = (None, None, None);
    for part in parameters.split(',') {
        let (key, value) = part.split_once('=').ok_or_else(problem)?;
        let value: u32 = value.trim().parse().map_err(|_| problem())?;
        match key.trim() {
            "m" => memory_kib = Some(value),
            "t" => iterations = Some(value),
            "p" => parallelism = Some(value),
            _ => return Err(problem()),
        }
    }
    let params = PasswordHashParams {
        memory_kib: memory_kib.ok_or_else(problem)?,
        iterations: iterations.ok_or_else(problem)?,
        parallelism: parallelism.ok_or_else(problem)?,
    };
    argon2::Params::new(params.memory_kib, params.iterations, params.parallelism, None)
        .map_err(|error| format!("{error} in {text:?}"))?;
    Ok(params)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let values = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Config::from_values(&values)
    }

    #[test]
    fn defaults_match_the_design() {
        let config = config(&[]).unwrap();
        assert_eq!(config.bind.to_string(), "127.0.0.1:8080");
        assert_eq!(config.database_url, "sqlite://data/latchkey.db");
        assert_eq!(config.recovery_delay, Duration::from_secs(72 * 3600));
        assert_eq!(config.sudo_ttl, Duration::from_secs(600));
        assert_eq!(config.smtp_timeout, Duration::from_secs(15));
        assert_eq!(config.require_2fa, TwoFactorPolicy::Admins);
        assert!(!config.cookies_secure());
    }

    #[test]
    fn a_bad_value_names_its_variable() {
        let error = config(&[("LATCHKEY_REQUIRE_2FA", "sometimes")]).unwrap_err();
        assert_eq!(error.variable, "LATCHKEY_REQUIRE_2FA");
        assert!(error.to_string().starts_with("LATCHKEY_REQUIRE_2FA: "));
        assert_eq!(
            config(&[("LATCHKEY_BIND", "nope")]).unwrap_err().variable,
            "LATCHKEY_BIND"
        );
        assert_eq!(
            config(&[("LATCHKEY_MASTER_KEY", "c2hvcnQ=")]).unwrap_err().variable,
            "LATCHKEY_MASTER_KEY"
        );
        assert_eq!(
            config(&[("LATCHKEY_PREVIOUS_MASTER_KEYS", "c2hvcnQ=")])
                .unwrap_err()
                .variable,
            "LATCHKEY_PREVIOUS_MASTER_KEYS"
        );
        assert_eq!(
            config(&[("LATCHKEY_SUDO_TTL", "ten")]).unwrap_err().variable,
            "LATCHKEY_SUDO_TTL"
        );
        for outside in ["0s", "21s", "1h"] {
            assert_eq!(
                config(&[("LATCHKEY_SMTP_TIMEOUT", outside)]).unwrap_err().variable,
                "LATCHKEY_SMTP_TIMEOUT"
            );
        }
        assert_eq!(
            config(&[("LATCHKEY_SMTP_TIMEOUT", "20s")]).unwrap().smtp_timeout,
            MAX_SMTP_TIMEOUT
        );
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("0s").unwrap(), Duration::ZERO);
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("7d").unwrap(), Duration::from_secs(7 * 86400));
        assert!(parse_duration("10").is_err());
        assert!(parse_duration("h").is_err());
        assert!(parse_duration("5w").is_err());
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn password_hash_parameters_parse_and_validate() {
        let params = parse_password_hash("argon2id:m=65536,t=3,p=2").unwrap();
        assert_eq!(
            params,
            PasswordHashParams {
                memory_kib: 65536,
                iterations: 3,
                parallelism: 2
            }
        );
        assert!(parse_password_hash("bcrypt:12").is_err());
        assert!(parse_password_hash("argon2id:m=1,t=1,p=1").is_err());
    }

    #[test]
    fn https_public_url_makes_cookies_secure() {
        assert!(config(&[("LATCHKEY_PUBLIC_URL", "https://auth.example.com")])
            .unwrap()
            .cookies_secure());
        assert!(!config(&[("LATCHKEY_PUBLIC_URL", "http://127.0.0.1:9000")])
            .unwrap()
            .cookies_secure());
    }

    #[test]
    fn secrets_are_redacted_in_debug() {
        let config = config(&[("LATCHKEY_SMTP_URL", "smtps://user:hunter2@mail.example.com")]).unwrap();
        assert!(!format!("{config:?}").contains("hunter2"));
    }

    #[test]
    fn previous_master_keys_are_a_comma_separated_list() {
        use base64::Engine;
        let encode = |byte: u8| base64::engine::general_purpose::STANDARD.encode([byte; 32]);
        let list = format!("{}, {}", encode(1), encode(2));
        let config = config(&[("LATCHKEY_PREVIOUS_MASTER_KEYS", list.as_str())]).unwrap();
        assert_eq!(config.previous_master_keys, vec![Secret([1u8; 32]), Secret([2u8; 32])]);
        assert!(!format!("{config:?}").contains(&encode(1)));
    }
}
