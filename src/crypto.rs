//! Cryptographic building blocks: the master key and its subkeys, keyed hashes of tokens and
//! codes, authenticated encryption of secrets at rest, and Argon2id password hashing on a bounded
//! blocking pool.

use std::path::Path;
use std::sync::Arc;

use anyhow::{anyhow, Context};
use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{KeyInit, XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

use crate::config::{Config, PasswordHashParams};

type HmacSha256 = Hmac<Sha256>;

/// Keys derived from the master key with HKDF, one per purpose, so that a token MAC can never be
/// confused with a code MAC or an encryption key.
#[derive(Clone)]
pub struct Keys {
    token_mac: [u8; 32],
    code_mac: [u8; 32],
    secret_encryption: [u8; 32],
    outbox_encryption: [u8; 32],
    /// Identifies the master key a ciphertext was made under (first bytes of a MAC of a label).
    pub key_id: String,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "Keys {{ key_id: {:?}, .. }}", self.key_id)
    }
}

impl Keys {
    pub fn derive(master_key: &[u8; 32]) -> Keys {
        let hkdf = hkdf::Hkdf::<Sha256>::new(Some(b"latchkey v1"), master_key);
        let expand = |label: &[u8]| {
            let mut key = [0u8; 32];
            hkdf.expand(label, &mut key)
                .expect("32 bytes is a valid HKDF-SHA256 length");
            key
        };
        let identifier = expand(b"key id");
        Keys {
            token_mac: expand(b"token mac"),
            code_mac: expand(b"backup code mac"),
            secret_encryption: expand(b"totp secret encryption"),
            outbox_encryption: expand(b"outbox encryption"),
            key_id: hex::encode(&identifier[..8]),
        }
    }

    /// The master key from the configuration, or from `DATA_DIR/master.key`, generated there
    /// (mode 0600) on first start so the default setup works without any preparation.
    pub fn load(config: &Config) -> anyhow::Result<Keys> {
        if let Some(secret) = &config.master_key {
            return Ok(Keys::derive(&secret.0));
        }
        let path = config.data_dir.join("master.key");
        Ok(Keys::derive(&load_or_create_master_key(&path)?))
    }

    /// HMAC-SHA-256 of a bearer token (session, challenge, recovery, reset). Only this is stored.
    pub fn token_hash(&self, token: &str) -> Vec<u8> {
        mac(&self.token_mac, &[token.as_bytes()])
    }

    /// HMAC-SHA-256 of a backup code bound to its user, so equal codes of two users differ.
    pub fn backup_code_hash(&self, user_id: &str, canonical_code: &str) -> Vec<u8> {
        mac(&self.code_mac, &[user_id.as_bytes(), b"\0", canonical_code.as_bytes()])
    }

    /// Encrypts a second-factor secret; the user id is associated data, so a ciphertext copied to
    /// another user's row does not decrypt.
    pub fn seal_secret(&self, user_id: &str, plaintext: &[u8]) -> Vec<u8> {
        seal(&self.secret_encryption, plaintext, user_id.as_bytes())
    }

    pub fn open_secret(&self, user_id: &str, sealed: &[u8]) -> anyhow::Result<Vec<u8>> {
        open(&self.secret_encryption, sealed, user_id.as_bytes())
    }

    /// Queued email bodies hold links with tokens, so they are encrypted until delivered.
    pub fn seal_outbox(&self, email_id: &str, plaintext: &[u8]) -> Vec<u8> {
        seal(&self.outbox_encryption, plaintext, email_id.as_bytes())
    }

    pub fn open_outbox(&self, email_id: &str, sealed: &[u8]) -> anyhow::Result<Vec<u8>> {
        open(&self.outbox_encryption, sealed, email_id.as_bytes())
    }

    /// A CSRF token bound to a browser session: a MAC of its token, so nothing is stored.
    pub fn csrf_token(&self, session_token: &str) -> String {
        URL_SAFE_NO_PAD.encode(mac(&self.token_mac, &[b"csrf\0", session_token.as_bytes()]))
    }
}

fn mac(key: &[u8; 32], parts: &[&[u8]]) -> Vec<u8> {
    let mut mac = <HmacSha256 as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().to_vec()
}

fn seal(key: &[u8; 32], plaintext: &[u8], associated_data: &[u8]) -> Vec<u8> {
    let cipher = XChaCha20Poly1305::new(key.into());
    let mut nonce = [0u8; 24];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    let ciphertext = cipher
        .encrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: plaintext,
                aad: associated_data,
            },
        )
        .expect("XChaCha20-Poly1305 encryption cannot fail for in-memory data");
    let mut sealed = nonce.to_vec();
    sealed.extend_from_slice(&ciphertext);
    sealed
}

fn open(key: &[u8; 32], sealed: &[u8], associated_data: &[u8]) -> anyhow::Result<Vec<u8>> {
    if sealed.len() < 24 {
        return Err(anyhow!("sealed value is too short"));
    }
    let (nonce, ciphertext) = sealed.split_at(24);
    XChaCha20Poly1305::new(key.into())
        .decrypt(
            XNonce::from_slice(nonce),
            Payload {
                msg: ciphertext,
                aad: associated_data,
            },
        )
        .map_err(|_| anyhow!("sealed value does not decrypt under this key for this owner"))
}

fn load_or_create_master_key(path: &Path) -> anyhow::Result<[u8; 32]> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let bytes = STANDARD
                .decode(text.trim())
                .with_context(|| format!("{} is not base64", path.display()))?;
            bytes
                .try_into()
                .map_err(|_| anyhow!("{} must hold 32 bytes in base64", path.display()))
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
            }
            let mut key = [0u8; 32];
            rand::rngs::OsRng.fill_bytes(&mut key);
            write_private_file(path, STANDARD.encode(key).as_bytes())?;
            tracing::info!(path = %path.display(), "generated a new master key; back it up with the database");
            Ok(key)
        }
        Err(error) => Err(error).with_context(|| format!("reading {}", path.display())),
    }
}

fn write_private_file(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(contents)?;
    file.sync_all()?;
    Ok(())
}

/// 256 random bits, URL-safe base64: session, challenge, recovery and reset tokens.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Constant-time equality for secrets compared in memory.
pub fn constant_time_eq(left: &[u8], right: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    left.len() == right.len() && bool::from(left.ct_eq(right))
}

/// What checking a password found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PasswordCheck {
    pub matches: bool,
    /// The stored hash uses other parameters than the configured ones: re-hash it now.
    pub needs_rehash: bool,
}

/// Argon2id hashing on a fixed pool of threads sized to the cores, so a login flood neither stalls
/// the async workers nor allocates unbounded memory: each hash holds `m` KiB, and a fixed set of
/// threads keeps reusing the same allocator arenas (tokio's blocking pool would spread the 19 MiB
/// blocks over hundreds of threads, and glibc keeps each thread's arena).
#[derive(Clone)]
pub struct PasswordHasher {
    params: PasswordHashParams,
    jobs: tokio::sync::mpsc::Sender<HashJob>,
    /// Hash verified for unknown emails, so the answer takes as long as for a real account.
    dummy_hash: Arc<String>,
}

impl PasswordHasher {
    pub fn new(params: PasswordHashParams, threads: usize) -> anyhow::Result<PasswordHasher> {
        let dummy_hash = hash_now(params, "latchkey dummy password for unknown accounts")?;
        Ok(PasswordHasher {
            params,
            jobs: start_hashing_threads(threads.max(1)),
            dummy_hash: Arc::new(dummy_hash),
        })
    }

    pub async fn hash(&self, password: &str) -> anyhow::Result<String> {
        let params = self.params;
        let password = password.to_owned();
        self.run(move || hash_now(params, &password)).await?
    }

    /// Checks `password` against `stored`, or against the dummy hash when there is no account,
    /// spending the same work either way.
    pub async fn verify(&self, password: &str, stored: Option<&str>) -> anyhow::Result<PasswordCheck> {
        let is_real = stored.is_some();
        let stored = stored
            .map(str::to_owned)
            .unwrap_or_else(|| self.dummy_hash.as_ref().clone());
        let password = password.to_owned();
        let params = self.params;
        let check = self
            .run(move || -> anyhow::Result<PasswordCheck> {
                let parsed = PasswordHash::new(&stored).map_err(|error| anyhow!("stored hash unreadable: {error}"))?;
                let matches = Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok();
                Ok(PasswordCheck {
                    matches,
                    needs_rehash: matches && !uses_params(&parsed, params),
                })
            })
            .await??;
        Ok(PasswordCheck {
            matches: check.matches && is_real,
            needs_rehash: check.needs_rehash && is_real,
        })
    }

    async fn run<T: Send + 'static>(&self, work: impl FnOnce() -> T + Send + 'static) -> anyhow::Result<T> {
        let (answer, answered) = tokio::sync::oneshot::channel();
        let job: HashJob = Box::new(move || {
            let _ = answer.send(work());
        });
        self.jobs.send(job).await.map_err(|_| anyhow!("hashing pool stopped"))?;
        answered.await.context("hashing job failed")
    }
}

type HashJob = Box<dyn FnOnce() + Send>;

fn start_hashing_threads(threads: usize) -> tokio::sync::mpsc::Sender<HashJob> {
    // Waiting logins queue here (a bounded channel: further senders wait asynchronously).
    let (sender, receiver) = tokio::sync::mpsc::channel::<HashJob>(4096);
    let receiver = Arc::new(std::sync::Mutex::new(receiver));
    for index in 0..threads {
        let receiver = receiver.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("argon2-{index}"))
            .spawn(move || loop {
                let job = match receiver.lock() {
                    Ok(mut receiver) => receiver.blocking_recv(),
                    Err(_) => return,
                };
                match job {
                    Some(job) => job(),
                    None => return,
                }
            });
        if let Err(error) = spawned {
            tracing::error!(%error, "could not start a hashing thread");
        }
    }
    sender
}

fn argon2_for(params: PasswordHashParams) -> anyhow::Result<Argon2<'static>> {
    let params = Params::new(params.memory_kib, params.iterations, params.parallelism, None)
        .map_err(|error| anyhow!("argon2 parameters: {error}"))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

fn hash_now(params: PasswordHashParams, password: &str) -> anyhow::Result<String> {
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    argon2_for(params)?
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|error| anyhow!("hashing failed: {error}"))
}

fn uses_params(hash: &PasswordHash<'_>, params: PasswordHashParams) -> bool {
    let value = |name: &str| hash.params.get_decimal(name);
    hash.algorithm.as_str() == "argon2id"
        && value("m") == Some(params.memory_kib)
        && value("t") == Some(params.iterations)
        && value("p") == Some(params.parallelism)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FAST: PasswordHashParams = PasswordHashParams {
        memory_kib: 256,
        iterations: 1,
        parallelism: 1,
    };

    #[test]
    fn subkeys_differ_and_are_stable() {
        let keys = Keys::derive(&[7u8; 32]);
        let again = Keys::derive(&[7u8; 32]);
        assert_eq!(keys.token_hash("t"), again.token_hash("t"));
        assert_ne!(keys.token_hash("t"), keys.backup_code_hash("", "t"));
        assert_ne!(keys.key_id, Keys::derive(&[8u8; 32]).key_id);
    }

    #[test]
    fn sealed_secret_is_bound_to_its_owner() {
        let keys = Keys::derive(&[1u8; 32]);
        let sealed = keys.seal_secret("alice", b"secret bytes");
        assert_eq!(keys.open_secret("alice", &sealed).unwrap(), b"secret bytes");
        assert!(keys.open_secret("bob", &sealed).is_err());
        assert!(Keys::derive(&[2u8; 32]).open_secret("alice", &sealed).is_err());
        assert!(keys.open_secret("alice", &sealed[..10]).is_err());
    }

    #[tokio::test]
    async fn password_verifies_and_flags_old_parameters() {
        let old = PasswordHasher::new(FAST, 1).unwrap();
        let stored = old.hash("correct horse").await.unwrap();
        let check = old.verify("correct horse", Some(&stored)).await.unwrap();
        assert_eq!(
            check,
            PasswordCheck {
                matches: true,
                needs_rehash: false
            }
        );
        assert!(!old.verify("wrong horse", Some(&stored)).await.unwrap().matches);

        let stronger = PasswordHashParams {
            memory_kib: 512,
            ..FAST
        };
        let current = PasswordHasher::new(stronger, 1).unwrap();
        let check = current.verify("correct horse", Some(&stored)).await.unwrap();
        assert_eq!(
            check,
            PasswordCheck {
                matches: true,
                needs_rehash: true
            }
        );
    }

    #[tokio::test]
    async fn unknown_account_never_matches() {
        let hasher = PasswordHasher::new(FAST, 1).unwrap();
        let check = hasher
            .verify("latchkey dummy password for unknown accounts", None)
            .await
            .unwrap();
        assert!(!check.matches);
    }

    #[test]
    fn master_key_file_is_created_private_and_reused() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("master.key");
        let first = load_or_create_master_key(&path).unwrap();
        assert_eq!(load_or_create_master_key(&path).unwrap(), first);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
    }
}
