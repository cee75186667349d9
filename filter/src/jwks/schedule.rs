//! When each issuer's key set is fetched, shared by every VM of the plugin.
//!
//! Envoy runs one VM per worker thread (plus the main thread), and each has
//! its own root context ticking. The [`FetchState`] record lives in proxy-wasm
//! shared data and is updated with compare-and-swap, so exactly one VM wins
//! each fetch (a lease), every VM sees the result, and an unknown-kid refetch
//! is rate limited across all of them. Nothing here touches the host.

use crate::config::JwksTiming;
use crate::url::Url;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FetchState {
    /// A fetch is due at or after this time (ms since the epoch).
    pub next_fetch_ms: u64,
    /// Some VM is fetching until then; after it, the lease is considered lost.
    pub lease_until_ms: u64,
    /// Consecutive failures, for the backoff.
    pub failures: u32,
    /// When the last unknown-kid refetch was granted.
    pub last_forced_ms: Option<u64>,
    /// The key set URL found through discovery, kept until a fetch fails.
    pub jwks_uri: Option<String>,
    /// Incremented at every finished fetch, so waiting requests notice.
    pub completed: u64,
    pub has_keys: bool,
}

impl FetchState {
    /// Claims the next fetch for the calling VM when one is due and nobody
    /// holds the lease. The caller writes the state back with CAS and fetches
    /// only if that write wins.
    pub fn try_claim(&mut self, now: u64, t: &JwksTiming) -> bool {
        if now < self.next_fetch_ms || now < self.lease_until_ms {
            return false;
        }
        // Discovery and the key set are two callouts, each with the timeout.
        self.lease_until_ms = now
            .saturating_add(t.fetch_timeout_ms.saturating_mul(2))
            .saturating_add(1_000);
        true
    }

    pub fn succeeded(&mut self, now: u64, t: &JwksTiming) {
        self.failures = 0;
        self.has_keys = true;
        self.lease_until_ms = 0;
        self.next_fetch_ms = now.saturating_add(t.refresh_secs.saturating_mul(1_000));
        self.completed = self.completed.wrapping_add(1);
    }

    /// Keys already held stay in use; the next try comes after a backoff.
    pub fn failed(&mut self, now: u64, t: &JwksTiming) {
        self.failures = self.failures.saturating_add(1);
        self.lease_until_ms = 0;
        self.jwks_uri = None;
        self.next_fetch_ms = now.saturating_add(self.backoff_ms(t));
        self.completed = self.completed.wrapping_add(1);
    }

    /// Exponential from `retry_initial_ms`, capped at `retry_max_ms`; while no
    /// keys were ever loaded the cap is `wait_ms` at most, so an IdP that comes
    /// up is noticed within seconds rather than half a minute.
    pub fn backoff_ms(&self, t: &JwksTiming) -> u64 {
        let cap = if self.has_keys {
            t.retry_max_ms
        } else {
            t.retry_max_ms.min(t.wait_ms.max(t.retry_initial_ms))
        };
        let shift = self.failures.saturating_sub(1).min(20);
        t.retry_initial_ms.saturating_mul(1 << shift).min(cap)
    }

    /// Grants an early refetch for an unknown kid, at most once per window.
    pub fn request_refetch(&mut self, now: u64, t: &JwksTiming) -> bool {
        let window = t.unknown_kid_refetch_secs.saturating_mul(1_000);
        if self
            .last_forced_ms
            .is_some_and(|last| now < last.saturating_add(window))
        {
            return false;
        }
        self.last_forced_ms = Some(now);
        self.next_fetch_ms = self.next_fetch_ms.min(now);
        true
    }
}

/// The `jwks_uri` from an OIDC discovery document, checked the way OpenID
/// Connect Discovery requires: the document's `issuer` must be the one asked.
pub fn discovered_jwks_uri(doc: &[u8], issuer: &str) -> Result<Url, &'static str> {
    #[derive(Deserialize)]
    struct Discovery {
        issuer: String,
        jwks_uri: String,
    }
    let d: Discovery = serde_json::from_slice(doc)
        .map_err(|_| "discovery document is not valid JSON with issuer and jwks_uri")?;
    if crate::config::normalize_issuer(&d.issuer) != issuer {
        return Err("discovery document names a different issuer");
    }
    Url::parse(&d.jwks_uri).map_err(|_| "discovery document has an invalid jwks_uri")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t() -> JwksTiming {
        JwksTiming::default()
    }

    #[test]
    fn one_claim_per_lease() {
        let mut s = FetchState::default();
        assert!(s.try_claim(1_000, &t()));
        assert!(!s.try_claim(1_001, &t()));
        // A VM that died mid-fetch loses its lease.
        assert!(s.try_claim(s.lease_until_ms, &t()));
    }

    #[test]
    fn success_schedules_refresh() {
        let mut s = FetchState::default();
        assert!(s.try_claim(0, &t()));
        s.succeeded(5_000, &t());
        assert!(s.has_keys);
        assert_eq!(s.completed, 1);
        assert!(!s.try_claim(5_000 + 599_999, &t()));
        assert!(s.try_claim(5_000 + 600_000, &t()));
    }

    #[test]
    fn failures_back_off_and_cap() {
        let mut s = FetchState::default();
        let mut delays = vec![];
        for _ in 0..6 {
            s.failed(0, &t());
            delays.push(s.next_fetch_ms);
        }
        assert_eq!(delays, vec![500, 1_000, 2_000, 4_000, 5_000, 5_000]);
        s.has_keys = true;
        for _ in 0..10 {
            s.failed(0, &t());
        }
        assert_eq!(s.next_fetch_ms, 30_000);
        s.failures = u32::MAX;
        s.failed(0, &t());
        assert_eq!(s.next_fetch_ms, 30_000);
    }

    #[test]
    fn failure_forgets_discovered_uri() {
        let mut s = FetchState {
            jwks_uri: Some("https://x/jwks".into()),
            ..Default::default()
        };
        s.failed(0, &t());
        assert_eq!(s.jwks_uri, None);
    }

    #[test]
    fn unknown_kid_refetch_is_rate_limited() {
        let mut s = FetchState {
            next_fetch_ms: 999_999,
            has_keys: true,
            ..Default::default()
        };
        assert!(s.request_refetch(10_000, &t()));
        assert_eq!(s.next_fetch_ms, 10_000);
        s.succeeded(10_100, &t());
        assert!(!s.request_refetch(20_000, &t()));
        assert!(!s.request_refetch(39_999, &t()));
        assert!(s.request_refetch(40_000, &t()));
    }

    #[test]
    fn extreme_times_and_settings_saturate() {
        let huge = JwksTiming {
            refresh_secs: u64::MAX,
            unknown_kid_refetch_secs: u64::MAX,
            wait_ms: u64::MAX,
            fetch_timeout_ms: u64::MAX,
            retry_initial_ms: u64::MAX,
            retry_max_ms: u64::MAX,
        };
        let mut s = FetchState {
            completed: u64::MAX,
            ..Default::default()
        };
        assert!(s.try_claim(u64::MAX - 1, &huge));
        assert_eq!(s.lease_until_ms, u64::MAX);
        s.succeeded(u64::MAX - 1, &huge);
        assert_eq!((s.next_fetch_ms, s.completed), (u64::MAX, 0));
        s.failures = u32::MAX;
        s.failed(u64::MAX - 1, &huge);
        assert_eq!(s.next_fetch_ms, u64::MAX);
        // A window past the end of time: one refetch, then none.
        assert!(s.request_refetch(1_000, &huge));
        assert!(!s.request_refetch(u64::MAX - 1, &huge));
    }

    #[test]
    fn discovery_checks_issuer() {
        let doc = br#"{"issuer":"https://idp.example/","jwks_uri":"https://keys.example/certs"}"#;
        let u = discovered_jwks_uri(doc, "https://idp.example").unwrap();
        assert_eq!(u.host, "keys.example");
        assert!(discovered_jwks_uri(doc, "https://other.example").is_err());
        assert!(discovered_jwks_uri(b"{}", "https://idp.example").is_err());
        assert!(
            discovered_jwks_uri(
                br#"{"issuer":"https://idp.example","jwks_uri":"file:///etc/passwd"}"#,
                "https://idp.example"
            )
            .is_err()
        );
    }
}
