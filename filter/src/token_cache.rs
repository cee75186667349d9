//! Bounded cache of verified tokens, one per worker VM.
//!
//! A signature check costs hundreds of microseconds in wasm while a hash
//! lookup costs about one, and clients reuse a token for its whole life: so a
//! token verified once is remembered until it expires. Keys are the tokens
//! themselves under std's randomly keyed SipHash: hashing is cheap enough for
//! every request (a SHA-256 of the token costs several microseconds in wasm),
//! and comparing whole tokens leaves no room for a crafted collision.

use crate::identity::Identity;
use std::collections::HashMap;

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
    /// The MCP server whose audience the token was verified for, if any: a
    /// token checked against one audience is no proof for another.
    bound: Option<usize>,
}

pub struct TokenCache {
    capacity: usize,
    entries: HashMap<Box<str>, Entry>,
}

impl TokenCache {
    pub fn new(capacity: usize) -> Self {
        TokenCache {
            capacity,
            entries: HashMap::new(),
        }
    }

    /// The identity of a token verified earlier for the same binding
    /// (`bound`: an MCP server's index, `None` elsewhere), while it has not
    /// expired and `current_generation` of its issuer is the one it was
    /// verified with.
    pub fn get(
        &mut self,
        token: &str,
        now: i64,
        bound: Option<usize>,
        current_generation: impl Fn(usize) -> Option<u64>,
    ) -> Option<&Identity> {
        let fresh = self.entries.get(token).map(|e| {
            now < e.identity.exp
                && e.bound == bound
                && current_generation(e.version.issuer) == Some(e.version.generation)
        })?;
        if !fresh {
            self.entries.remove(token);
            return None;
        }
        self.entries.get(token).map(|e| &e.identity)
    }

    /// Remembers a verified token. When full, expired entries go first, then
    /// an arbitrary eighth (the map's randomised order makes that a random
    /// eviction, which an attacker cannot steer).
    pub fn insert(
        &mut self,
        token: &str,
        identity: Identity,
        (version, bound): (KeyVersion, Option<usize>),
        now: i64,
    ) {
        if self.capacity == 0 {
            return;
        }
        if self.entries.len() >= self.capacity {
            self.entries.retain(|_, e| now < e.identity.exp);
        }
        if self.entries.len() >= self.capacity {
            let evict: Vec<Box<str>> = self
                .entries
                .keys()
                .take((self.capacity / 8).max(1))
                .cloned()
                .collect();
            for k in evict {
                self.entries.remove(&k);
            }
        }
        self.entries.insert(
            token.into(),
            Entry {
                identity,
                version,
                bound,
            },
        );
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
            ..Default::default()
        }
    }

    #[test]
    fn hit_until_expiry() {
        let mut c = TokenCache::new(10);
        c.insert("t", id("u", 100), (V, None), 0);
        assert_eq!(
            c.get("t", 99, None, gen1).map(|i| i.user.as_str()),
            Some("u")
        );
        assert!(c.get("t", 100, None, gen1).is_none());
        assert!(c.is_empty());
    }

    #[test]
    fn only_the_exact_token_hits() {
        let mut c = TokenCache::new(10);
        c.insert("abc", id("u", 100), (V, None), 0);
        assert!(c.get("abd", 0, None, gen1).is_none());
        assert!(c.get("ab", 0, None, gen1).is_none());
        assert!(c.get("abc", 0, None, gen1).is_some());
    }

    #[test]
    fn key_rotation_invalidates() {
        let mut c = TokenCache::new(10);
        c.insert("t", id("u", 100), (V, None), 0);
        assert!(c.get("t", 0, None, |_| Some(2)).is_none());
        assert!(
            c.get("t", 0, None, gen1).is_none(),
            "the stale entry is gone"
        );
    }

    #[test]
    fn bounded_expired_first() {
        let mut c = TokenCache::new(8);
        for i in 0..7 {
            c.insert(&format!("old{i}"), id("u", 10), (V, None), 0);
        }
        c.insert("live", id("u", 100), (V, None), 0);
        // Full: the next insert at t=50 drops the seven expired entries.
        c.insert("new", id("u", 100), (V, None), 50);
        assert_eq!(c.len(), 2);
        assert!(c.get("live", 50, None, gen1).is_some());
    }

    #[test]
    fn bounded_under_churn() {
        let mut c = TokenCache::new(16);
        for i in 0..1000 {
            c.insert(&i.to_string(), id("u", 100), (V, None), 0);
            assert!(c.len() <= 16);
        }
        assert!(
            c.get("999", 0, None, gen1).is_some(),
            "the newest entry stays"
        );
    }

    #[test]
    fn a_token_bound_to_one_audience_is_no_proof_for_another() {
        let mut c = TokenCache::new(10);
        c.insert("t", id("u", 100), (V, Some(1)), 0);
        assert!(c.get("t", 0, Some(1), gen1).is_some());
        assert!(c.get("t", 0, Some(2), gen1).is_none());
        assert!(c.get("t", 0, None, gen1).is_none());
    }

    #[test]
    fn zero_capacity_caches_nothing() {
        let mut c = TokenCache::new(0);
        c.insert("t", id("u", 100), (V, None), 0);
        assert!(c.is_empty());
    }
}
