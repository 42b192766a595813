//! Webhook secrets and signatures.
//!
//! A secret made by `createIntegration` is never stored: it is
//! `hex(HMAC-SHA256(webhook key, "lockstep-webhook-secret:" + salt))`, where
//! the salt is random and kept with the integration. A copy of the database
//! therefore holds no usable secret; the server's webhook key (`webhook_key`,
//! or one derived from the JWT secret) recreates it to check a signature.
//! A secret the user gives (a HubSpot app's client secret) cannot be
//! derived: it is stored sealed with XChaCha20-Poly1305 under a key derived
//! from the webhook key, bound to its integration's id ([`WebhookKey::seal`]).
//! Every comparison of a signature or a secret is constant-time.

use crate::config::{Config, Secret};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use uuid::Uuid;

type HmacSha256 = Hmac<Sha256>;

/// The server's key secrets are derived from.
#[derive(Clone)]
pub struct WebhookKey([u8; 32]);

impl std::fmt::Debug for WebhookKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookKey(***)")
    }
}

impl WebhookKey {
    /// `webhook_key`, else one derived from the JWT secret (configured or in
    /// the generated secret file); `None` when neither exists.
    pub fn from_config(config: &Config) -> Option<WebhookKey> {
        let material = match (&config.webhook_key, &config.jwt_secret) {
            (Some(Secret(k)), _) => k.clone(),
            (None, Some(Secret(jwt))) => format!("lockstep-webhooks:{jwt}"),
            (None, None) => {
                let s = std::fs::read_to_string(&config.secret_file).ok()?;
                format!("lockstep-webhooks:{}", s.trim())
            }
        };
        if material.trim().is_empty() {
            return None;
        }
        Some(WebhookKey(sha256(material.as_bytes())))
    }

    /// The secret derived from `salt`.
    pub fn secret(&self, salt: &str) -> String {
        hex::encode(hmac(
            &self.0,
            &[b"lockstep-webhook-secret:", salt.as_bytes()],
        ))
    }
}

impl WebhookKey {
    fn cipher(&self) -> XChaCha20Poly1305 {
        let k = hmac(&self.0, &[b"lockstep-webhook-encryption"]);
        XChaCha20Poly1305::new(&Key::from(k))
    }

    /// Encrypts a secret the user gave (XChaCha20-Poly1305 under a key
    /// derived from this one, a random nonce, the integration's id as
    /// associated data so a ciphertext is only good on its own row):
    /// `v1:` + base64(nonce ‖ ciphertext). `None` only for a secret too
    /// long for the cipher (never for one that passed the input checks).
    pub fn seal(&self, integration: Uuid, secret: &str) -> Option<String> {
        let nonce: [u8; 24] = rand::random();
        let sealed = self
            .cipher()
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: secret.as_bytes(),
                    aad: integration.as_bytes(),
                },
            )
            .ok()?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        Some(format!("v1:{}", STANDARD.encode(out)))
    }

    /// The secret [`seal`](Self::seal) encrypted for `integration`; `None`
    /// when it was sealed under another key or for another row, or altered.
    pub fn open(&self, integration: Uuid, sealed: &str) -> Option<String> {
        let raw = STANDARD.decode(sealed.strip_prefix("v1:")?).ok()?;
        if raw.len() < 24 + 16 {
            return None;
        }
        let (nonce, ciphertext) = raw.split_at(24);
        let nonce: [u8; 24] = nonce.try_into().ok()?;
        let plain = self
            .cipher()
            .decrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: ciphertext,
                    aad: integration.as_bytes(),
                },
            )
            .ok()?;
        String::from_utf8(plain).ok()
    }
}

/// A new random salt (32 hex characters).
pub fn new_salt() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

pub fn sha256(data: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    Sha256::digest(data).into()
}

/// HMAC-SHA256 of the concatenated `parts` under `key`.
pub fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac = mac(key);
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

fn mac(key: &[u8]) -> HmacSha256 {
    // HMAC takes a key of any length: this never fails.
    match <HmacSha256 as Mac>::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC accepts keys of any length"),
    }
}

/// Whether `expected` is the HMAC-SHA256 of `parts` under `key`, checked in
/// constant time (`verify_slice`).
pub fn verify_hmac(key: &[u8], parts: &[&[u8]], expected: &[u8]) -> bool {
    let mut mac = mac(key);
    for p in parts {
        mac.update(p);
    }
    mac.verify_slice(expected).is_ok()
}

/// Constant-time equality of two secrets (lengths may leak, contents not).
pub fn same_secret(a: &str, b: &str) -> bool {
    bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc4231_case_2() {
        let mac = hmac(b"Jefe", &[b"what do ya want ", b"for nothing?"]);
        assert_eq!(
            hex::encode(mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert!(verify_hmac(
            b"Jefe",
            &[b"what do ya want for nothing?"],
            &mac
        ));
        assert!(!verify_hmac(
            b"Jeff",
            &[b"what do ya want for nothing?"],
            &mac
        ));
    }

    #[test]
    fn secrets_depend_on_key_and_salt() {
        let a = WebhookKey(sha256(b"a"));
        let b = WebhookKey(sha256(b"b"));
        assert_eq!(a.secret("s1"), a.secret("s1"));
        assert_ne!(a.secret("s1"), a.secret("s2"));
        assert_ne!(a.secret("s1"), b.secret("s1"));
        assert!(same_secret("abc", "abc") && !same_secret("abc", "abd"));
    }

    #[test]
    fn sealed_secrets_open_only_with_their_key_and_row() {
        let a = WebhookKey(sha256(b"a"));
        let b = WebhookKey(sha256(b"b"));
        let (row, other) = (Uuid::now_v7(), Uuid::now_v7());
        let sealed = a.seal(row, "hubspot-client-secret").unwrap();
        assert!(!sealed.contains("hubspot-client-secret"));
        assert_ne!(sealed, a.seal(row, "hubspot-client-secret").unwrap());
        assert_eq!(
            a.open(row, &sealed).as_deref(),
            Some("hubspot-client-secret")
        );
        assert_eq!(b.open(row, &sealed), None);
        assert_eq!(a.open(other, &sealed), None);
        let mut tampered = sealed.clone().into_bytes();
        tampered[20] = if tampered[20] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(tampered).unwrap();
        assert_eq!(a.open(row, &tampered), None);
    }
}
