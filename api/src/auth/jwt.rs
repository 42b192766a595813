//! JWT verification and issuing. Algorithms are an allow-list: HS256 with the
//! configured secret, and RS256 / ES256 / EdDSA with a configured public key.
//! `exp`, `iss`, `aud` and `sub` are required; `nbf` is honoured.

use crate::config::{Config, Secret};
use crate::error::AppError;
use entity::enums::Role;
use jsonwebtoken::{
    Algorithm, DecodingKey, EncodingKey, Header, Validation, decode, decode_header,
};
use serde::{Deserialize, Serialize};
use std::path::Path;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub role: Role,
    // Defaults only so that a token without them is reported as missing the
    // claim (by the validation, which requires them) rather than malformed.
    #[serde(default)]
    pub exp: u64,
    #[serde(default)]
    pub iat: u64,
    #[serde(default)]
    pub iss: String,
    #[serde(default)]
    pub aud: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team: Option<String>,
}

struct PublicKey {
    key: DecodingKey,
    algorithm: Algorithm,
    kid: Option<String>,
}

/// Everything needed to check (and, with a secret, issue) tokens.
pub struct JwtKeys {
    secret: Option<(EncodingKey, DecodingKey)>,
    public: Option<PublicKey>,
    issuer: String,
    audience: String,
    /// True when the HS256 secret was generated into the secret file.
    pub generated_secret: bool,
}

impl std::fmt::Debug for JwtKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtKeys")
            .field("hs256", &self.secret.is_some())
            .field("public_key", &self.public.as_ref().map(|p| p.algorithm))
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("no JWT key configured: set LOCKSTEP_JWT_SECRET or LOCKSTEP_JWT_PUBLIC_KEY")]
    Missing,
    #[error("LOCKSTEP_JWT_SECRET must be at least 32 bytes")]
    WeakSecret,
    #[error("LOCKSTEP_JWT_PUBLIC_KEY is not an RSA, EC P-256 or Ed25519 public key in PEM")]
    BadPublicKey,
    #[error("secret file {0}: {1}")]
    SecretFile(String, std::io::Error),
}

impl JwtKeys {
    /// Builds the keys from configuration. On the embedded default with no
    /// secret configured, a random secret is made once and kept in the secret file.
    pub fn from_config(config: &Config) -> Result<JwtKeys, KeyError> {
        let mut generated_secret = false;
        let secret = match &config.jwt_secret {
            Some(Secret(s)) => Some(s.clone()),
            None if config.is_embedded_default() => {
                let (s, generated) = load_or_create_secret(&config.secret_file)?;
                generated_secret = generated || s.is_some();
                s.map(|s| s.to_string())
            }
            None => None,
        };
        if let Some(s) = &secret
            && s.len() < 32
        {
            return Err(KeyError::WeakSecret);
        }
        let public = match &config.jwt_public_key {
            Some(pem) => Some(parse_public_key(pem.as_bytes(), config.jwt_key_id.clone())?),
            None => None,
        };
        if secret.is_none() && public.is_none() {
            return Err(KeyError::Missing);
        }
        Ok(JwtKeys {
            secret: secret.map(|s| {
                (
                    EncodingKey::from_secret(s.as_bytes()),
                    DecodingKey::from_secret(s.as_bytes()),
                )
            }),
            public,
            issuer: config.jwt_issuer.clone(),
            audience: config.jwt_audience.clone(),
            generated_secret,
        })
    }

    /// Verifies a token; every failure is UNAUTHENTICATED with a short reason.
    pub fn verify(&self, token: &str) -> Result<Claims, AppError> {
        let unauth = |reason: &str| AppError::Unauthenticated(format!("invalid token: {reason}"));
        let header = decode_header(token).map_err(|_| unauth("malformed"))?;
        let key = match header.alg {
            Algorithm::HS256 => {
                if header.kid.is_some() {
                    return Err(unauth("unknown key id"));
                }
                self.secret.as_ref().map(|(_, d)| d)
            }
            alg => match &self.public {
                Some(p) if p.algorithm == alg => {
                    if header.kid.is_some() && header.kid != p.kid {
                        return Err(unauth("unknown key id"));
                    }
                    Some(&p.key)
                }
                _ => None,
            },
        }
        .ok_or_else(|| unauth("algorithm not allowed"))?;

        let mut validation = Validation::new(header.alg);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        validation.validate_nbf = true;
        validation.leeway = 30;
        decode::<Claims>(token, key, &validation)
            .map(|data| data.claims)
            .map_err(|e| {
                use jsonwebtoken::errors::ErrorKind;
                if let ErrorKind::MissingRequiredClaim(claim) = e.kind() {
                    return unauth(&format!("missing the `{claim}` claim"));
                }
                let reason = match e.kind() {
                    ErrorKind::ExpiredSignature => "expired",
                    ErrorKind::ImmatureSignature => "not valid yet",
                    ErrorKind::InvalidIssuer => "wrong issuer",
                    ErrorKind::InvalidAudience => "wrong audience",
                    ErrorKind::InvalidSignature => "bad signature",
                    ErrorKind::InvalidAlgorithm => "algorithm not allowed",
                    _ => "malformed",
                };
                unauth(reason)
            })
    }

    /// Issues an HS256 token (needs the shared secret).
    pub fn issue(
        &self,
        role: Role,
        subject: &str,
        ttl: std::time::Duration,
        team: Option<String>,
    ) -> Result<String, AppError> {
        let (encoding, _) = self.secret.as_ref().ok_or_else(|| {
            AppError::invalid("tokens can only be issued with an HS256 secret configured")
        })?;
        let now = jsonwebtoken::get_current_timestamp();
        let claims = Claims {
            sub: subject.to_owned(),
            role,
            iat: now,
            exp: now + ttl.as_secs(),
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            team,
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, encoding)
            .map_err(AppError::internal)
    }
}

fn parse_public_key(pem: &[u8], kid: Option<String>) -> Result<PublicKey, KeyError> {
    let (key, algorithm) = if let Ok(k) = DecodingKey::from_rsa_pem(pem) {
        (k, Algorithm::RS256)
    } else if let Ok(k) = DecodingKey::from_ec_pem(pem) {
        (k, Algorithm::ES256)
    } else if let Ok(k) = DecodingKey::from_ed_pem(pem) {
        (k, Algorithm::EdDSA)
    } else {
        return Err(KeyError::BadPublicKey);
    };
    Ok(PublicKey {
        key,
        algorithm,
        kid,
    })
}

/// Reads the secret file, or creates it (mode 0600) with 48 random bytes.
/// Returns the secret and whether it was generated now.
fn load_or_create_secret(path: &Path) -> Result<(Option<String>, bool), KeyError> {
    let err = |e| KeyError::SecretFile(path.display().to_string(), e);
    match std::fs::read_to_string(path) {
        Ok(s) => return Ok((Some(s.trim().to_owned()), false)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(err(e)),
    }
    use base64::Engine;
    use rand::RngCore;
    let mut bytes = [0u8; 48];
    rand::rng().fill_bytes(&mut bytes);
    let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    use std::io::Write;
    let mut file = options.open(path).map_err(err)?;
    file.write_all(secret.as_bytes()).map_err(err)?;
    Ok((Some(secret), true))
}
