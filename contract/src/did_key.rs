//! A did:key Ed25519 identity (W3C did:key, method `key`): the DID, the
//! file that keeps its seed, and the self-issued DID-JWTs it signs.
//!
//! The launcher's local identity and the example agents' identities are
//! all of this kind, so the launcher creates the files and the agents read
//! them by the same rules. A DID is `did:key:z` + base58btc (multibase `z`)
//! of the multicodec `ed25519-pub` (0xed, as the varint `0xed 0x01`) and the
//! 32-byte public key; its verification method is `DID#` + the same
//! multibase value, which is what a token names as its `kid`.
//!
//! The file is `{"did": "did:key:z…", "seed": "<32 bytes, base64url>"}`;
//! the DID is kept next to the seed so a person can tell the files apart,
//! and a file whose DID is not the seed's is refused.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use crate::gateway_keys::Ed25519Signer;

/// Multicodec `ed25519-pub` (0xed) as an unsigned varint.
const ED25519_PUB: [u8; 2] = [0xed, 0x01];
const BASE58_ALPHABET: &[u8; 58] = b"123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";

/// Why an identity file cannot be used; never quotes the seed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdentityError {
    /// Not `{"did": "...", "seed": "..."}`.
    NotTheShape,
    /// The seed is not 32 bytes of base64url.
    BadSeed,
    /// The DID is not the one the seed makes.
    WrongDid,
}

impl std::fmt::Display for IdentityError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            IdentityError::NotTheShape => "not an identity file ({\"did\", \"seed\"})",
            IdentityError::BadSeed => "the seed is not 32 bytes of base64url",
            IdentityError::WrongDid => "the seed does not match the DID",
        })
    }
}

/// A did:key identity and its private key.
#[derive(Clone)]
pub struct DidKeyIdentity {
    did: String,
    seed: [u8; 32],
    signer: Ed25519Signer,
}

impl std::fmt::Debug for DidKeyIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The seed stays out of every debug print.
        f.debug_struct("DidKeyIdentity")
            .field("did", &self.did)
            .finish_non_exhaustive()
    }
}

impl DidKeyIdentity {
    /// The identity of a 32-byte Ed25519 seed (RFC 8032).
    pub fn from_seed(seed: [u8; 32]) -> Self {
        let signer = Ed25519Signer::from_seed(&seed);
        let did = ed25519_did(signer.public().as_bytes());
        Self { did, seed, signer }
    }

    /// Reads an identity file's text.
    pub fn parse(text: &str) -> Result<Self, IdentityError> {
        let value: Value = serde_json::from_str(text).map_err(|_| IdentityError::NotTheShape)?;
        let field = |name: &str| value.get(name).and_then(Value::as_str);
        let (Some(did), Some(seed)) = (field("did"), field("seed")) else {
            return Err(IdentityError::NotTheShape);
        };
        let seed: [u8; 32] = URL_SAFE_NO_PAD
            .decode(seed)
            .ok()
            .and_then(|s| s.try_into().ok())
            .ok_or(IdentityError::BadSeed)?;
        let identity = Self::from_seed(seed);
        if identity.did != did {
            return Err(IdentityError::WrongDid);
        }
        Ok(identity)
    }

    /// The identity file's text, seed included: to be written only to a
    /// file its owner alone can read.
    pub fn file_text(&self) -> String {
        let stored = json!({"did": self.did, "seed": URL_SAFE_NO_PAD.encode(self.seed)});
        serde_json::to_string_pretty(&stored).unwrap_or_default()
    }

    pub fn did(&self) -> &str {
        &self.did
    }

    /// The DID URL of the key's verification method: `DID#z…`.
    pub fn key_id(&self) -> String {
        let fragment = self.did.strip_prefix("did:key:").unwrap_or_default();
        format!("{}#{fragment}", self.did)
    }

    /// A compact EdDSA DID-JWT (RFC 7519, RFC 8037): header `alg` `EdDSA`,
    /// `typ` `JWT`, `kid` the verification method; claims `iss` = `sub` =
    /// the DID, `aud`, `iat` = `now`, `exp` = `now + ttl_secs`, and a fresh
    /// `jti` when one is given (an RFC 8693 actor token is worth replaying
    /// only for as long as it lives, so its callers keep that short).
    pub fn token(&self, aud: &str, now: u64, ttl_secs: u64, jti: Option<&str>) -> String {
        let header = json!({"alg": "EdDSA", "typ": "JWT", "kid": self.key_id()});
        let mut claims = json!({
            "iss": self.did,
            "sub": self.did,
            "aud": aud,
            "iat": now,
            "exp": now.saturating_add(ttl_secs),
        });
        if let (Some(jti), Some(object)) = (jti, claims.as_object_mut()) {
            object.insert("jti".into(), Value::String(jti.to_string()));
        }
        let mut token = URL_SAFE_NO_PAD.encode(header.to_string());
        token.push('.');
        token.push_str(&URL_SAFE_NO_PAD.encode(claims.to_string()));
        let signature = self.signer.sign(token.as_bytes());
        token.push('.');
        token.push_str(&URL_SAFE_NO_PAD.encode(signature));
        token
    }
}

/// The did:key of an Ed25519 public key.
pub fn ed25519_did(public: &[u8; 32]) -> String {
    let mut bytes = ED25519_PUB.to_vec();
    bytes.extend_from_slice(public);
    format!("did:key:z{}", base58_encode(&bytes))
}

/// Bitcoin-alphabet base58 (the multibase `z` alphabet), each leading zero
/// byte a leading `1`. The quadratic schoolbook conversion: did:key
/// values are 34 bytes.
fn base58_encode(bytes: &[u8]) -> String {
    let zeros = bytes.iter().take_while(|&&b| b == 0).count();
    // Base-58 digits, least significant first.
    let mut digits: Vec<u8> = Vec::with_capacity(bytes.len() * 138 / 100 + 1);
    for &byte in bytes.iter().skip(zeros) {
        let mut carry = u32::from(byte);
        for digit in digits.iter_mut() {
            let v = (u32::from(*digit) << 8) + carry;
            *digit = (v % 58) as u8;
            carry = v / 58;
        }
        while carry > 0 {
            digits.push((carry % 58) as u8);
            carry /= 58;
        }
    }
    let mut text = "1".repeat(zeros);
    for &digit in digits.iter().rev() {
        if let Some(&c) = BASE58_ALPHABET.get(usize::from(digit)) {
            text.push(char::from(c));
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex32(text: &str) -> [u8; 32] {
        let bytes: Vec<u8> = (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
            .collect();
        bytes.try_into().unwrap()
    }

    #[test]
    fn w3c_did_key_ed25519_test_vector() {
        // The did:key method specification's Ed25519 test vectors
        // (test-vectors/ed25519-x25519.json, "did:key:z6MkiTBz…"): public
        // key 3b6a27bc…, the `z6Mk` prefix being multicodec 0xed01.
        let public = hex32("3b6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da29");
        assert_eq!(
            ed25519_did(&public),
            "did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp"
        );
    }

    #[test]
    fn base58_keeps_leading_zero_bytes() {
        // The Bitcoin alphabet's own cases: 0x00 0x00 0x01 is "112", 0x3a is "21".
        assert_eq!(base58_encode(&[0, 0, 1]), "112");
        assert_eq!(base58_encode(&[58]), "21");
        assert_eq!(base58_encode(&[]), "");
    }

    #[test]
    fn a_file_round_trips_and_a_wrong_one_is_refused() {
        let id = DidKeyIdentity::from_seed([7; 32]);
        let back = DidKeyIdentity::parse(&id.file_text()).unwrap();
        assert_eq!(back.did(), id.did());
        let other = DidKeyIdentity::from_seed([8; 32]);
        let swapped = id.file_text().replace(id.did(), other.did());
        assert_eq!(
            DidKeyIdentity::parse(&swapped).unwrap_err(),
            IdentityError::WrongDid
        );
        assert_eq!(
            DidKeyIdentity::parse(r#"{"did": "did:key:z6Mk", "seed": "AAAA"}"#).unwrap_err(),
            IdentityError::BadSeed
        );
        assert_eq!(
            DidKeyIdentity::parse("[]").unwrap_err(),
            IdentityError::NotTheShape
        );
        assert!(!format!("{id:?}").contains(&URL_SAFE_NO_PAD.encode([7u8; 32])));
    }

    #[test]
    fn tokens_name_the_did_and_its_key_and_verify() {
        let id = DidKeyIdentity::from_seed([9; 32]);
        let token = id.token("http://gw", 1_000, 60, Some("j-1"));
        let parts: Vec<&str> = token.split('.').collect();
        let decode = |p: &str| -> Value {
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(p).unwrap()).unwrap()
        };
        let (header, claims) = (decode(parts[0]), decode(parts[1]));
        let fragment = id.did().strip_prefix("did:key:").unwrap();
        assert_eq!(header["alg"], "EdDSA");
        assert_eq!(header["kid"], format!("{}#{fragment}", id.did()));
        assert_eq!(claims["iss"], id.did());
        assert_eq!(claims["sub"], id.did());
        assert_eq!(claims["aud"], "http://gw");
        assert_eq!(
            (claims["iat"].as_u64(), claims["exp"].as_u64()),
            (Some(1_000), Some(1_060))
        );
        assert_eq!(claims["jti"], "j-1");
        // RFC 8037 section 3.1: an Ed25519 signature over `header.payload`,
        // checked by the reference implementation with the DID's own key.
        let signature: [u8; 64] = URL_SAFE_NO_PAD
            .decode(parts[2])
            .unwrap()
            .try_into()
            .unwrap();
        let public = Ed25519Signer::from_seed(&[9; 32]).public();
        public
            .verify_strict(
                format!("{}.{}", parts[0], parts[1]).as_bytes(),
                &ed25519_dalek::Signature::from_bytes(&signature),
            )
            .unwrap();
        assert_eq!(ed25519_did(public.as_bytes()), id.did());
        let plain = id.token("a", 0, 1, None);
        assert_eq!(decode(plain.split('.').nth(1).unwrap()).get("jti"), None);
    }
}
