//! Cryptographic building blocks: the master key and its subkeys, keyed hashes of tokens and
//! codes, authenticated encryption of secrets at rest, and Argon2id password hashing on a bounded
//! blocking pool.

use std::path::Path;
use std::sync::Arc;

use anyhow::{anyhow, Context};
use argon2::password_hash::{Output, ParamsString, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{KeyInit, XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

use crate::config::{Config, PasswordHashParams};

type HmacSha256 = Hmac<Sha256>;

/// Keys derived with HKDF, one per purpose, so that a token MAC can never be confused with a code
/// MAC or an encryption key.
///
/// Two roots, because they age differently (docs/operations.md, "Rotating the master key"):
/// - the **master key** (`LATCHKEY_MASTER_KEY`) encrypts things at rest: TOTP secrets, queued email
///   bodies, and the MAC root. Each ciphertext names the key it was sealed under (`key_id`), so
///   `latchkey keys rotate` can re-encrypt everything under a new master key, after which the old one
///   is no longer needed.
/// - the **MAC root** keys the HMACs of tokens and backup codes. Those hashes cannot be recomputed
///   (the codes and tokens are not stored), so the MAC root must outlive any one master key: it is
///   32 random bytes created on first start and stored in the database sealed under the master key
///   (see `keyring`); a rotation re-seals it without changing it.
#[derive(Clone)]
pub struct Keys {
    token_mac: [u8; 32],
    code_mac: [u8; 32],
    current: SealingKeys,
    /// Earlier master keys (`LATCHKEY_PREVIOUS_MASTER_KEYS`), still able to open what they sealed.
    previous: Vec<SealingKeys>,
    /// Identifies the current master key; stored beside every ciphertext made under it.
    pub key_id: String,
}

/// The encryption subkeys of one master key.
#[derive(Clone)]
struct SealingKeys {
    key_id: String,
    secret_encryption: [u8; 32],
    outbox_encryption: [u8; 32],
    key_material_encryption: [u8; 32],
}

impl SealingKeys {
    fn derive(master_key: &[u8; 32]) -> SealingKeys {
        let expand = expander(master_key);
        SealingKeys {
            key_id: hex::encode(&expand(b"key id")[..8]),
            secret_encryption: expand(b"totp secret encryption"),
            outbox_encryption: expand(b"outbox encryption"),
            key_material_encryption: expand(b"key material encryption"),
        }
    }
}

fn expander(root: &[u8; 32]) -> impl Fn(&[u8]) -> [u8; 32] {
    let hkdf = hkdf::Hkdf::<Sha256>::new(Some(b"latchkey v1"), root);
    move |label: &[u8]| {
        let mut key = [0u8; 32];
        hkdf.expand(label, &mut key)
            .expect("32 bytes is a valid HKDF-SHA256 length");
        key
    }
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let previous: Vec<&str> = self.previous.iter().map(|keys| keys.key_id.as_str()).collect();
        write!(
            formatter,
            "Keys {{ key_id: {:?}, previous: {:?}, .. }}",
            self.key_id, previous
        )
    }
}

/// The master keys from the configuration: the current one and any earlier ones kept for a rotation.
pub struct MasterKeys {
    pub current: [u8; 32],
    pub previous: Vec<[u8; 32]>,
}

impl MasterKeys {
    /// The master key from the configuration, or from `DATA_DIR/master.key`, generated there
    /// (mode 0600) on first start so the default setup works without any preparation.
    pub fn load(config: &Config) -> anyhow::Result<MasterKeys> {
        let current = match &config.master_key {
            Some(secret) => secret.0,
            None => load_or_create_master_key(&config.data_dir.join("master.key"))?,
        };
        let previous = config
            .previous_master_keys
            .iter()
            .map(|secret| secret.0)
            .filter(|key| *key != current)
            .collect();
        Ok(MasterKeys { current, previous })
    }

    /// The identifier stored beside ciphertexts made under the current key.
    pub fn key_id(&self) -> String {
        SealingKeys::derive(&self.current).key_id
    }

    /// Seals the MAC root for storage; answers the sealed bytes and the key id they need.
    pub fn seal_mac_root(&self, mac_root: &[u8; 32]) -> (Vec<u8>, String) {
        let keys = SealingKeys::derive(&self.current);
        (seal(&keys.key_material_encryption, mac_root, b"mac root"), keys.key_id)
    }

    /// Opens the stored MAC root with whichever configured master key sealed it.
    pub fn open_mac_root(&self, sealed: &[u8], key_id: &str) -> anyhow::Result<[u8; 32]> {
        let keys = std::iter::once(&self.current)
            .chain(&self.previous)
            .map(SealingKeys::derive)
            .find(|keys| keys.key_id == key_id)
            .ok_or_else(|| unknown_key(key_id))?;
        open(&keys.key_material_encryption, sealed, b"mac root")?
            .try_into()
            .map_err(|_| anyhow!("the stored MAC root is not 32 bytes"))
    }

    /// Everything keyed: encryption under these master keys, MACs under `mac_root`.
    pub fn with_mac_root(&self, mac_root: &[u8; 32]) -> Keys {
        let expand = expander(mac_root);
        let current = SealingKeys::derive(&self.current);
        Keys {
            token_mac: expand(b"token mac"),
            code_mac: expand(b"backup code mac"),
            key_id: current.key_id.clone(),
            current,
            previous: self.previous.iter().map(SealingKeys::derive).collect(),
        }
    }
}

fn unknown_key(key_id: &str) -> anyhow::Error {
    anyhow!(
        "data is sealed under master key {key_id}, which is not configured: set it as LATCHKEY_MASTER_KEY \
         or add it to LATCHKEY_PREVIOUS_MASTER_KEYS"
    )
}

impl Keys {
    /// Keys for one master key with a MAC root derived from it: for tests and tools without a
    /// database. The server stores a random MAC root instead (`keyring::load`).
    pub fn derive(master_key: &[u8; 32]) -> Keys {
        let master = MasterKeys {
            current: *master_key,
            previous: Vec::new(),
        };
        master.with_mac_root(&expander(master_key)(b"mac root"))
    }

    /// Key ids of the earlier master keys still configured.
    pub fn previous_key_ids(&self) -> Vec<String> {
        self.previous.iter().map(|keys| keys.key_id.clone()).collect()
    }

    /// HMAC-SHA-256 of a bearer token (session, challenge, recovery, reset). Only this is stored.
    pub fn token_hash(&self, token: &str) -> Vec<u8> {
        mac(&self.token_mac, &[token.as_bytes()])
    }

    /// HMAC-SHA-256 of a backup code bound to its user, so equal codes of two users differ.
    pub fn backup_code_hash(&self, user_id: &str, canonical_code: &str) -> Vec<u8> {
        mac(&self.code_mac, &[user_id.as_bytes(), b"\0", canonical_code.as_bytes()])
    }

    /// Encrypts a second-factor secret under the current master key (store `key_id` beside it);
    /// the user id is associated data, so a ciphertext copied to another user's row does not decrypt.
    pub fn seal_secret(&self, user_id: &str, plaintext: &[u8]) -> Vec<u8> {
        seal(&self.current.secret_encryption, plaintext, user_id.as_bytes())
    }

    /// Decrypts a secret with the master key it was sealed under, named by its stored `key_id`.
    pub fn open_secret(&self, user_id: &str, sealed: &[u8], key_id: &str) -> anyhow::Result<Vec<u8>> {
        let keys = self.sealing_keys(key_id).ok_or_else(|| unknown_key(key_id))?;
        open(&keys.secret_encryption, sealed, user_id.as_bytes())
    }

    /// Queued email bodies hold links with tokens, so they are encrypted until delivered.
    pub fn seal_outbox(&self, email_id: &str, plaintext: &[u8]) -> Vec<u8> {
        seal(&self.current.outbox_encryption, plaintext, email_id.as_bytes())
    }

    /// Opens a queued body under the current master key or, for emails queued before a rotation,
    /// an earlier one.
    pub fn open_outbox(&self, email_id: &str, sealed: &[u8]) -> anyhow::Result<Vec<u8>> {
        std::iter::once(&self.current)
            .chain(&self.previous)
            .find_map(|keys| open(&keys.outbox_encryption, sealed, email_id.as_bytes()).ok())
            .ok_or_else(|| anyhow!("queued email does not decrypt under any configured master key"))
    }

    /// Whether a queued body is sealed under the current master key (a rotation skips it).
    pub fn outbox_is_current(&self, email_id: &str, sealed: &[u8]) -> bool {
        open(&self.current.outbox_encryption, sealed, email_id.as_bytes()).is_ok()
    }

    /// A CSRF token bound to a browser session: a MAC of its token, so nothing is stored.
    pub fn csrf_token(&self, session_token: &str) -> String {
        URL_SAFE_NO_PAD.encode(mac(&self.token_mac, &[b"csrf\0", session_token.as_bytes()]))
    }

    fn sealing_keys(&self, key_id: &str) -> Option<&SealingKeys> {
        std::iter::once(&self.current)
            .chain(&self.previous)
            .find(|keys| keys.key_id == key_id)
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

/// A new master key as `LATCHKEY_MASTER_KEY` takes it: 32 random bytes in base64.
pub fn generate_master_key() -> String {
    let mut key = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut key);
    STANDARD.encode(key)
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
                let matches = password_matches(password.as_bytes(), &parsed);
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
            .spawn(move || {
                empty_working_memory();
                while let Some(job) = next_hashing_job(&receiver) {
                    job();
                }
            });
        if let Err(error) = spawned {
            tracing::error!(%error, "could not start a hashing thread");
        }
    }
    sender
}

/// The next queued job, waiting for one if need be. A thread about to wait gives back its working
/// memory first (an idle server should not hold m KiB per thread); so does one that finds another
/// thread already waiting for jobs, as then nothing is queued. Under a flood every thread finds a
/// job queued and keeps its memory.
fn next_hashing_job(receiver: &std::sync::Mutex<tokio::sync::mpsc::Receiver<HashJob>>) -> Option<HashJob> {
    let mut receiver = match receiver.try_lock() {
        Ok(receiver) => receiver,
        Err(std::sync::TryLockError::WouldBlock) => {
            empty_working_memory();
            receiver.lock().ok()?
        }
        Err(std::sync::TryLockError::Poisoned(_)) => return None,
    };
    match receiver.try_recv() {
        Ok(job) => Some(job),
        Err(_) => {
            empty_working_memory();
            receiver.blocking_recv()
        }
    }
}

fn argon2_for(params: PasswordHashParams) -> anyhow::Result<Argon2<'static>> {
    let params = Params::new(params.memory_kib, params.iterations, params.parallelism, None)
        .map_err(|error| anyhow!("argon2 parameters: {error}"))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

fn hash_now(params: PasswordHashParams, password: &str) -> anyhow::Result<String> {
    let argon = argon2_for(params)?;
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    let mut salt_bytes = [0u8; 64];
    let salt_bytes = salt
        .decode_b64(&mut salt_bytes)
        .map_err(|error| anyhow!("salt: {error}"))?;
    let mut output = [0u8; Params::DEFAULT_OUTPUT_LEN];
    argon2_into_working_memory(&argon, password.as_bytes(), salt_bytes, &mut output)
        .map_err(|error| anyhow!("hashing failed: {error}"))?;
    let phc = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(argon.params()).map_err(|error| anyhow!("argon2 parameters: {error}"))?,
        salt: Some(salt.as_salt()),
        hash: Some(Output::new(&output).map_err(|error| anyhow!("hash output: {error}"))?),
    };
    Ok(phc.to_string())
}

/// Recomputes `stored` (its algorithm, version, parameters and salt) for `password` and compares
/// the outputs in constant time. A stored hash the parameters of which Argon2 refuses matches
/// nothing.
fn password_matches(password: &[u8], stored: &PasswordHash<'_>) -> bool {
    let (Some(salt), Some(expected)) = (stored.salt, stored.hash) else {
        return false;
    };
    let argon = match (
        Algorithm::try_from(stored.algorithm),
        stored.version.map(Version::try_from).transpose(),
        Params::try_from(stored),
    ) {
        (Ok(algorithm), Ok(version), Ok(params)) => Argon2::new(algorithm, version.unwrap_or_default(), params),
        _ => return false,
    };
    let mut salt_bytes = [0u8; 64];
    let Ok(salt_bytes) = salt.decode_b64(&mut salt_bytes) else {
        return false;
    };
    let mut output = vec![0u8; expected.len()];
    argon2_into_working_memory(&argon, password, salt_bytes, &mut output).is_ok()
        && constant_time_eq(&output, expected.as_bytes())
}

thread_local! {
    /// A hashing thread's Argon2 working memory (m KiB), kept from one hash to the next while jobs
    /// are queued and given back when the queue runs dry. Allocating it per hash, as
    /// `Argon2::hash_password` does, costs a 19 MiB memset and, whenever glibc hands the block
    /// back to the kernel, ~5,000 page faults: measured at a third of a hashing thread's time
    /// under a login flood. `None` on other threads: they allocate per hash.
    static WORKING_MEMORY: std::cell::RefCell<Option<Vec<Block>>> = const { std::cell::RefCell::new(None) };
}

/// Gives this thread working memory of its own, empty (freeing what it held).
fn empty_working_memory() {
    WORKING_MEMORY.with(|memory| *memory.borrow_mut() = Some(Vec::new()));
}

/// Argon2 writes every block before it reads it, so memory left by the previous hash is never
/// an input to the next.
fn argon2_into_working_memory(
    argon: &Argon2<'_>,
    password: &[u8],
    salt: &[u8],
    output: &mut [u8],
) -> argon2::Result<()> {
    let blocks = argon.params().block_count();
    WORKING_MEMORY.with(|memory| match memory.borrow_mut().as_mut() {
        Some(memory) => {
            if memory.len() < blocks {
                memory.resize(blocks, Block::default());
            }
            argon.hash_password_into_with_memory(password, salt, output, &mut memory[..blocks])
        }
        None => argon.hash_password_into_with_memory(password, salt, output, vec![Block::default(); blocks]),
    })
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
        let key_id = keys.key_id.clone();
        assert_eq!(keys.open_secret("alice", &sealed, &key_id).unwrap(), b"secret bytes");
        assert!(keys.open_secret("bob", &sealed, &key_id).is_err());
        assert!(Keys::derive(&[2u8; 32]).open_secret("alice", &sealed, &key_id).is_err());
        assert!(keys.open_secret("alice", &sealed[..10], &key_id).is_err());
    }

    #[test]
    fn a_new_master_key_opens_what_the_previous_one_sealed_and_keeps_the_macs() {
        let mac_root = [9u8; 32];
        let old = MasterKeys {
            current: [1u8; 32],
            previous: Vec::new(),
        }
        .with_mac_root(&mac_root);
        let sealed_secret = old.seal_secret("alice", b"secret");
        let sealed_email = old.seal_outbox("email-1", b"body");

        let rotated = MasterKeys {
            current: [2u8; 32],
            previous: vec![[1u8; 32]],
        };
        let new = rotated.with_mac_root(&mac_root);
        assert_ne!(new.key_id, old.key_id);
        assert_eq!(new.previous_key_ids(), vec![old.key_id.clone()]);
        assert_eq!(
            new.open_secret("alice", &sealed_secret, &old.key_id).unwrap(),
            b"secret"
        );
        assert_eq!(new.open_outbox("email-1", &sealed_email).unwrap(), b"body");
        assert!(!new.outbox_is_current("email-1", &sealed_email));
        // Token and backup-code hashes depend on the MAC root only, so they survive the rotation.
        assert_eq!(new.token_hash("token"), old.token_hash("token"));
        assert_eq!(
            new.backup_code_hash("alice", "ABCD"),
            old.backup_code_hash("alice", "ABCD")
        );

        // Once the old key is dropped, what it sealed no longer opens, and the error says why.
        let only_new = MasterKeys {
            current: [2u8; 32],
            previous: Vec::new(),
        };
        let error = only_new
            .with_mac_root(&mac_root)
            .open_secret("alice", &sealed_secret, &old.key_id)
            .unwrap_err();
        assert!(error.to_string().contains("LATCHKEY_PREVIOUS_MASTER_KEYS"));

        let (sealed_root, key_id) = rotated.seal_mac_root(&mac_root);
        assert_eq!(key_id, new.key_id);
        assert_eq!(only_new.open_mac_root(&sealed_root, &key_id).unwrap(), mac_root);
        assert!(only_new.open_mac_root(&sealed_root, &old.key_id).is_err());
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

    #[test]
    fn hashes_agree_with_the_argon2_crate_both_ways_whatever_memory_was_left_behind() {
        use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};
        // As on a hashing thread: working memory kept from one hash to the next.
        empty_working_memory();
        let ours = hash_now(FAST, "correct horse").unwrap();
        let parsed = PasswordHash::new(&ours).unwrap();
        assert!(Argon2::default().verify_password(b"correct horse", &parsed).is_ok());

        let salt = SaltString::generate(&mut rand::rngs::OsRng);
        let theirs = argon2_for(FAST)
            .unwrap()
            .hash_password(b"correct horse", &salt)
            .unwrap()
            .to_string();
        // A larger hash first leaves more, and different, working memory on this thread.
        let larger = PasswordHashParams {
            memory_kib: 4 * FAST.memory_kib,
            ..FAST
        };
        let larger_hash = hash_now(larger, "another password").unwrap();
        assert!(password_matches(
            b"another password",
            &PasswordHash::new(&larger_hash).unwrap()
        ));
        let theirs = PasswordHash::new(&theirs).unwrap();
        assert!(password_matches(b"correct horse", &theirs));
        assert!(!password_matches(b"correct horsf", &theirs));
        assert!(password_matches(b"correct horse", &parsed));
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
