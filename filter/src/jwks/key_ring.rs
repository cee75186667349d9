//! Each VM's parsed copy of the key sets held in shared data.
//!
//! Shared data stores the raw JWKS bytes (one fetch serves every VM); each VM
//! parses them once per change, noticed through the entry's CAS value.

use crate::jwks::key_set::{JwkSet, JwksError};
use crate::verify::{KeyState, KeyStore};

#[derive(Default)]
struct Slot {
    /// CAS of the shared-data entry last parsed.
    seen_cas: Option<u32>,
    keys: Option<JwkSet>,
    generation: u64,
    /// No keys could be fetched yet and the last attempt failed.
    unreachable: bool,
}

pub struct KeyRing {
    slots: Vec<Slot>,
    next_generation: u64,
}

impl KeyRing {
    pub fn new(issuers: usize) -> Self {
        KeyRing {
            slots: (0..issuers).map(|_| Slot::default()).collect(),
            next_generation: 1,
        }
    }

    /// Whether the shared entry with this CAS still needs parsing.
    pub fn is_stale(&self, issuer: usize, cas: u32) -> bool {
        self.slots
            .get(issuer)
            .is_some_and(|s| s.seen_cas != Some(cas))
    }

    /// Replaces an issuer's keys. A document that does not parse leaves the
    /// previous keys in place: stale keys beat no keys.
    pub fn load(&mut self, issuer: usize, cas: u32, raw: &[u8]) -> Result<usize, JwksError> {
        if let Some(slot) = self.slots.get_mut(issuer) {
            slot.seen_cas = Some(cas);
        }
        let set = JwkSet::parse(raw)?;
        let n = set.len();
        self.install(issuer, cas, set);
        Ok(n)
    }

    /// Puts an already parsed key set in place: the VM that fetched a set
    /// parses it once (building per-key tables costs milliseconds), not twice.
    pub fn install(&mut self, issuer: usize, cas: u32, set: JwkSet) {
        let Some(slot) = self.slots.get_mut(issuer) else {
            return;
        };
        slot.seen_cas = Some(cas);
        slot.keys = Some(set);
        slot.generation = self.next_generation;
        slot.unreachable = false;
        self.next_generation += 1;
    }

    pub fn set_unreachable(&mut self, issuer: usize, unreachable: bool) {
        if let Some(slot) = self.slots.get_mut(issuer) {
            slot.unreachable = unreachable && slot.keys.is_none();
        }
    }
}

impl KeyStore for KeyRing {
    fn keys(&self, issuer: usize) -> KeyState<'_> {
        match self.slots.get(issuer) {
            Some(Slot {
                keys: Some(keys),
                generation,
                ..
            }) => KeyState::Ready {
                keys,
                generation: *generation,
            },
            Some(Slot {
                unreachable: true, ..
            }) => KeyState::Unavailable,
            _ => KeyState::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 8037 appendix A.2's Ed25519 public key.
    const JWKS: &[u8] = br#"{"keys":[{"kty":"OKP","crv":"Ed25519","kid":"a",
        "x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}"#;

    fn state(ring: &KeyRing, issuer: usize) -> &'static str {
        match ring.keys(issuer) {
            KeyState::Pending => "pending",
            KeyState::Unavailable => "unavailable",
            KeyState::Ready { .. } => "ready",
        }
    }

    fn generation(ring: &KeyRing) -> u64 {
        match ring.keys(0) {
            KeyState::Ready { generation, .. } => generation,
            _ => 0,
        }
    }

    #[test]
    fn loads_once_per_shared_version() {
        let mut ring = KeyRing::new(2);
        assert_eq!(state(&ring, 0), "pending");
        assert!(ring.is_stale(0, 5));
        assert_eq!(ring.load(0, 5, JWKS), Ok(1));
        assert_eq!(state(&ring, 0), "ready");
        assert_eq!(state(&ring, 1), "pending");
        assert!(!ring.is_stale(0, 5));
        let first = generation(&ring);
        ring.load(0, 6, JWKS).unwrap();
        assert!(generation(&ring) > first);
    }

    #[test]
    fn bad_document_keeps_previous_keys() {
        let mut ring = KeyRing::new(1);
        ring.load(0, 1, JWKS).unwrap();
        let before = generation(&ring);
        assert!(ring.load(0, 2, b"{not json").is_err());
        assert_eq!(state(&ring, 0), "ready");
        assert_eq!(generation(&ring), before);
        assert!(!ring.is_stale(0, 2), "a bad version is not parsed again");
    }

    #[test]
    fn unreachable_only_without_keys() {
        let mut ring = KeyRing::new(1);
        ring.set_unreachable(0, true);
        assert_eq!(state(&ring, 0), "unavailable");
        ring.load(0, 1, JWKS).unwrap();
        assert_eq!(state(&ring, 0), "ready");
        ring.set_unreachable(0, true);
        assert_eq!(state(&ring, 0), "ready");
        assert_eq!(state(&ring, 7), "pending");
    }
}
