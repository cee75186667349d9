//! The `mcp` section of the plugin configuration: the MCP servers behind
//! the gateway and the rules for their tools.
//!
//! Validated once at start-up into [`Mcp`], whose servers already know
//! their canonical URI and metadata path: the request path only compares.

use attach_contract::agents::valid_name;
use attach_contract::mcp;
use serde::{Deserialize, Serialize};

/// The largest JSON-RPC message accepted on an MCP route by default.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1 << 20;

/// The section as written.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct McpConfig {
    /// Request bodies on MCP routes above this many bytes are refused (413).
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
    pub servers: Vec<ServerConfig>,
}

fn default_max_body_bytes() -> usize {
    DEFAULT_MAX_BODY_BYTES
}

/// One MCP server, as written.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// The registered name: the server is reached at `/mcp/{name}`.
    pub name: String,
    /// Scopes every request to the server needs.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Whether `tools/list` answers show every tool or only those the
    /// caller may call.
    #[serde(default)]
    pub tools_list: ToolsList,
    /// What a tool no rule matches gets.
    #[serde(default)]
    pub default: Unmatched,
    /// Tool rules; the first whose `match` fits the tool decides.
    #[serde(default)]
    pub tools: Vec<ToolRuleConfig>,
}

/// What a `tools/list` answer shows the caller.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ToolsList {
    #[default]
    All,
    Callable,
}

/// The decision for a tool no rule matches.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Unmatched {
    #[default]
    Allow,
    Deny,
}

/// One tool rule, as written.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ToolRuleConfig {
    /// A tool name, or a prefix when it ends in `*`.
    #[serde(rename = "match")]
    pub tool: String,
    /// Scopes the call needs besides the server's.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// When set, the users (exact or `prefix*`) who may call it.
    #[serde(default)]
    pub users: Option<Vec<String>>,
    /// When set, the actors (exact or `prefix*`) a delegated call's whole
    /// chain must be made of.
    #[serde(default)]
    pub actors: Option<Vec<String>>,
    /// Whether a call made for the user by an actor may reach it at all.
    #[serde(default = "yes")]
    pub delegated: bool,
}

fn yes() -> bool {
    true
}

/// An exact value, or a prefix (written with a trailing `*`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Pattern {
    Exact(String),
    Prefix(String),
}

impl Pattern {
    fn parse(text: &str) -> Result<Pattern, &'static str> {
        if text.is_empty() || text.bytes().any(|b| !(0x21..=0x7e).contains(&b)) {
            return Err("must be visible ASCII, not empty");
        }
        Ok(match text.strip_suffix('*') {
            Some(prefix) if prefix.contains('*') => return Err("only a trailing '*' is allowed"),
            Some(prefix) => Pattern::Prefix(prefix.to_string()),
            None if text.contains('*') => return Err("only a trailing '*' is allowed"),
            None => Pattern::Exact(text.to_string()),
        })
    }

    pub fn matches(&self, value: &str) -> bool {
        match self {
            Pattern::Exact(p) => value == p,
            Pattern::Prefix(p) => value.starts_with(p.as_str()),
        }
    }
}

/// A validated tool rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ToolRule {
    pub tool: Pattern,
    pub scopes: Vec<String>,
    pub users: Option<Vec<Pattern>>,
    pub actors: Option<Vec<Pattern>>,
    pub delegated: bool,
}

/// A validated MCP server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Server {
    pub name: String,
    /// `{resource}/mcp/{name}`: the audience its tokens must name.
    pub canonical_uri: String,
    /// Where its protected-resource metadata is published.
    pub metadata_url: String,
    pub scopes: Vec<String>,
    pub tools_list: ToolsList,
    pub default: Unmatched,
    pub tools: Vec<ToolRule>,
}

impl Server {
    /// Every scope some request to the server may need: its own, then the
    /// tool rules', each once (RFC 9728 `scopes_supported`).
    pub fn scopes_supported(&self) -> Vec<&str> {
        let mut all: Vec<&str> = Vec::new();
        let rules = self.tools.iter().flat_map(|r| r.scopes.iter());
        for scope in self.scopes.iter().chain(rules) {
            if !all.contains(&scope.as_str()) {
                all.push(scope);
            }
        }
        all
    }
}

/// The validated section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mcp {
    pub max_body_bytes: usize,
    pub servers: Vec<Server>,
}

impl Mcp {
    /// The server a request path addresses, if it is an MCP route of a
    /// registered server.
    pub fn route(&self, path: &str) -> Option<&Server> {
        let name = mcp::server_of(path)?;
        self.servers.iter().find(|s| s.name == name)
    }

    /// The server whose metadata document `path` asks for.
    pub fn metadata(&self, path: &str) -> Option<&Server> {
        let name = mcp::metadata_of(path)?;
        self.servers.iter().find(|s| s.name == name)
    }
}

/// Where in the section a problem is, and what it is.
pub type Problem = (String, String);

impl McpConfig {
    /// Validates the section for a gateway whose public URL is `resource`.
    pub fn validate(self, resource: Option<&str>) -> Result<Mcp, Problem> {
        let problem = |at: String, what: &str| (at, what.to_string());
        let Some(resource) = resource else {
            return Err(problem(
                "resource".into(),
                "MCP servers need the gateway's public URL (resource): it names their canonical URIs",
            ));
        };
        if self.max_body_bytes == 0 {
            return Err(problem("mcp.max_body_bytes".into(), "must be at least 1"));
        }
        let mut servers: Vec<Server> = Vec::with_capacity(self.servers.len());
        for (i, s) in self.servers.into_iter().enumerate() {
            let at = |field: &str| format!("mcp.servers[{i}].{field}");
            if !valid_name(&s.name) {
                return Err(problem(
                    at("name"),
                    "must be 1-64 letters, digits, '-', '_' or '.', and not \".\" or \"..\"",
                ));
            }
            if servers.iter().any(|t| t.name == s.name) {
                return Err(problem(at("name"), "is registered twice"));
            }
            scope_list(&s.scopes).map_err(|m| problem(at("scopes"), m))?;
            let mut tools = Vec::with_capacity(s.tools.len());
            for (j, rule) in s.tools.into_iter().enumerate() {
                let at = |field: &str| format!("mcp.servers[{i}].tools[{j}].{field}");
                let patterns = |list: Option<Vec<String>>, field: &str| {
                    list.map(|list| {
                        list.iter()
                            .map(|p| Pattern::parse(p))
                            .collect::<Result<Vec<_>, _>>()
                    })
                    .transpose()
                    .map_err(|m| problem(at(field), m))
                };
                scope_list(&rule.scopes).map_err(|m| problem(at("scopes"), m))?;
                tools.push(ToolRule {
                    tool: Pattern::parse(&rule.tool).map_err(|m| problem(at("match"), m))?,
                    scopes: rule.scopes,
                    users: patterns(rule.users, "users")?,
                    actors: patterns(rule.actors, "actors")?,
                    delegated: rule.delegated,
                });
            }
            servers.push(Server {
                canonical_uri: mcp::canonical_uri(resource, &s.name),
                metadata_url: format!(
                    "{}{}",
                    resource.trim_end_matches('/'),
                    mcp::metadata_path(&s.name)
                ),
                name: s.name,
                scopes: s.scopes,
                tools_list: s.tools_list,
                default: s.default,
                tools,
            });
        }
        Ok(Mcp {
            max_body_bytes: self.max_body_bytes,
            servers,
        })
    }
}

/// OAuth scope tokens (RFC 6749 section 3.3): visible ASCII but `"` and `\`.
fn scope_list(scopes: &[String]) -> Result<(), &'static str> {
    let token = |s: &String| {
        !s.is_empty()
            && s.bytes()
                .all(|b| matches!(b, 0x21 | 0x23..=0x5b | 0x5d..=0x7e))
    };
    if scopes.iter().all(token) {
        Ok(())
    } else {
        Err("each scope must be a non-empty OAuth scope token (RFC 6749 section 3.3)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn validated(section: serde_json::Value) -> Result<Mcp, Problem> {
        serde_json::from_value::<McpConfig>(section)
            .unwrap()
            .validate(Some("https://gw.example/"))
    }

    #[test]
    fn a_server_knows_its_names() {
        let mcp = validated(json!({"servers": [{"name": "tools", "scopes": ["t:use"],
            "tools": [{"match": "admin_*", "scopes": ["t:admin", "t:use"]}]}]}))
        .unwrap();
        let s = &mcp.servers[0];
        assert_eq!(s.canonical_uri, "https://gw.example/mcp/tools");
        assert_eq!(
            s.metadata_url,
            "https://gw.example/.well-known/oauth-protected-resource/mcp/tools"
        );
        assert_eq!(s.scopes_supported(), ["t:use", "t:admin"]);
        assert_eq!(mcp.max_body_bytes, DEFAULT_MAX_BODY_BYTES);
        assert_eq!(mcp.route("/mcp/tools/x?y").map(|s| &*s.name), Some("tools"));
        assert!(mcp.route("/mcp/other").is_none());
        assert!(
            mcp.metadata("/.well-known/oauth-protected-resource/mcp/tools")
                .is_some()
        );
    }

    #[test]
    fn patterns() {
        let p = Pattern::parse("admin_*").unwrap();
        assert!(p.matches("admin_") && p.matches("admin_rm") && !p.matches("admin"));
        let e = Pattern::parse("echo").unwrap();
        assert!(e.matches("echo") && !e.matches("echo2"));
        for bad in ["", "a*b", "**", "a b", "é"] {
            assert!(Pattern::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn bad_sections_say_where() {
        let cases = [
            (json!({"servers": [{"name": "a/b"}]}), "mcp.servers[0].name"),
            (
                json!({"servers": [{"name": "a"}, {"name": "a"}]}),
                "mcp.servers[1].name",
            ),
            (
                json!({"servers": [{"name": "a", "scopes": ["x y"]}]}),
                "mcp.servers[0].scopes",
            ),
            (
                json!({"servers": [{"name": "a", "tools": [{"match": "*x"}]}]}),
                "mcp.servers[0].tools[0].match",
            ),
            (
                json!({"servers": [{"name": "a", "tools": [{"match": "x", "users": ["a*b"]}]}]}),
                "mcp.servers[0].tools[0].users",
            ),
            (
                json!({"max_body_bytes": 0, "servers": []}),
                "mcp.max_body_bytes",
            ),
        ];
        for (section, at) in cases {
            assert_eq!(validated(section.clone()).unwrap_err().0, at, "{section}");
        }
        let section: McpConfig = serde_json::from_value(json!({"servers": []})).unwrap();
        assert_eq!(section.validate(None).unwrap_err().0, "resource");
        assert!(
            serde_json::from_value::<McpConfig>(json!({"servers": [{"name": "a", "x": 1}]}))
                .is_err()
        );
    }
}
