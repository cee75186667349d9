//! HTTP callouts from the root context (a request's callouts would die
//! with it): sending one to a configured cluster, and reading its answer.

use super::abi::{self, Status};
use crate::config::Config;
use crate::url::Url;
use proxy_wasm::types::{BufferType, MapType};
use std::time::Duration;

/// Answer bodies larger than this are not read.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// One callout to send.
pub struct Request<'a> {
    pub method: &'a str,
    pub path: &'a str,
    /// Headers beyond the pseudo-headers and `user-agent`.
    pub headers: Vec<(&'a str, &'a str)>,
    pub body: Option<&'a [u8]>,
    pub timeout: Duration,
}

/// Sends `request` to `url` through the cluster the configuration names
/// for its origin; the callout's token, or why it could not be sent.
pub fn send(config: &Config, url: &Url, request: Request<'_>) -> Result<u32, String> {
    let cluster = config.cluster_for(url).ok_or_else(|| {
        format!(
            "no Envoy cluster for {} (add it to `clusters`)",
            url.origin()
        )
    })?;
    let authority = url.authority();
    let mut headers = vec![
        (":method", request.method),
        (":path", request.path),
        (":authority", authority.as_str()),
        (":scheme", if url.https { "https" } else { "http" }),
        ("user-agent", "attach-gateway"),
    ];
    headers.extend(request.headers);
    abi::http_call(cluster, headers, request.body, request.timeout).map_err(|status| {
        format!(
            "cannot call {} via cluster {cluster}: {status:?}",
            url.origin()
        )
    })
}

/// A callout's answer, as the host announces it.
pub struct Response {
    /// The `:status`; `None` when there was no answer (timeout, connection
    /// failure) or it cannot be read.
    pub status: Option<String>,
    body_size: usize,
}

impl Response {
    pub fn read(headers: usize, body_size: usize) -> Self {
        let status = (headers > 0)
            .then(|| abi::header_value(MapType::HttpCallResponseHeaders, ":status"))
            .and_then(Result::ok)
            .flatten()
            .and_then(|value| String::from_utf8(value).ok());
        Response { status, body_size }
    }

    /// The `:status` as a number.
    pub fn code(&self) -> Option<u16> {
        self.status.as_deref().and_then(|s| s.parse().ok())
    }

    pub fn too_large(&self) -> bool {
        self.body_size > MAX_BODY_BYTES
    }

    pub fn body(&self) -> Result<Vec<u8>, Status> {
        abi::buffer(BufferType::HttpCallResponseBody, 0, self.body_size)
    }
}
