//! The request headers the gate looks at, read in one pass.
//!
//! Each host call costs about a microsecond inside Envoy's V8, so the gate
//! fetches the whole header map once and picks what it needs from it here.

use crate::mcp::transport::{METHOD_HEADER, MetadataHeaders, NAME_HEADER, VERSION_HEADER};
use attach_contract::headers::{self, ASSERTION_HEADER, SESSION_HEADER};

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestHead {
    pub method: String,
    pub path: String,
    pub authority: Option<String>,
    /// `x-forwarded-proto` when a proxy in front set it, else `:scheme`.
    pub scheme: Option<String>,
    /// `None` when absent or not valid UTF-8 (then it is no bearer token).
    pub authorization: Option<String>,
    /// Raw bytes: the session id hashes whatever the client sent.
    pub user_agent: Vec<u8>,
    has_origin: bool,
    has_preflight_method: bool,
    /// Names of inbound `x-attach-*` headers, to be removed.
    pub reserved: Vec<String>,
    /// Envoy's `x-request-id` (the memory mirror keys event ids on it).
    pub request_id: Option<String>,
    /// An inbound `x-attach-session` and `x-attach-assertion` (removed like
    /// every `x-attach-*` header): a service behind the gateway calling back
    /// through it may continue its caller's session with them.
    pub session: Option<String>,
    pub assertion: Option<String>,
    /// The client sent `accept-encoding` (the memory mirror removes it).
    pub accepts_encoding: bool,
    /// The MCP transport's metadata headers, read on MCP routes.
    pub mcp: MetadataHeaders,
}

/// A name that reads as an `x-attach-*` header once `_` is taken for `-`,
/// as CGI- and WSGI-style servers do (`x_attach_user` becomes
/// `HTTP_X_ATTACH_USER`, just like `x-attach-user`). Removed like the real
/// ones, for Envoys not configured to refuse underscores in header names.
fn is_reserved_alias(name: &str) -> bool {
    name.contains('_') && headers::is_reserved(&name.replace('_', "-"))
}

impl RequestHead {
    pub fn from_pairs(pairs: Vec<(String, Vec<u8>)>) -> Self {
        let mut head = RequestHead::default();
        let mut forwarded_proto = None;
        for (name, value) in pairs {
            let text = || String::from_utf8(value.clone()).ok();
            match name.as_str() {
                ":method" => head.method = text().unwrap_or_default(),
                ":path" => head.path = text().unwrap_or_default(),
                ":authority" => head.authority = text(),
                ":scheme" => head.scheme = text(),
                "x-forwarded-proto" => forwarded_proto = text(),
                "authorization" => head.authorization = text(),
                "user-agent" => head.user_agent = value,
                "x-request-id" => head.request_id = text(),
                "accept-encoding" => head.accepts_encoding = true,
                "origin" => head.has_origin = true,
                "access-control-request-method" => head.has_preflight_method = true,
                METHOD_HEADER => head.mcp.method = Some(value),
                NAME_HEADER => head.mcp.name = Some(value),
                VERSION_HEADER => head.mcp.version = Some(value),
                _ if headers::is_reserved(&name) => {
                    match name.as_str() {
                        SESSION_HEADER => head.session = text(),
                        ASSERTION_HEADER => head.assertion = text(),
                        _ => {}
                    }
                    head.reserved.push(name);
                }
                _ if is_reserved_alias(&name) => head.reserved.push(name),
                _ => {}
            }
        }
        if forwarded_proto.is_some() {
            head.scheme = forwarded_proto;
        }
        head
    }

    /// The path without its query string.
    pub fn bare_path(&self) -> &str {
        self.path.split_once('?').map_or(&self.path, |(p, _)| p)
    }

    /// A CORS preflight: it carries no credentials by design (Fetch standard).
    pub fn is_preflight(&self) -> bool {
        self.method == "OPTIONS" && self.has_origin && self.has_preflight_method
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &[u8])]) -> Vec<(String, Vec<u8>)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_vec()))
            .collect()
    }

    #[test]
    fn picks_the_headers_it_needs() {
        let h = RequestHead::from_pairs(pairs(&[
            (":method", b"GET"),
            (":path", b"/v1/x?y=1"),
            (":authority", b"gw:8080"),
            (":scheme", b"http"),
            ("authorization", b"Bearer t"),
            ("user-agent", b"ua\xff"),
            ("x-attach-user", b"mallory"),
            ("X-Attach-Session", b"s"),
            ("x-attachment", b"keep"),
        ]));
        assert_eq!(h.method, "GET");
        assert_eq!(h.bare_path(), "/v1/x");
        assert_eq!(h.authority.as_deref(), Some("gw:8080"));
        assert_eq!(h.authorization.as_deref(), Some("Bearer t"));
        assert_eq!(h.user_agent, b"ua\xff");
        assert_eq!(h.reserved, vec!["x-attach-user", "X-Attach-Session"]);
        assert!(!h.is_preflight());
    }

    #[test]
    fn underscore_spellings_of_reserved_names_are_removed_too() {
        let h = RequestHead::from_pairs(pairs(&[
            ("x_attach_user", b"alice"),
            ("X_Attach-Session", b"s"),
            ("x-attach_assertion", b"v1.1.x"),
            ("x_attachment", b"keep"),
            ("x_request_id", b"keep"),
        ]));
        assert_eq!(
            h.reserved,
            vec!["x_attach_user", "X_Attach-Session", "x-attach_assertion"]
        );
        assert_eq!(h.session, None, "an alias never continues a session");
        assert_eq!(h.assertion, None);
    }

    #[test]
    fn forwarded_proto_wins_and_bad_utf8_is_absent() {
        let h = RequestHead::from_pairs(pairs(&[
            (":scheme", b"http"),
            ("x-forwarded-proto", b"https"),
            ("authorization", b"Bearer \xff"),
        ]));
        assert_eq!(h.scheme.as_deref(), Some("https"));
        assert_eq!(h.authorization, None);
    }

    #[test]
    fn preflight_needs_origin_and_method() {
        let base = [(":method", b"OPTIONS" as &[u8]), ("origin", b"https://a")];
        assert!(!RequestHead::from_pairs(pairs(&base)).is_preflight());
        let mut full = base.to_vec();
        full.push(("access-control-request-method", b"POST"));
        assert!(RequestHead::from_pairs(pairs(&full)).is_preflight());
    }
}
