//! Name resolution under the guard. Deliveries resolve through
//! [`GuardedResolver`], so the addresses the guard checked are the ones the
//! connection uses: a name cannot pass a check with one answer and then
//! connect with another. Creating a config resolves once through [`vet`] to
//! refuse a bad target while the caller is there to be told.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use super::ssrf::{self, AllowList, Refusal, Target};

/// Longest wait for a name to resolve at create time.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

/// A connection the guard refused; found again in a request's error chain.
#[derive(Debug)]
pub struct GuardRefusal(pub Refusal);

impl fmt::Display for GuardRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for GuardRefusal {}

async fn lookup(name: &str) -> Vec<SocketAddr> {
    match tokio::time::timeout(LOOKUP_TIMEOUT, tokio::net::lookup_host((name, 0))).await {
        Ok(Ok(found)) => found.collect(),
        _ => Vec::new(),
    }
}

fn ips(addrs: &[SocketAddr]) -> Vec<IpAddr> {
    addrs.iter().map(SocketAddr::ip).collect()
}

/// Whether `url` may be a webhook target now: its form, and every address
/// its host resolves to.
pub async fn vet(url: &str, allow: &AllowList) -> Result<(), Refusal> {
    match ssrf::check_url(url, allow)? {
        Target::Checked => Ok(()),
        Target::Name(name) => ssrf::check_resolved(&name, &ips(&lookup(&name).await), allow),
    }
}

/// reqwest's resolver for deliveries: answers only with addresses that
/// passed the guard, or fails the connection.
pub struct GuardedResolver {
    pub allow: AllowList,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow = self.allow.clone();
        let name = name.as_str().to_string();
        Box::pin(async move {
            let found = lookup(&name).await;
            ssrf::check_resolved(&name, &ips(&found), &allow).map_err(GuardRefusal)?;
            Ok(Box::new(found.into_iter()) as Addrs)
        })
    }
}
