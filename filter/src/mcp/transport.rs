//! The Streamable HTTP request metadata headers, held to the body they
//! mirror (MCP 2026-07-28, basic/transports/streamable-http, "Request
//! Metadata" and "Server Validation").
//!
//! Intermediaries may route on `Mcp-Method` and `Mcp-Name` without reading
//! the body, while the server acts on the body: a request whose headers
//! say one thing and whose body says another is refused, so that nothing
//! before or after the gateway can be made to decide on a different call
//! than the one the server runs. At 2026-07-28 and later the headers are
//! required; older clients (2025-06-18, 2025-11-25) do not send them, and
//! their requests are read from the body alone, but a header they do send
//! must still agree with it.

use super::message::Message;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

pub const METHOD_HEADER: &str = "mcp-method";
pub const NAME_HEADER: &str = "mcp-name";
pub const VERSION_HEADER: &str = "mcp-protocol-version";
/// The first protocol version whose requests carry the headers.
pub const HEADERS_SINCE: &str = "2026-07-28";

/// The request's metadata headers, as received.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MetadataHeaders {
    pub method: Option<Vec<u8>>,
    pub name: Option<Vec<u8>>,
    pub version: Option<Vec<u8>>,
}

/// Which header failed, and how: what the refusal names (never a value).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mismatch {
    pub header: &'static str,
    pub problem: Problem,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Problem {
    Missing,
    Invalid,
    DiffersFromBody,
}

impl Mismatch {
    /// The refusal's message: which header, and what is wrong with it.
    pub fn describe(&self) -> String {
        let header = match self.header {
            METHOD_HEADER => "Mcp-Method",
            NAME_HEADER => "Mcp-Name",
            _ => "MCP-Protocol-Version",
        };
        let what = match self.problem {
            Problem::Missing => "is required",
            Problem::Invalid => "is not a valid header value",
            Problem::DiffersFromBody => "does not match the request body",
        };
        format!("Header mismatch: the {header} header {what}")
    }
}

/// Whether `version` is one that mirrors the body in headers.
fn mirrors(version: &str) -> bool {
    let b = version.as_bytes();
    let date = b.len() == 10
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            _ => c.is_ascii_digit(),
        });
    date && version >= HEADERS_SINCE
}

/// A header value as text: visible ASCII, spaces and tabs (RFC 9110
/// section 5.5), without surrounding whitespace.
fn plain(value: &[u8]) -> Option<&str> {
    let ok = value
        .iter()
        .all(|b| (0x20..=0x7e).contains(b) || *b == b'\t');
    ok.then(|| std::str::from_utf8(value).ok().map(str::trim))
        .flatten()
}

/// `Mcp-Name`'s value, decoded from the `=?base64?…?=` sentinel form when
/// it is in it ("Value Encoding").
fn decoded_name(value: &[u8]) -> Option<String> {
    let text = plain(value)?;
    match text
        .strip_prefix("=?base64?")
        .and_then(|t| t.strip_suffix("?="))
    {
        Some(encoded) => String::from_utf8(STANDARD.decode(encoded).ok()?).ok(),
        None => Some(text.to_string()),
    }
}

/// Holds the headers to the body of `message`.
pub fn check(headers: &MetadataHeaders, message: &Message) -> Result<(), Mismatch> {
    let fail = |header, problem| Err(Mismatch { header, problem });
    let header_version = match &headers.version {
        None => None,
        Some(v) => match plain(v) {
            Some(v) => Some(v),
            None => return fail(VERSION_HEADER, Problem::Invalid),
        },
    };
    let body_version = message.version.as_deref();
    if let (Some(h), Some(b)) = (header_version, body_version) {
        if h != b {
            return fail(VERSION_HEADER, Problem::DiffersFromBody);
        }
    }
    let modern = header_version.or(body_version).is_some_and(mirrors);
    if modern && header_version.is_none() {
        return fail(VERSION_HEADER, Problem::Missing);
    }
    match &headers.method {
        Some(value) => match plain(value) {
            None => return fail(METHOD_HEADER, Problem::Invalid),
            Some(m) if Some(m) != message.method.as_deref() => {
                return fail(METHOD_HEADER, Problem::DiffersFromBody);
            }
            Some(_) => {}
        },
        None if modern => return fail(METHOD_HEADER, Problem::Missing),
        None => {}
    }
    if !message.is_named() {
        return Ok(());
    }
    match &headers.name {
        Some(value) => match decoded_name(value) {
            None => fail(NAME_HEADER, Problem::Invalid),
            Some(n) if Some(n.as_str()) != message.name.as_deref() => {
                fail(NAME_HEADER, Problem::DiffersFromBody)
            }
            Some(_) => Ok(()),
        },
        None if modern && message.name.is_some() => fail(NAME_HEADER, Problem::Missing),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mcp::message::VERSION_META;
    use serde_json::json;

    fn call(name: &str, version: Option<&str>) -> Message {
        let mut params = json!({"name": name, "arguments": {}});
        if let Some(v) = version {
            params["_meta"] = json!({VERSION_META: v});
        }
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": params});
        Message::parse(body.to_string().as_bytes()).unwrap()
    }

    fn headers(method: Option<&str>, name: Option<&str>, version: Option<&str>) -> MetadataHeaders {
        let bytes = |v: Option<&str>| v.map(|v| v.as_bytes().to_vec());
        MetadataHeaders {
            method: bytes(method),
            name: bytes(name),
            version: bytes(version),
        }
    }

    fn problem(h: &MetadataHeaders, m: &Message) -> Option<(&'static str, Problem)> {
        check(h, m).err().map(|e| (e.header, e.problem))
    }

    const V: &str = "2026-07-28";

    /// "Server Validation": matching headers pass; the Base64 sentinel is
    /// decoded before comparing ("Value Encoding").
    #[test]
    fn matching_headers_pass() {
        let m = call("echo", Some(V));
        assert_eq!(
            problem(&headers(Some("tools/call"), Some("echo"), Some(V)), &m),
            None
        );
        let m = call("héllo wörld", Some(V));
        let encoded = format!("=?base64?{}?=", STANDARD.encode("héllo wörld"));
        let h = headers(Some("tools/call"), Some(&encoded), Some(V));
        assert_eq!(problem(&h, &m), None);
    }

    /// A header that says another call than the body is refused, whatever
    /// the protocol version.
    #[test]
    fn headers_that_differ_from_the_body_are_refused() {
        let m = call("echo", Some(V));
        let cases = [
            (
                headers(Some("tools/list"), Some("echo"), Some(V)),
                METHOD_HEADER,
            ),
            (
                headers(Some("tools/call"), Some("admin_rm"), Some(V)),
                NAME_HEADER,
            ),
            (
                headers(Some("tools/call"), Some("echo"), Some("2025-11-25")),
                VERSION_HEADER,
            ),
        ];
        for (h, header) in cases {
            assert_eq!(
                problem(&h, &m),
                Some((header, Problem::DiffersFromBody)),
                "{h:?}"
            );
        }
        let old = call("echo", None);
        let h = headers(None, Some("admin_rm"), Some("2025-11-25"));
        assert_eq!(
            problem(&h, &old),
            Some((NAME_HEADER, Problem::DiffersFromBody))
        );
        let h = headers(Some("tools/list"), None, None);
        assert_eq!(
            problem(&h, &old),
            Some((METHOD_HEADER, Problem::DiffersFromBody))
        );
        let encoded = format!("=?base64?{}?=", STANDARD.encode("admin_rm"));
        let h = headers(Some("tools/call"), Some(&encoded), Some(V));
        assert_eq!(
            problem(&h, &m),
            Some((NAME_HEADER, Problem::DiffersFromBody))
        );
    }

    /// At 2026-07-28 the headers are required ("Standard Request Headers").
    #[test]
    fn modern_requests_need_their_headers() {
        let m = call("echo", Some(V));
        let cases = [
            (headers(None, Some("echo"), Some(V)), METHOD_HEADER),
            (headers(Some("tools/call"), None, Some(V)), NAME_HEADER),
            (
                headers(Some("tools/call"), Some("echo"), None),
                VERSION_HEADER,
            ),
        ];
        for (h, header) in cases {
            assert_eq!(problem(&h, &m), Some((header, Problem::Missing)), "{h:?}");
        }
        // A modern version in the header alone also requires the rest.
        let old_body = call("echo", None);
        let h = headers(None, None, Some(V));
        assert_eq!(
            problem(&h, &old_body),
            Some((METHOD_HEADER, Problem::Missing))
        );
    }

    /// Older clients send no metadata headers: their bodies decide.
    #[test]
    fn older_versions_are_read_from_the_body() {
        let m = call("echo", None);
        assert_eq!(problem(&headers(None, None, Some("2025-06-18")), &m), None);
        assert_eq!(problem(&headers(None, None, None), &m), None);
        let list = Message::parse(br#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#).unwrap();
        assert_eq!(
            problem(&headers(Some("tools/list"), Some("x"), None), &list),
            None
        );
    }

    #[test]
    fn malformed_values_are_refused() {
        let m = call("echo", Some(V));
        let cases = [
            (
                headers(Some("tools/call\u{1}"), Some("echo"), Some(V)),
                METHOD_HEADER,
            ),
            (
                headers(Some("tools/call"), Some("=?base64?***?="), Some(V)),
                NAME_HEADER,
            ),
            (
                headers(Some("tools/call"), Some("ech\u{7f}"), Some(V)),
                NAME_HEADER,
            ),
        ];
        for (h, header) in cases {
            assert_eq!(problem(&h, &m), Some((header, Problem::Invalid)), "{h:?}");
        }
        let mut h = headers(Some("tools/call"), Some("echo"), None);
        h.version = Some(vec![0xff]);
        assert_eq!(problem(&h, &m), Some((VERSION_HEADER, Problem::Invalid)));
    }

    #[test]
    fn descriptions_name_the_header_not_the_value() {
        let m = Mismatch {
            header: NAME_HEADER,
            problem: Problem::DiffersFromBody,
        };
        assert_eq!(
            m.describe(),
            "Header mismatch: the Mcp-Name header does not match the request body"
        );
    }
}
