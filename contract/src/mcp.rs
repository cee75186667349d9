//! Where a registered MCP server is reached through the gateway, and the
//! names it is known by: the launcher routes these paths to the server, the
//! filter protects them, and both derive them here.
//!
//! A server registered as `tools` is reached at `/mcp/tools` (and below it),
//! is identified as the OAuth protected resource `{public URL}/mcp/tools`
//! (its canonical URI: the audience its tokens must name, RFC 8707 section
//! 2), and describes itself at the path-inserted well-known URI of RFC 9728
//! section 3.1, `/.well-known/oauth-protected-resource/mcp/tools`.

/// Where every MCP server's routes start.
pub const ROUTE_PREFIX: &str = "/mcp/";
/// The well-known path of RFC 9728 protected-resource metadata.
pub const METADATA_PATH: &str = "/.well-known/oauth-protected-resource";

/// The route of server `name`: `/mcp/{name}`.
pub fn route(name: &str) -> String {
    format!("{ROUTE_PREFIX}{name}")
}

/// The canonical URI of server `name` behind the gateway at `public_url`
/// (a trailing slash on the public URL is ignored).
pub fn canonical_uri(public_url: &str, name: &str) -> String {
    format!("{}{}", public_url.trim_end_matches('/'), route(name))
}

/// The path of server `name`'s protected-resource metadata document.
pub fn metadata_path(name: &str) -> String {
    format!("{METADATA_PATH}{}", route(name))
}

/// The registered name a request path addresses, if it is an MCP route:
/// `/mcp/{name}` itself or anything below it, the query ignored. The name
/// is returned as written, for the caller to look up among the registered.
pub fn server_of(path: &str) -> Option<&str> {
    let path = path.split_once('?').map_or(path, |(p, _)| p);
    let rest = path.strip_prefix(ROUTE_PREFIX)?;
    let name = rest.split_once('/').map_or(rest, |(name, _)| name);
    (!name.is_empty()).then_some(name)
}

/// The server whose metadata document `path` asks for, if it is one.
pub fn metadata_of(path: &str) -> Option<&str> {
    let rest = path.strip_prefix(METADATA_PATH)?;
    let name = rest.strip_prefix(ROUTE_PREFIX)?;
    (!name.is_empty() && !name.contains('/')).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_of_a_server() {
        assert_eq!(route("tools"), "/mcp/tools");
        assert_eq!(
            canonical_uri("https://gw.example/", "tools"),
            "https://gw.example/mcp/tools"
        );
        assert_eq!(
            metadata_path("tools"),
            "/.well-known/oauth-protected-resource/mcp/tools"
        );
    }

    #[test]
    fn a_route_names_its_server() {
        assert_eq!(server_of("/mcp/tools"), Some("tools"));
        assert_eq!(server_of("/mcp/tools/"), Some("tools"));
        assert_eq!(server_of("/mcp/tools/sub?x=1"), Some("tools"));
        assert_eq!(server_of("/mcp/tools?x=/y"), Some("tools"));
        assert_eq!(server_of("/mcp/"), None);
        assert_eq!(server_of("/mcp"), None);
        assert_eq!(server_of("/mcpx/tools"), None);
        assert_eq!(server_of("/a/mcp/tools"), None);
    }

    #[test]
    fn a_metadata_path_names_its_server() {
        assert_eq!(metadata_of(&metadata_path("tools")), Some("tools"));
        assert_eq!(metadata_of(METADATA_PATH), None);
        assert_eq!(
            metadata_of("/.well-known/oauth-protected-resource/mcp/"),
            None
        );
        assert_eq!(
            metadata_of("/.well-known/oauth-protected-resource/mcp/a/b"),
            None
        );
        assert_eq!(
            metadata_of("/.well-known/oauth-protected-resource/x/a"),
            None
        );
    }
}
