//! The gateway's own signing keys: the key-set document the launcher keeps
//! in `$ATTACH_DATA_DIR/signing-keys.json` and hands to the filter, which
//! signs with the current key and publishes the public halves as a JWKS
//! (RFC 7517) at `/.well-known/jwks.json`, so that anything behind the
//! gateway can check what it signs with public keys alone.
//!
//! Keys are Ed25519 (RFC 8037 `OKP`, JWS `alg: EdDSA`). One key is current
//! (no `retired` time) and signs; a key replaced by a newer one keeps being
//! published until its `published_until`, so tokens it signed shortly
//! before the rotation still verify, and then it is left out. A key's `kid`
//! is its RFC 7638 thumbprint, so the same key always has the same id.
//!
//! ```json
//! {"keys": [{"kid": "…", "alg": "EdDSA", "seed": "<32 bytes, base64url>",
//!            "created": 1764720000, "retired": 1767312000,
//!            "published_until": 1767398400}]}
//! ```

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use curve25519_dalek::constants::ED25519_BASEPOINT_POINT;
use curve25519_dalek::edwards::EdwardsPoint;
use curve25519_dalek::scalar::{Scalar, clamp_integer};
use ed25519_dalek::VerifyingKey;
use serde::Serialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256, Sha512};

/// The file in `ATTACH_DATA_DIR` holding the key set.
pub const KEYS_FILE: &str = "signing-keys.json";
/// The environment variable in which the launcher hands the key set's
/// text to Envoy (for the filter) and to the companion service.
pub const KEYS_VAR: &str = "ATTACH_SIGNING_KEYS";
/// The JWS algorithm of every key.
pub const ALGORITHM: &str = "EdDSA";
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
    /// The Ed25519 secret key (RFC 8032's 32-byte seed), base64url.
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
            KeyError::BadSeed { kid } => {
                write!(f, "key {kid:?}: seed is not 32 bytes of base64url")
            }
            KeyError::WrongKid { kid } => {
                write!(f, "key {kid:?}: kid is not the key's RFC 7638 thumbprint")
            }
            KeyError::UnknownAlgorithm { kid } => write!(f, "key {kid:?}: alg must be {ALGORITHM}"),
            KeyError::CurrentKeys(n) => {
                write!(f, "{n} keys are current (not retired); exactly one must be")
            }
        }
    }
}

/// The RFC 7638 thumbprint of an Ed25519 public key, base64url: SHA-256 of
/// its required JWK members in lexicographic order, without whitespace.
pub fn thumbprint(public: &[u8; 32]) -> String {
    let canonical = format!(
        r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#,
        URL_SAFE_NO_PAD.encode(public)
    );
    URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
}

/// Ed25519 signing (RFC 8032 section 5.1.6), written on the curve
/// arithmetic so that every multiplication of the base point is the
/// constant-time variable-base one: a signing library's fixed-base table
/// would add some 33 KB to the filter's wasm module, and the filter signs
/// seldom (it reuses what it signed).
#[derive(Clone)]
struct Ed25519Signer {
    /// The secret scalar `s` of section 5.1.5, reduced mod L.
    scalar: Scalar,
    /// The second half of the seed's digest, which makes the nonces.
    prefix: [u8; 32],
    public: [u8; 32],
}

impl Ed25519Signer {
    fn from_seed(seed: &[u8; 32]) -> Self {
        let digest: [u8; 64] = Sha512::digest(seed).into();
        let (lower, upper) = digest.split_at(32);
        let lower: [u8; 32] = lower.try_into().unwrap_or_default();
        let public = EdwardsPoint::mul_clamped(ED25519_BASEPOINT_POINT, lower)
            .compress()
            .to_bytes();
        Self {
            scalar: Scalar::from_bytes_mod_order(clamp_integer(lower)),
            prefix: upper.try_into().unwrap_or_default(),
            public,
        }
    }

    fn sign(&self, message: &[u8]) -> [u8; 64] {
        let wide = |parts: &[&[u8]]| {
            let mut h = Sha512::new();
            for part in parts {
                h.update(part);
            }
            let digest: [u8; 64] = h.finalize().into();
            Scalar::from_bytes_mod_order_wide(&digest)
        };
        let r = wide(&[&self.prefix, message]);
        let big_r = (ED25519_BASEPOINT_POINT * r).compress().to_bytes();
        let k = wide(&[&big_r, &self.public, message]);
        let s = r + k * self.scalar;
        let mut signature = [0u8; 64];
        let (left, right) = signature.split_at_mut(32);
        left.copy_from_slice(&big_r);
        right.copy_from_slice(s.as_bytes());
        signature
    }
}

/// A new current key from 32 random bytes (the caller's randomness: this
/// crate draws none).
pub fn new_key(seed: [u8; 32], now: u64) -> StoredKey {
    let public = Ed25519Signer::from_seed(&seed).public;
    StoredKey {
        kid: thumbprint(&public),
        alg: ALGORITHM.into(),
        seed: URL_SAFE_NO_PAD.encode(seed),
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
    /// `rotate_after` seconds (or there is none); the key it replaces stays
    /// published for `overlap` seconds, and keys whose publication ended
    /// are dropped. Returns whether the set changed.
    pub fn rotate(&mut self, next: StoredKey, now: u64, rotate_after: u64, overlap: u64) -> bool {
        let before = self.keys.len();
        self.keys
            .retain(|k| k.published_until.is_none_or(|until| until > now));
        let mut changed = self.keys.len() != before;
        let due = self
            .keys
            .iter()
            .filter(|k| k.retired.is_none())
            .all(|k| now.saturating_sub(k.created) >= rotate_after);
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
    signer: Ed25519Signer,
    kid: String,
    published: Vec<PublicKey>,
}

impl std::fmt::Debug for SigningKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKeys")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

/// One published public key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicKey {
    pub kid: String,
    pub key: VerifyingKey,
    pub published_until: Option<u64>,
}

impl PublicKey {
    pub fn published_at(&self, now: u64) -> bool {
        self.published_until.is_none_or(|until| now < until)
    }

    /// The key as a JWK (RFC 8037).
    pub fn jwk(&self) -> Value {
        json!({
            "kty": "OKP",
            "crv": "Ed25519",
            "x": URL_SAFE_NO_PAD.encode(self.key.as_bytes()),
            "kid": self.kid,
            "alg": ALGORITHM,
            "use": "sig",
        })
    }
}

fn seed_of(key: &StoredKey) -> Result<[u8; 32], KeyError> {
    URL_SAFE_NO_PAD
        .decode(key.seed.trim())
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .ok_or_else(|| KeyError::BadSeed {
            kid: key.kid.clone(),
        })
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
            if stored.alg != ALGORITHM {
                return Err(KeyError::UnknownAlgorithm {
                    kid: stored.kid.clone(),
                });
            }
            let signing = Ed25519Signer::from_seed(&seed_of(stored)?);
            let public =
                VerifyingKey::from_bytes(&signing.public).map_err(|_| KeyError::BadSeed {
                    kid: stored.kid.clone(),
                })?;
            if thumbprint(public.as_bytes()) != stored.kid {
                return Err(KeyError::WrongKid {
                    kid: stored.kid.clone(),
                });
            }
            if stored.retired.is_none() {
                n_current += 1;
                current = Some(signing);
            }
            published.push(PublicKey {
                kid: stored.kid.clone(),
                key: public,
                published_until: stored.retired.map(|_| stored.published_until.unwrap_or(0)),
            });
        }
        match (n_current, current) {
            (1, Some(signer)) => Ok(Self {
                kid: thumbprint(&signer.public),
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

    /// An Ed25519 signature over `message` with the current key.
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.signer.sign(message)
    }

    /// The keys published at `now`, current key included.
    pub fn published(&self, now: u64) -> impl Iterator<Item = &PublicKey> {
        self.published.iter().filter(move |k| k.published_at(now))
    }

    /// The JWKS document served at `/.well-known/jwks.json`.
    pub fn jwks(&self, now: u64) -> Value {
        json!({"keys": self.published(now).map(PublicKey::jwk).collect::<Vec<_>>()})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: u64 = 86_400;

    fn set_of(keys: Vec<StoredKey>) -> String {
        serde_json::to_string(&KeySet { keys }).unwrap()
    }

    #[test]
    fn the_kid_is_the_rfc_7638_thumbprint() {
        // RFC 8037 appendix A.3: the thumbprint of the appendix A.2 key.
        let x = URL_SAFE_NO_PAD
            .decode("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo")
            .unwrap();
        assert_eq!(
            thumbprint(&x.try_into().unwrap()),
            "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
        );
    }

    fn hex(text: &str) -> Vec<u8> {
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn signatures_are_rfc_8032_ones() {
        // RFC 8032 section 7.1, TEST 1 (the empty message) and TEST 2.
        let seed = hex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60");
        let signer = Ed25519Signer::from_seed(&seed.try_into().unwrap());
        assert_eq!(
            signer.public.to_vec(),
            hex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
        );
        assert_eq!(
            signer.sign(b"").to_vec(),
            hex(concat!(
                "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155",
                "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
            ))
        );
        let seed = hex("4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb");
        let signer = Ed25519Signer::from_seed(&seed.try_into().unwrap());
        assert_eq!(
            signer.sign(&[0x72]).to_vec(),
            hex(concat!(
                "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da",
                "085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00"
            ))
        );
    }

    #[test]
    fn signatures_agree_with_the_verifier() {
        for seed in 0..20u8 {
            let signer = Ed25519Signer::from_seed(&[seed; 32]);
            let public = VerifyingKey::from_bytes(&signer.public).unwrap();
            for message in [&b""[..], b"m", &[seed; 300]] {
                let sig = ed25519_dalek::Signature::from_bytes(&signer.sign(message));
                assert!(public.verify_strict(message, &sig).is_ok());
                assert!(public.verify_strict(b"other", &sig).is_err());
            }
        }
    }

    #[test]
    fn one_current_key_signs_and_every_published_key_is_in_the_jwks() {
        let old = new_key([1; 32], 0);
        let mut set = KeySet {
            keys: vec![old.clone()],
        };
        assert!(set.rotate(new_key([2; 32], 30 * DAY), 30 * DAY, 30 * DAY, DAY));
        let keys = SigningKeys::from_set(&set).unwrap();
        assert_ne!(keys.kid(), old.kid);
        let jwks = keys.jwks(30 * DAY + 1);
        assert_eq!(jwks["keys"].as_array().unwrap().len(), 2);
        assert_eq!(jwks["keys"][0]["kid"], old.kid.as_str());
        assert!(jwks["keys"][0].get("d").is_none(), "no private half");
        // After the overlap only the current key is published.
        let later = keys.jwks(31 * DAY);
        assert_eq!(later["keys"].as_array().unwrap().len(), 1);
        assert_eq!(later["keys"][0]["kid"], keys.kid());
        // A signature verifies with the published key of its kid.
        let sig = ed25519_dalek::Signature::from_bytes(&keys.sign(b"m"));
        let public = keys.published(0).find(|k| k.kid == keys.kid()).unwrap();
        assert!(public.key.verify_strict(b"m", &sig).is_ok());
    }

    #[test]
    fn rotation_waits_for_its_time_and_drops_what_ended() {
        let mut set = KeySet::default();
        assert!(set.rotate(new_key([1; 32], 0), 0, 30 * DAY, DAY));
        assert!(!set.rotate(new_key([2; 32], DAY), DAY, 30 * DAY, DAY));
        assert_eq!(set.keys.len(), 1);
        assert!(set.rotate(new_key([2; 32], 30 * DAY), 30 * DAY, 30 * DAY, DAY));
        assert_eq!(set.keys.len(), 2);
        // The retired key's publication ends; the next look drops it.
        assert!(set.rotate(new_key([3; 32], 31 * DAY), 31 * DAY, 30 * DAY, DAY));
        assert_eq!(set.keys.len(), 1);
        assert!(SigningKeys::from_set(&set).is_ok());
    }

    #[test]
    fn malformed_sets_are_refused() {
        let good = new_key([1; 32], 0);
        let mut wrong_kid = good.clone();
        wrong_kid.kid = new_key([2; 32], 0).kid;
        let mut bad_seed = good.clone();
        bad_seed.seed = "AAAA".into();
        let mut hs = good.clone();
        hs.alg = "HS256".into();
        let mut retired = good.clone();
        retired.retired = Some(1);
        for (text, expected) in [
            ("{}".to_string(), "not a signing key set"),
            (set_of(vec![wrong_kid]), "thumbprint"),
            (set_of(vec![bad_seed]), "32 bytes"),
            (set_of(vec![hs]), "alg must be EdDSA"),
            (set_of(vec![]), "0 keys are current"),
            (set_of(vec![retired]), "0 keys are current"),
            (set_of(vec![good.clone(), new_key([3; 32], 0)]), "2 keys"),
        ] {
            let e = SigningKeys::parse(&text).unwrap_err().to_string();
            assert!(e.contains(expected), "{text}: {e}");
        }
        assert!(SigningKeys::parse(&set_of(vec![good])).is_ok());
    }
}
