//! Attach Gateway's wire contract: what the filter, the companion service,
//! the launcher and the example agents must agree on, written once.
//!
//! One module per rule: [`headers`] (the `X-Attach-*` names), [`session`]
//! (the session id), [`assertion`] (the `v2.` identity assertion),
//! [`gateway_keys`] (the gateway's signing keys and their JWKS),
//! [`identity_token`] (the signed identity every upstream can verify),
//! [`delegation`] (who acts for the user: `act` chains and the rules of
//! the token exchange),
//! [`did_key`] (did:key identities, their files and DID-JWTs),
//! [`jcs`] (RFC 8785's canonical JSON) and [`card_signature`] (the
//! gateway's signature on the agent cards it serves),
//! [`comb`] (fixed-base curve multiples, for the filter's ECDSA
//! verification and the gateway's ES256 signing),
//! [`event`] (the memory event and its id), [`limits`] (what an event may
//! carry), [`timestamp`] (the RFC 3339 form every side writes),
//! [`weaviate`] (the class the mirror writes and the service reads),
//! [`registry`] (the list grammar and name rule every registry shares),
//! [`agents`] (the agent registry syntax), [`mcp`] (where registered
//! MCP servers are reached and what they are called) and [`mcp_servers`]
//! (the MCP server registry syntax), [`pattern`] (the `prefix*` rule of
//! every allow-list), [`budget`] (the token budget policy and the headers
//! that report it) and [`usage`] (what the gateways and the service
//! exchange to share budgets and meter usage).
//!
//! The filter compiles this crate into its wasm module, where a panic
//! aborts the VM and every request on it: outside tests nothing here may
//! panic, so failures are values and slices are read with `get`.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

pub mod agents;
pub mod assertion;
pub mod budget;
pub mod card_signature;
pub mod comb;
pub mod delegation;
pub mod did_key;
pub mod event;
pub mod gateway_keys;
pub mod headers;
pub mod identity_token;
pub mod jcs;
pub mod limits;
pub mod mcp;
pub mod mcp_servers;
pub mod pattern;
pub mod registry;
pub mod session;
pub mod timestamp;
pub mod usage;
pub mod weaviate;
