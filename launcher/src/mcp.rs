//! The MCP servers behind the gateway: the registry (`MCP_SERVERS` or the
//! `MCP_CONFIG` file, in the contract's syntax) with every URL checked, and
//! what each server needs from Envoy (a cluster, the paths its routes
//! rewrite to) and from the filter (its entry in the `mcp` section).
//!
//! Envoy routes `/mcp/{name}` and `/mcp/{name}/...` straight to the server,
//! not through the companion service: the filter in front of it is the
//! resource server, and the server sees its own URL's path.

use crate::env::{McpSettings, McpSource};
use crate::error::Error;
use attach_contract::mcp_servers;
use attach_filter::url::Url;
use serde_json::{Value, json};
use std::fs;
use std::path::Path;

/// Every MCP server's cluster is this and its registry name.
pub const CLUSTER_PREFIX: &str = "mcp_";

/// One registered MCP server and where it listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    pub registered: mcp_servers::Server,
    /// The registered URL, parsed: an http(s) origin and a path, no query.
    pub url: Url,
}

impl Server {
    pub fn name(&self) -> &str {
        &self.registered.name
    }

    /// The Envoy cluster that reaches the server.
    pub fn cluster(&self) -> String {
        format!("{CLUSTER_PREFIX}{}", self.name())
    }

    /// What `/mcp/{name}` becomes: the path of the server's URL.
    pub fn path(&self) -> &str {
        &self.url.path
    }

    /// What the `/mcp/{name}/` of a longer path becomes: the path of the
    /// server's URL as a folder, so that `/mcp/tools/x` reaches `{path}/x`.
    pub fn folder(&self) -> String {
        format!("{}/", self.url.path.trim_end_matches('/'))
    }

    /// The server's entry in the filter's `mcp` section, its options and
    /// rules as the registry wrote them.
    pub fn filter_entry(&self) -> Value {
        let r = &self.registered;
        json!({
            "name": r.name,
            "scopes": r.scopes,
            "tools_list": r.tools_list,
            "default": r.default,
            "tools": r.tools,
        })
    }
}

/// The variable the servers come from, for messages about them.
pub fn variable(mcp: &McpSettings) -> &'static str {
    match mcp.servers {
        McpSource::File(_) => mcp_servers::FILE_VARIABLE,
        McpSource::None | McpSource::List(_) => mcp_servers::LIST_VARIABLE,
    }
}

/// The registered MCP servers, read and checked; errors name the variable
/// they come from.
pub fn servers(mcp: &McpSettings) -> Result<Vec<Server>, Error> {
    let var = variable(mcp);
    let registered = match &mcp.servers {
        McpSource::None => return Ok(Vec::new()),
        McpSource::List(list) => mcp_servers::parse_list(list).map_err(|e| e.to_string()),
        McpSource::File(path) => servers_of_file(path),
    };
    let registered = registered.map_err(|reason| Error::setting(var, reason))?;
    registered
        .into_iter()
        .map(|r| {
            let url = checked_url(&r).map_err(|reason| Error::setting(var, reason))?;
            Ok(Server { registered: r, url })
        })
        .collect()
}

fn servers_of_file(path: &Path) -> Result<Vec<mcp_servers::Server>, String> {
    let at = path.display();
    let text = fs::read_to_string(path).map_err(|e| format!("cannot read {at}: {e}"))?;
    mcp_servers::parse_file(&text).map_err(|e| match e {
        attach_contract::registry::SyntaxError::NotTheFileShape(shape) => format!("{at}: {shape}"),
        other => other.to_string(),
    })
}

/// The server's URL: http or https, and no query, since each request
/// keeps its own.
fn checked_url(server: &mcp_servers::Server) -> Result<Url, String> {
    let (name, raw) = (&server.name, &server.url);
    let url = Url::parse(raw).map_err(|m| format!("MCP server {name:?}: URL {raw:?} {m}"))?;
    if url.path.contains('?') {
        return Err(format!(
            "MCP server {name:?}: URL {raw:?} must not have a query (requests keep their own)"
        ));
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env::tests::settings;

    fn servers_of(pairs: &[(&str, &str)]) -> Result<Vec<Server>, Error> {
        servers(&settings(pairs).unwrap().mcp)
    }

    fn temp_file(name: &str, text: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("attach-mcp-{name}-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("mcp.json");
        fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn servers_from_the_list() {
        assert!(servers_of(&[]).unwrap().is_empty());
        let s = servers_of(&[(
            "MCP_SERVERS",
            "tools=http://127.0.0.1:9000/mcp,files=https://Files.example/mcp/;scopes=files:read files:write",
        )])
        .unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].name(), "tools");
        assert_eq!(s[0].cluster(), "mcp_tools");
        assert_eq!(s[0].url.origin(), "http://127.0.0.1:9000");
        assert_eq!((s[0].path(), s[0].folder().as_str()), ("/mcp", "/mcp/"));
        assert_eq!(s[1].url.origin(), "https://files.example:443");
        assert_eq!((s[1].path(), s[1].folder().as_str()), ("/mcp/", "/mcp/"));
        assert_eq!(s[1].registered.scopes, ["files:read", "files:write"]);
        let root = servers_of(&[("MCP_SERVERS", "r=http://127.0.0.1:9000")]).unwrap();
        assert_eq!((root[0].path(), root[0].folder().as_str()), ("/", "/"));
    }

    #[test]
    fn bad_lists_name_the_variable() {
        for (list, needle) in [
            ("a*=http://x", r#"MCP server name "a*" must be"#),
            ("..=http://x", r#"MCP server name ".." must be"#),
            (
                "t=http://x/mcp,t=http://y/mcp",
                r#"MCP server "t" is registered twice"#,
            ),
            (
                "t=ftp://x/mcp",
                r#"MCP server "t": URL "ftp://x/mcp" must start with http:// or https://"#,
            ),
            ("t=http:///mcp", "has no host"),
            ("t=http://x/mcp?k=v", "must not have a query"),
            ("t=http://x/mcp#top", "must not contain a fragment"),
            ("t=http://x/mcp;colour=red", "not an option"),
            ("tools", "is not name=url"),
        ] {
            let e = servers_of(&[("MCP_SERVERS", list)]).unwrap_err();
            assert_eq!(e.var(), Some("MCP_SERVERS"), "{list}: {e}");
            assert!(e.to_string().contains(needle), "{list}: {e}");
            assert_eq!(e.exit_code(), 2);
        }
    }

    #[test]
    fn servers_from_the_file() {
        let path = temp_file(
            "file",
            r#"{"servers": [{"name": "tools", "url": "http://127.0.0.1:9000/mcp",
                "scopes": ["tools:use"], "tools_list": "callable", "default": "deny",
                "tools": [{"match": "admin_*", "scopes": ["tools:admin"]}]}]}"#,
        );
        let p = path.to_str().unwrap();
        let s = servers_of(&[("MCP_CONFIG", p)]).unwrap();
        assert_eq!(
            s[0].filter_entry(),
            serde_json::json!({
                "name": "tools", "scopes": ["tools:use"], "tools_list": "callable",
                "default": "deny", "tools": [{"match": "admin_*", "scopes": ["tools:admin"]}]
            })
        );
        for (text, needle) in [
            (
                r#"{"servers": [{"url": "http://x"}]}"#,
                "missing field `name`",
            ),
            (
                r#"{"servers": [{"name": "t", "url": "mcp"}]}"#,
                r#"URL "mcp" must start with http://"#,
            ),
            (
                r#"{"servers": [{"name": "t", "url": "http://x"}, {"name": "t", "url": "http://y"}]}"#,
                "registered twice",
            ),
        ] {
            fs::write(&path, text).unwrap();
            let e = servers_of(&[("MCP_CONFIG", p)]).unwrap_err();
            assert_eq!(e.var(), Some("MCP_CONFIG"), "{e}");
            assert!(e.to_string().contains(needle), "{e}");
        }
        fs::write(&path, "{").unwrap();
        let e = servers_of(&[("MCP_CONFIG", p)]).unwrap_err();
        assert!(
            e.to_string().starts_with(&format!("MCP_CONFIG: {p}: ")),
            "{e}"
        );
        let missing = path.with_file_name("missing.json");
        let e = servers_of(&[("MCP_CONFIG", missing.to_str().unwrap())]).unwrap_err();
        assert!(e.to_string().starts_with("MCP_CONFIG: cannot read"), "{e}");
        fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }
}
