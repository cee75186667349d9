//! The gateway's own signing keys: the key-set document the launcher keeps
//! in `$ATTACH_DATA_DIR/signing-keys.json` and hands to the filter, which
//! signs with the current key and publishes the public halves as a JWKS
//! (RFC 7517) at `/.well-known/jwks.json`, so that anything behind the
//! gateway can check what it signs with public keys alone.
//!
//! A key is Ed25519 (RFC 8037 `OKP`, JWS `alg: EdDSA`, the default) or
//! P-256 (RFC 7518 `EC`, `alg: ES256`); see [`Algorithm`]. One key is
//! current (no `retired` time) and signs; a key replaced by a newer one
//! keeps being published until its `published_until`, so tokens it signed
//! shortly before the rotation still verify, and then it is left out. The
//! keys of a set need not share an algorithm: a set moving to another one
//! publishes the retiring key next to the current one. A key's `kid` is
//! its RFC 7638 thumbprint, so the same key always has the same id.
//!
//! `seed` holds the key's 32 secret bytes, base64url: the Ed25519 seed of
//! RFC 8032, or the P-256 private scalar `d` (big-endian).
//!
//! ```json
//! {"keys": [{"kid": "…", "alg": "EdDSA", "seed": "<32 bytes, base64url>",
//!            "created": 1764720000, "retired": 1767312000,
//!            "published_until": 1767398400},
//!           {"kid": "…", "alg": "ES256", "seed": "<32 bytes, base64url>",
//!            "created": 1767312000}]}
//! ```

mod algorithm;
mod ed25519;
mod es256;
mod jwks;
mod public;
mod rfc6979;
mod signer;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;
use serde_json::{Value, json};

pub use algorithm::Algorithm;
pub(crate) use ed25519::Ed25519Signer;
pub use es256::P256Public;
pub use jwks::{NotAJwks, parse_jwks};
pub use public::{PublicKey, VerifyingKey};
use signer::Signer;

/// The file in `ATTACH_DATA_DIR` holding the key set.
pub const KEYS_FILE: &str = "signing-keys.json";
/// The environment variable in which the launcher hands the key set's
/// text to Envoy (for the filter) and to the companion service.
pub const KEYS_VAR: &str = "ATTACH_SIGNING_KEYS";
/// Where, below the gateway's public URL, the filter serves the JWKS.
pub const JWKS_PATH: &str = "/.well-known/jwks.json";

/// The key-set document, as stored.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct KeySet {
    pub keys: Vec<StoredKey>,
}

/// One key of the set, private half included.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StoredKey {
    pub kid: String,
    pub alg: String,
    /// The 32 secret bytes, base64url: an Ed25519 seed or a P-256 scalar.
    pub seed: String,
    /// Unix seconds.
    pub created: u64,
    /// When a newer key took over signing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retired: Option<u64>,
    /// Until when a retired key stays published.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub published_until: Option<u64>,
}

/// Why a key set cannot be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyError {
    NotTheShape(String),
    BadSeed {
        kid: String,
    },
    WrongKid {
        kid: String,
    },
    UnknownAlgorithm {
        kid: String,
    },
    /// Exactly one key must be current.
    CurrentKeys(usize),
}

impl std::fmt::Display for KeyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyError::NotTheShape(reason) => write!(f, "not a signing key set: {reason}"),
            KeyError::BadSeed { kid } => write!(
                f,
                "key {kid:?}: seed is not 32 bytes of base64url making a key of its alg"
            ),
            KeyError::WrongKid { kid } => {
                write!(f, "key {kid:?}: kid is not the key's RFC 7638 thumbprint")
            }
            KeyError::UnknownAlgorithm { kid } => write!(
                f,
                "key {kid:?}: alg must be {} or {}",
                Algorithm::EdDSA,
                Algorithm::ES256
            ),
            KeyError::CurrentKeys(n) => {
                write!(f, "{n} keys are current (not retired); exactly one must be")
            }
        }
    }
}

/// A new current key of the default algorithm, Ed25519, from 32 random
/// bytes (the caller's randomness: this crate draws none).
pub fn new_key(seed: [u8; 32], now: u64) -> StoredKey {
    stored(
        &Signer::Ed25519(ed25519::Ed25519Signer::from_seed(&seed)),
        &seed,
        now,
    )
}

/// A new current key of `alg` from 32 random bytes; `None` when they make
/// no key of it (for ES256, about one draw in 2^32 is not below the
/// curve's order), and the caller draws again.
pub fn new_key_of(alg: Algorithm, secret: [u8; 32], now: u64) -> Option<StoredKey> {
    Signer::new(alg, &secret).map(|signer| stored(&signer, &secret, now))
}

fn stored(signer: &Signer, secret: &[u8; 32], now: u64) -> StoredKey {
    StoredKey {
        kid: signer.public().thumbprint(),
        alg: signer.algorithm().name().into(),
        seed: URL_SAFE_NO_PAD.encode(secret),
        created: now,
        retired: None,
        published_until: None,
    }
}

impl KeySet {
    /// Reads the document. Member by member from a JSON value rather than
    /// through a derived deserialiser, which would cost the filter's wasm
    /// module far more code than this.
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        let shape = |reason: &str| KeyError::NotTheShape(reason.to_string());
        let doc: Value = serde_json::from_str(text).map_err(|e| shape(&e.to_string()))?;
        let keys = doc
            .get("keys")
            .and_then(Value::as_array)
            .ok_or_else(|| shape("no keys array"))?;
        let keys = keys
            .iter()
            .map(|key| {
                let text = |name: &str| {
                    key.get(name)
                        .and_then(Value::as_str)
                        .map(str::to_string)
                        .ok_or_else(|| shape(&format!("a key without {name}")))
                };
                let time = |name: &str| match key.get(name) {
                    None | Some(Value::Null) => Ok(None),
                    Some(v) => v
                        .as_u64()
                        .map(Some)
                        .ok_or_else(|| shape(&format!("{name} is not unix seconds"))),
                };
                Ok(StoredKey {
                    kid: text("kid")?,
                    alg: text("alg")?,
                    seed: text("seed")?,
                    created: time("created")?.ok_or_else(|| shape("a key without created"))?,
                    retired: time("retired")?,
                    published_until: time("published_until")?,
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(KeySet { keys })
    }

    /// Makes `next` the current key when the current one is older than
    /// `rotate_after` seconds, is of another algorithm than `next`, or
    /// there is none; the key it replaces stays published for `overlap`
    /// seconds, and keys whose publication ended are dropped. Returns
    /// whether the set changed.
    pub fn rotate(&mut self, next: StoredKey, now: u64, rotate_after: u64, overlap: u64) -> bool {
        let before = self.keys.len();
        self.keys
            .retain(|k| k.published_until.is_none_or(|until| until > now));
        let mut changed = self.keys.len() != before;
        let due = self
            .keys
            .iter()
            .filter(|k| k.retired.is_none())
            .all(|k| now.saturating_sub(k.created) >= rotate_after || k.alg != next.alg);
        if due {
            for key in self.keys.iter_mut().filter(|k| k.retired.is_none()) {
                key.retired = Some(now);
                key.published_until = Some(now.saturating_add(overlap));
            }
            self.keys.push(next);
            changed = true;
        }
        changed
    }
}

/// A usable key set: the key that signs and the public keys published.
#[derive(Clone)]
pub struct SigningKeys {
    signer: Signer,
    kid: String,
    published: Vec<PublicKey>,
}

impl std::fmt::Debug for SigningKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKeys")
            .field("kid", &self.kid)
            .field("alg", &self.signer.algorithm())
            .finish_non_exhaustive()
    }
}

impl SigningKeys {
    /// Reads the document, refusing anything but a set with exactly one
    /// current key and every `kid` its key's thumbprint.
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        Self::from_set(&KeySet::parse(text)?)
    }

    pub fn from_set(set: &KeySet) -> Result<Self, KeyError> {
        let mut current = None;
        let mut published = Vec::with_capacity(set.keys.len());
        let mut n_current = 0;
        for stored in &set.keys {
            let kid = || stored.kid.clone();
            let alg = Algorithm::from_name(&stored.alg)
                .ok_or_else(|| KeyError::UnknownAlgorithm { kid: kid() })?;
            let signer = Signer::decode(alg, &stored.seed)
                .ok_or_else(|| KeyError::BadSeed { kid: kid() })?;
            let public = signer.public();
            if public.thumbprint() != stored.kid {
                return Err(KeyError::WrongKid { kid: kid() });
            }
            if stored.retired.is_none() {
                n_current += 1;
                current = Some(signer);
            }
            published.push(PublicKey {
                kid: kid(),
                key: public,
                published_until: stored.retired.map(|_| stored.published_until.unwrap_or(0)),
            });
        }
        match (n_current, current) {
            (1, Some(signer)) => Ok(Self {
                kid: signer.public().thumbprint(),
                signer,
                published,
            }),
            (n, _) => Err(KeyError::CurrentKeys(n)),
        }
    }

    /// The `kid` of the key that signs.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The algorithm of the key that signs.
    pub fn algorithm(&self) -> Algorithm {
        self.signer.algorithm()
    }

    /// The JWS signature over `message` with the current key, by its
    /// algorithm: 64 bytes either way (Ed25519's `R || S`, ES256's `r || s`).
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.signer.sign(message)
    }

    /// The keys published at `now`, current key included.
    pub fn published(&self, now: u64) -> impl Iterator<Item = &PublicKey> {
        self.published.iter().filter(move |k| k.published_at(now))
    }

    /// The published key with `kid` at `now`: what a token the gateway
    /// signed is checked with.
    pub fn verifying_key(&self, kid: &str, now: u64) -> Option<&VerifyingKey> {
        self.published(now).find(|k| k.kid == kid).map(|k| &k.key)
    }

    /// The algorithms of the keys published at `now`, the current key's
    /// first, each once.
    pub fn algorithms(&self, now: u64) -> Vec<Algorithm> {
        let mut algorithms = vec![self.algorithm()];
        for key in self.published(now) {
            if !algorithms.contains(&key.key.algorithm()) {
                algorithms.push(key.key.algorithm());
            }
        }
        algorithms
    }

    /// The JWKS document served at `/.well-known/jwks.json`.
    pub fn jwks(&self, now: u64) -> Value {
        json!({"keys": self.published(now).map(PublicKey::jwk).collect::<Vec<_>>()})
    }
}

#[cfg(test)]
mod tests;
