//! Each issuer's signing keys: when they are fetched, where they are kept,
//! and how every VM gets its own usable copy.
//!
//! Envoy runs one VM per worker thread (plus the main thread). They share
//! one record per issuer in proxy-wasm shared data, so one fetch serves all:
//!
//! 1. Every root context ticks and asks the issuer's [`schedule::FetchState`]
//!    whether a fetch is due. The record is updated with compare-and-swap,
//!    so exactly one VM wins the due fetch, a lease that expires if that VM
//!    stops half way. Failures back off; an unknown `kid` may bring the next
//!    fetch forward, rate limited across all VMs.
//! 2. The VM holding the lease reads the OIDC discovery document (unless the
//!    key set's URL is configured or already discovered), then the key set,
//!    and writes the raw JSON to shared data next to the schedule, marking
//!    the fetch finished so that requests waiting for keys wake up.
//! 3. Every VM keeps a parsed copy in its [`key_ring::KeyRing`], parsed again
//!    only when the shared entry's CAS changed; [`key_set::JwkSet`] is that
//!    parse, keeping the keys the gateway can use and skipping the rest.
//!
//! Verification reads the ring through [`crate::verify::KeyStore`]. Nothing
//! here calls the host: the callouts and the shared data records are the
//! host layer's (`host/jwks_fetch.rs`, `host/jwks_shared.rs`).

pub mod key_ring;
pub mod key_set;
pub mod schedule;
