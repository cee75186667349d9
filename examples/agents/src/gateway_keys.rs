//! Who sent a task: the gateway's identity token ([`IDENTITY_HEADER`]),
//! checked with the gateway's public keys alone.
//!
//! The keys are found as any OpenID relying party finds them: the
//! discovery document at `{GATEWAY_URL}/.well-known/openid-configuration`
//! (whose `issuer` must be the configured one, OpenID Connect Discovery 1.0
//! section 4.3), then the JWK Set at its `jwks_uri`, through `GATEWAY_URL`
//! too when it lies under the issuer: the issuer is the gateway's public
//! URL, which the agent's own network may not reach (in compose it is
//! `http://localhost:8080`, the agent's own container), while the discovery
//! document just fetched from `GATEWAY_URL` vouches that the keys under that
//! name are this gateway's. They are kept for
//! [`REFRESH`], fetched again at once for a `kid` not among them (no more
//! often than [`UNKNOWN_KID_REFETCH`], so made-up kids cannot make the
//! agent hammer the gateway), and kept when a refresh fails. Each fetch is
//! tried [`ATTEMPTS`] times with a doubling pause.
//!
//! A token is accepted only for this agent: `aud` its own DID, `iss` the
//! gateway, within its lifetime (RFC 7519 section 4.1), signed by a
//! published key under that key's algorithm.

use std::time::Duration;

use attach_contract::gateway_keys::{PublicKey, parse_jwks};
use attach_contract::identity_token::{self, IdentityClaims, Refusal};
use axum::http::HeaderMap;
use serde_json::Value;
use tokio::sync::Mutex;
use tokio::time::Instant;

pub use attach_contract::headers::IDENTITY_HEADER;

pub const DISCOVERY_PATH: &str = "/.well-known/openid-configuration";
/// How long fetched keys are used before they are fetched again (the
/// gateway serves them with `max-age=300`).
pub const REFRESH: Duration = Duration::from_secs(300);
/// The shortest time between two fetches caused by unknown kids.
pub const UNKNOWN_KID_REFETCH: Duration = Duration::from_secs(5);
/// Tries per fetch.
pub const ATTEMPTS: u32 = 3;
const FIRST_PAUSE: Duration = Duration::from_millis(200);
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_DOCUMENT_BYTES: usize = 256 * 1024;

/// Why a task's sender is not accepted.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// No identity token, or one that does not verify: 401.
    Token(String),
    /// The gateway's keys cannot be had, so nothing can be checked: 503.
    NoKeys(String),
}

struct Fetched {
    keys: Vec<PublicKey>,
    at: Instant,
}

/// The checker of one agent's identity tokens.
pub struct IdentityCheck {
    client: reqwest::Client,
    gateway: String,
    issuer: String,
    audience: String,
    keys: Mutex<Option<Fetched>>,
}

/// `url`, with the `issuer` it starts with replaced by `gateway`, where
/// the agent reaches the gateway; any other URL as it is.
fn through_gateway(url: &str, issuer: &str, gateway: &str) -> String {
    match url.strip_prefix(issuer) {
        Some(rest) if rest.is_empty() || rest.starts_with(['/', '?']) => format!("{gateway}{rest}"),
        _ => url.to_string(),
    }
}

impl IdentityCheck {
    /// Tokens from `issuer` for `audience`, the keys found at `gateway`.
    pub fn new(client: reqwest::Client, gateway: &str, issuer: &str, audience: &str) -> Self {
        IdentityCheck {
            client,
            gateway: gateway.trim_end_matches('/').to_string(),
            issuer: issuer.trim_end_matches('/').to_string(),
            audience: audience.to_string(),
            keys: Mutex::new(None),
        }
    }

    /// The verified claims of the identity token in `headers`.
    pub async fn check(&self, headers: &HeaderMap) -> Result<IdentityClaims, Refused> {
        let token = headers
            .get(IDENTITY_HEADER)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| {
                Refused::Token(format!(
                    "no {IDENTITY_HEADER} header: this agent takes tasks only through the gateway"
                ))
            })?;
        let mut cached = self.keys.lock().await;
        let stale = cached.as_ref().is_none_or(|f| f.at.elapsed() >= REFRESH);
        if stale {
            self.refresh(&mut cached).await?;
        }
        match self.verify(token, cached.as_ref()) {
            Err(Refusal::UnknownKey)
                if cached
                    .as_ref()
                    .is_some_and(|f| f.at.elapsed() >= UNKNOWN_KID_REFETCH) =>
            {
                self.refresh(&mut cached).await?;
                self.verify(token, cached.as_ref())
            }
            other => other,
        }
        .map_err(|refusal| Refused::Token(refusal.to_string()))
    }

    fn verify(&self, token: &str, fetched: Option<&Fetched>) -> Result<IdentityClaims, Refusal> {
        let keys = fetched.map(|f| f.keys.as_slice()).unwrap_or_default();
        identity_token::verify(token, &self.issuer, &self.audience, unix_now(), |kid| {
            keys.iter().find(|k| k.kid == kid).map(|k| &k.key)
        })
    }

    /// Fetches the keys again; on failure the keys already held stay (a
    /// gateway restarting must not stop the agent), and only an agent that
    /// never had any is refused.
    async fn refresh(&self, cached: &mut Option<Fetched>) -> Result<(), Refused> {
        let mut pause = FIRST_PAUSE;
        let mut last = String::new();
        for attempt in 1..=ATTEMPTS {
            match self.fetch().await {
                Ok(keys) => {
                    *cached = Some(Fetched {
                        keys,
                        at: Instant::now(),
                    });
                    return Ok(());
                }
                Err(e) => last = e,
            }
            if attempt < ATTEMPTS {
                tokio::time::sleep(pause).await;
                pause *= 2;
            }
        }
        eprintln!("attach-agent: cannot fetch the gateway's keys: {last}");
        match cached {
            // Counted as fetched, so that the next unknown kid waits too.
            Some(f) => {
                f.at = Instant::now();
                Ok(())
            }
            None => Err(Refused::NoKeys(
                "the gateway's keys cannot be fetched, so no identity can be checked".into(),
            )),
        }
    }

    async fn fetch(&self) -> Result<Vec<PublicKey>, String> {
        let discovery = self
            .document(&format!("{}{DISCOVERY_PATH}", self.gateway))
            .await?;
        let discovery: Value = serde_json::from_slice(&discovery)
            .map_err(|_| format!("{DISCOVERY_PATH} is not JSON"))?;
        let issuer = discovery.get("issuer").and_then(Value::as_str);
        if issuer.map(|i| i.trim_end_matches('/')) != Some(self.issuer.as_str()) {
            return Err(format!(
                "{DISCOVERY_PATH} names another issuer than {}",
                self.issuer
            ));
        }
        let jwks_uri = discovery
            .get("jwks_uri")
            .and_then(Value::as_str)
            .filter(|u| u.starts_with("https://") || u.starts_with("http://"))
            .ok_or_else(|| format!("{DISCOVERY_PATH} has no http(s) jwks_uri"))?;
        let jwks = self
            .document(&through_gateway(jwks_uri, &self.issuer, &self.gateway))
            .await?;
        let text = std::str::from_utf8(&jwks).map_err(|_| "the JWKS is not UTF-8".to_string())?;
        parse_jwks(text).map_err(|e| format!("the JWKS: {e}"))
    }

    async fn document(&self, url: &str) -> Result<Vec<u8>, String> {
        let exchange = async {
            let mut response = self
                .client
                .get(url)
                .send()
                .await
                .map_err(|e| crate::gateway::transport_reason(&e))?;
            if !response.status().is_success() {
                return Err(format!("{url} answered {}", response.status().as_u16()));
            }
            let mut body = Vec::new();
            while let Some(chunk) = response
                .chunk()
                .await
                .map_err(|e| crate::gateway::transport_reason(&e))?
            {
                if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
                    return Err(format!("{url} is larger than {MAX_DOCUMENT_BYTES} bytes"));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(body)
        };
        tokio::time::timeout(FETCH_TIMEOUT, exchange)
            .await
            .unwrap_or_else(|_| Err(format!("{url} did not answer in time")))
    }
}

pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::through_gateway;

    #[test]
    fn the_gateways_own_urls_are_reached_through_gateway_url() {
        let via = |u| through_gateway(u, "http://localhost:8080", "http://envoy:8080");
        assert_eq!(
            via("http://localhost:8080/.well-known/jwks.json"),
            "http://envoy:8080/.well-known/jwks.json"
        );
        assert_eq!(via("http://localhost:8080"), "http://envoy:8080");
        // Only under the issuer: not a longer host or port, nor another origin.
        for other in [
            "http://localhost:80801/jwks",
            "http://localhost:8080.evil.example/jwks",
            "https://keys.example.com/jwks",
        ] {
            assert_eq!(via(other), other);
        }
    }
}
