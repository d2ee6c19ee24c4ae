//! A software authenticator for the tests: an ES256 (P-256) key answering WebAuthn options as a
//! browser and a security key together would, with attestation "none". It can be told to lie
//! (another origin, another relying party, a counter that goes backwards) to check the server
//! refuses.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use rand::rngs::OsRng;
use rand::RngCore;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const USER_PRESENT: u8 = 0x01;
const USER_VERIFIED: u8 = 0x04;
const ATTESTED_CREDENTIAL_DATA: u8 = 0x40;

pub struct SoftAuthenticator {
    key: SigningKey,
    pub credential_id: Vec<u8>,
    /// The signature counter; each assertion increments it before signing, as keys do.
    pub counter: u32,
    /// The origin the "browser" reports in clientDataJSON.
    pub origin: String,
    /// The relying party id whose hash goes into the authenticator data; None = the one asked for.
    pub rp_id_override: Option<String>,
    user_handle: Option<String>,
}

impl SoftAuthenticator {
    pub fn new(origin: &str) -> SoftAuthenticator {
        let mut credential_id = vec![0u8; 32];
        OsRng.fill_bytes(&mut credential_id);
        SoftAuthenticator {
            key: SigningKey::random(&mut OsRng),
            credential_id,
            counter: 0,
            origin: origin.to_string(),
            rp_id_override: None,
            user_handle: None,
        }
    }

    pub fn credential_id_text(&self) -> String {
        URL_SAFE_NO_PAD.encode(&self.credential_id)
    }

    /// Answers `{publicKey: creation options}` as navigator.credentials.create() would, in the
    /// JSON form the server expects.
    pub fn register(&mut self, options: &Value) -> Value {
        let public_key = &options["publicKey"];
        let rp_id = public_key["rp"]["id"].as_str().expect("rp.id").to_string();
        self.user_handle = public_key["user"]["id"].as_str().map(str::to_string);
        let client_data = self.client_data("webauthn.create", public_key);
        let point = self.key.verifying_key().to_encoded_point(false);
        let cose_key = cbor_map(vec![
            (cbor_int(1), cbor_int(2)),  // kty: EC2
            (cbor_int(3), cbor_int(-7)), // alg: ES256
            (cbor_int(-1), cbor_int(1)), // crv: P-256
            (cbor_int(-2), cbor_bytes(point.x().expect("x"))),
            (cbor_int(-3), cbor_bytes(point.y().expect("y"))),
        ]);
        let mut authenticator_data =
            self.authenticator_data(&rp_id, USER_PRESENT | USER_VERIFIED | ATTESTED_CREDENTIAL_DATA, 0);
        authenticator_data.extend_from_slice(&[0u8; 16]); // AAGUID: none
        authenticator_data.extend_from_slice(&(self.credential_id.len() as u16).to_be_bytes());
        authenticator_data.extend_from_slice(&self.credential_id);
        authenticator_data.extend_from_slice(&cose_key);
        let attestation_object = cbor_map(vec![
            (cbor_text("fmt"), cbor_text("none")),
            (cbor_text("attStmt"), cbor_map(vec![])),
            (cbor_text("authData"), cbor_bytes(&authenticator_data)),
        ]);
        json!({
            "id": self.credential_id_text(),
            "rawId": self.credential_id_text(),
            "type": "public-key",
            "response": {
                "attestationObject": URL_SAFE_NO_PAD.encode(attestation_object),
                "clientDataJSON": URL_SAFE_NO_PAD.encode(client_data),
                "transports": ["usb"],
            },
            "clientExtensionResults": {},
        })
    }

    /// Answers `{publicKey: request options}` as navigator.credentials.get() would.
    pub fn assert(&mut self, options: &Value) -> Value {
        self.counter += 1;
        let counter = self.counter;
        self.assert_with_counter(options, counter)
    }

    /// An assertion that reports `counter` (a copy of the key would report a stale one).
    pub fn assert_with_counter(&self, options: &Value, counter: u32) -> Value {
        let public_key = &options["publicKey"];
        let rp_id = public_key["rpId"].as_str().unwrap_or("localhost").to_string();
        let client_data = self.client_data("webauthn.get", public_key);
        let authenticator_data = self.authenticator_data(&rp_id, USER_PRESENT | USER_VERIFIED, counter);
        let mut signed = authenticator_data.clone();
        signed.extend_from_slice(&Sha256::digest(&client_data));
        let signature: Signature = self.key.sign(&signed);
        json!({
            "id": self.credential_id_text(),
            "rawId": self.credential_id_text(),
            "type": "public-key",
            "response": {
                "authenticatorData": URL_SAFE_NO_PAD.encode(&authenticator_data),
                "clientDataJSON": URL_SAFE_NO_PAD.encode(&client_data),
                "signature": URL_SAFE_NO_PAD.encode(signature.to_der().as_bytes()),
                "userHandle": self.user_handle,
            },
            "clientExtensionResults": {},
        })
    }

    fn client_data(&self, kind: &str, public_key: &Value) -> Vec<u8> {
        let challenge = public_key["challenge"].as_str().expect("challenge");
        serde_json::to_vec(&json!({
            "type": kind,
            "challenge": challenge,
            "origin": self.origin,
            "crossOrigin": false,
        }))
        .expect("client data")
    }

    fn authenticator_data(&self, rp_id: &str, flags: u8, counter: u32) -> Vec<u8> {
        let rp_id = self.rp_id_override.as_deref().unwrap_or(rp_id);
        let mut data = Sha256::digest(rp_id.as_bytes()).to_vec();
        data.push(flags);
        data.extend_from_slice(&counter.to_be_bytes());
        data
    }
}

// The few CBOR (RFC 8949) items an attestation needs, in canonical form.

fn cbor_head(major: u8, value: u64) -> Vec<u8> {
    let major = major << 5;
    match value {
        0..=23 => vec![major | value as u8],
        24..=0xff => vec![major | 24, value as u8],
        0x100..=0xffff => {
            let mut head = vec![major | 25];
            head.extend_from_slice(&(value as u16).to_be_bytes());
            head
        }
        _ => {
            let mut head = vec![major | 26];
            head.extend_from_slice(&(value as u32).to_be_bytes());
            head
        }
    }
}

fn cbor_int(value: i64) -> Vec<u8> {
    if value >= 0 {
        cbor_head(0, value as u64)
    } else {
        cbor_head(1, (-1 - value) as u64)
    }
}

fn cbor_bytes(bytes: &[u8]) -> Vec<u8> {
    let mut item = cbor_head(2, bytes.len() as u64);
    item.extend_from_slice(bytes);
    item
}

fn cbor_text(text: &str) -> Vec<u8> {
    let mut item = cbor_head(3, text.len() as u64);
    item.extend_from_slice(text.as_bytes());
    item
}

fn cbor_map(entries: Vec<(Vec<u8>, Vec<u8>)>) -> Vec<u8> {
    let mut item = cbor_head(5, entries.len() as u64);
    for (key, value) in entries {
        item.extend(key);
        item.extend(value);
    }
    item
}
