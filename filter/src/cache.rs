//! Bounded cache of verified tokens, one per worker VM.
//!
//! A signature check costs hundreds of microseconds in wasm while a hash
//! lookup costs about one, and clients reuse a token for its whole life: so a
//! token verified once is remembered, keyed by its SHA-256, until it expires.

use crate::identity::Identity;
use sha2::{Digest, Sha256};
use std::collections::{HashMap, VecDeque};

pub type TokenHash = [u8; 32];

pub fn token_hash(token: &str) -> TokenHash {
    Sha256::digest(token.as_bytes()).into()
}

/// Which key set verified a token: its issuer's index and the generation of
/// that issuer's keys at the time. A rotation that removes keys must not leave
/// tokens signed by them accepted, so a newer generation turns hits into misses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyVersion {
    pub issuer: usize,
    pub generation: u64,
}

#[derive(Clone, Debug)]
struct Entry {
    identity: Identity,
    version: KeyVersion,
}

pub struct TokenCache {
    capacity: usize,
    entries: HashMap<TokenHash, Entry>,
    /// Insertion order, for evicting the oldest when full.
    order: VecDeque<TokenHash>,
}

impl TokenCache {
    pub fn new(capacity: usize) -> Self {
        TokenCache {
            capacity,
            entries: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// The identity of a token verified earlier, while it has not expired
    /// and `current_generation` of its issuer is the one it was verified with.
    pub fn get(
        &mut self,
        hash: &TokenHash,
        now: i64,
        current_generation: impl Fn(usize) -> Option<u64>,
    ) -> Option<&Identity> {
        let fresh = self.entries.get(hash).is_some_and(|e| {
            now < e.identity.exp
                && current_generation(e.version.issuer) == Some(e.version.generation)
        });
        if !fresh {
            self.entries.remove(hash);
            return None;
        }
        self.entries.get(hash).map(|e| &e.identity)
    }

    pub fn insert(&mut self, hash: TokenHash, identity: Identity, version: KeyVersion) {
        if self.capacity == 0 {
            return;
        }
        while self.entries.len() >= self.capacity {
            match self.order.pop_front() {
                Some(old) => {
                    self.entries.remove(&old);
                }
                None => break,
            }
        }
        let entry = Entry { identity, version };
        if self.entries.insert(hash, entry).is_none() {
            self.order.push_back(hash);
        }
        // Keys whose entries were dropped on expiry linger in `order`; keep it bounded.
        if self.order.len() > self.capacity.saturating_mul(2) {
            let entries = &self.entries;
            self.order.retain(|h| entries.contains_key(h));
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const V: KeyVersion = KeyVersion {
        issuer: 0,
        generation: 1,
    };

    fn gen1(_: usize) -> Option<u64> {
        Some(1)
    }

    fn id(user: &str, exp: i64) -> Identity {
        Identity {
            user: user.into(),
            exp,
        }
    }

    #[test]
    fn hit_until_expiry() {
        let mut c = TokenCache::new(10);
        let h = token_hash("t");
        c.insert(h, id("u", 100), V);
        assert_eq!(c.get(&h, 99, gen1).map(|i| i.user.as_str()), Some("u"));
        assert!(c.get(&h, 100, gen1).is_none());
        assert!(c.is_empty());
    }

    #[test]
    fn key_rotation_invalidates() {
        let mut c = TokenCache::new(10);
        let h = token_hash("t");
        c.insert(h, id("u", 100), V);
        assert!(c.get(&h, 0, |_| Some(2)).is_none());
        assert!(c.get(&h, 0, gen1).is_none());
    }

    #[test]
    fn bounded_oldest_evicted() {
        let mut c = TokenCache::new(3);
        for i in 0..5 {
            c.insert(token_hash(&i.to_string()), id(&i.to_string(), 100), V);
        }
        assert_eq!(c.len(), 3);
        assert!(c.get(&token_hash("0"), 0, gen1).is_none());
        assert!(c.get(&token_hash("1"), 0, gen1).is_none());
        assert!(c.get(&token_hash("4"), 0, gen1).is_some());
    }

    #[test]
    fn order_stays_bounded_under_churn() {
        let mut c = TokenCache::new(4);
        for i in 0..1000 {
            let h = token_hash(&i.to_string());
            c.insert(h, id("u", 10), V);
            let _ = c.get(&h, 20, gen1);
        }
        assert!(c.order.len() <= 8);
        assert_eq!(c.len(), 0);
    }

    #[test]
    fn zero_capacity_caches_nothing() {
        let mut c = TokenCache::new(0);
        c.insert(token_hash("t"), id("u", 100), V);
        assert!(c.is_empty());
    }
}
