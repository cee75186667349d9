//! Attach Gateway's HTTP filter.
//!
//! Everything except [`host`] is plain Rust that never calls the proxy-wasm
//! host, so the request path (parse → verify → stamp) is tested natively.
//!
//! Nothing outside tests may panic: a panic aborts the wasm VM, and with it
//! every request on that worker. Hence these lints: slices are read with
//! `get`, iterators or fixed-size arrays, failures are values.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing,
        clippy::unreachable,
        clippy::todo,
        clippy::unimplemented
    )
)]

pub mod alg;
pub mod budget;
pub mod claims;
pub mod config;
pub mod crypto;
pub mod did;
pub mod identity;
pub mod identity_tokens;
pub mod jwks;
pub mod mcp;
pub mod memory;
pub mod model_reply;
pub mod reply;
pub mod request_head;
pub mod stamp;
pub mod token;
pub mod token_cache;
pub mod token_exchange;
pub mod url;
pub mod verify;

#[cfg(target_arch = "wasm32")]
mod host;

/// RFC 9728 protected-resource metadata, served by the filter itself.
pub const RESOURCE_METADATA_PATH: &str = "/.well-known/oauth-protected-resource";
/// The gateway's public signing keys (RFC 7517), served by the filter
/// when it signs; the contract's, which the service names in card headers.
pub use attach_contract::gateway_keys::JWKS_PATH;
/// The gateway's issuer metadata (OpenID Connect Discovery 1.0 and RFC
/// 8414 members), served by the filter when it signs.
pub const DISCOVERY_PATH: &str = "/.well-known/openid-configuration";
/// Where the gateway's token endpoint (RFC 8693 token exchange) is.
pub const TOKEN_PATH: &str = "/oauth/token";
