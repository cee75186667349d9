//! The `mcp` section of the plugin configuration: the MCP servers behind
//! the gateway and the rules for their tools.
//!
//! Validated once at start-up into [`Mcp`], whose servers already know
//! their canonical URI and metadata path: the request path only compares.

use attach_contract::agents::valid_name;
use attach_contract::mcp;
pub use attach_contract::pattern::Pattern;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

/// The largest JSON-RPC message accepted on an MCP route by default.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1 << 20;

/// The section as written. Read through [`serde_json::Value`] by hand
/// ([`McpConfig::from_value`]) rather than by derived code: the filter's
/// module then carries no deserialiser of its own for these types.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct McpConfig {
    /// Request bodies on MCP routes above this many bytes are refused (413).
    pub max_body_bytes: usize,
    pub servers: Vec<ServerConfig>,
}

/// One MCP server, as written.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct ServerConfig {
    /// The registered name: the server is reached at `/mcp/{name}`.
    pub name: String,
    /// Scopes every request to the server needs.
    pub scopes: Vec<String>,
    /// Whether `tools/list` answers show every tool or only those the
    /// caller may call.
    pub tools_list: ToolsList,
    /// What a tool no rule matches gets.
    pub default: Unmatched,
    /// Tool rules; the first whose `match` fits the tool decides.
    pub tools: Vec<ToolRuleConfig>,
}

/// What a `tools/list` answer shows the caller.
#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ToolsList {
    #[default]
    All,
    Callable,
}

/// The decision for a tool no rule matches.
#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Unmatched {
    #[default]
    Allow,
    Deny,
}

/// One tool rule, as written.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct ToolRuleConfig {
    /// A tool name, or a prefix when it ends in `*`.
    #[serde(rename = "match")]
    pub tool: String,
    /// Scopes the call needs besides the server's.
    pub scopes: Vec<String>,
    /// When set, the users (exact or `prefix*`) who may call it.
    pub users: Option<Vec<String>>,
    /// When set, the actors (exact or `prefix*`) a delegated call's whole
    /// chain must be made of.
    pub actors: Option<Vec<String>>,
    /// Whether a call made for the user by an actor may reach it at all.
    pub delegated: bool,
}

impl<'de> Deserialize<'de> for McpConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(d)?;
        McpConfig::from_value(&value)
            .map_err(|(at, what)| serde::de::Error::custom(format!("{at}: {what}")))
    }
}

/// The members of an object, each taken once; any left over is unknown.
/// (The `budget` section is read with it too.)
pub(crate) struct Members<'a> {
    at: String,
    map: &'a Map<String, Value>,
    seen: Vec<&'static str>,
}

impl<'a> Members<'a> {
    pub(crate) fn of(value: &'a Value, at: String) -> Result<Self, Problem> {
        match value.as_object() {
            Some(map) => Ok(Members {
                at,
                map,
                seen: Vec::new(),
            }),
            None => Err((at, "must be an object".into())),
        }
    }

    pub(crate) fn here(&self, name: &str) -> String {
        format!("{}.{name}", self.at)
    }

    pub(crate) fn get(&mut self, name: &'static str) -> Option<&'a Value> {
        self.seen.push(name);
        self.map.get(name).filter(|v| !v.is_null())
    }

    pub(crate) fn text(&mut self, name: &'static str) -> Result<Option<String>, Problem> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err((self.here(name), "must be a string".into())),
        }
    }

    pub(crate) fn texts(&mut self, name: &'static str) -> Result<Option<Vec<String>>, Problem> {
        let Some(value) = self.get(name) else {
            return Ok(None);
        };
        let list = value.as_array().and_then(|items| {
            items
                .iter()
                .map(|i| i.as_str().map(str::to_owned))
                .collect()
        });
        list.map(Some)
            .ok_or_else(|| (self.here(name), "must be a list of strings".into()))
    }

    pub(crate) fn choice<T: Copy>(
        &mut self,
        name: &'static str,
        options: &[(&str, T)],
    ) -> Result<Option<T>, Problem> {
        let Some(text) = self.text(name)? else {
            return Ok(None);
        };
        match options.iter().find(|(n, _)| *n == text) {
            Some((_, v)) => Ok(Some(*v)),
            None => {
                let names: Vec<&str> = options.iter().map(|(n, _)| *n).collect();
                Err((
                    self.here(name),
                    format!("must be one of {}", names.join(", ")),
                ))
            }
        }
    }

    /// Refuses members nobody asked for: a misspelt option must not be
    /// silently ignored.
    pub(crate) fn done(self) -> Result<(), Problem> {
        match self.map.keys().find(|k| !self.seen.contains(&k.as_str())) {
            Some(unknown) => Err((self.at, format!("unknown member {unknown:?}"))),
            None => Ok(()),
        }
    }
}

impl McpConfig {
    /// Reads the section from its JSON.
    pub fn from_value(value: &Value) -> Result<McpConfig, Problem> {
        let mut top = Members::of(value, "mcp".into())?;
        let max_body_bytes = match top.get("max_body_bytes") {
            None => DEFAULT_MAX_BODY_BYTES,
            Some(v) => v
                .as_u64()
                .and_then(|n| usize::try_from(n).ok())
                .ok_or_else(|| {
                    (
                        top.here("max_body_bytes"),
                        "must be a whole number of bytes".to_string(),
                    )
                })?,
        };
        let servers = match top.get("servers") {
            None => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, s)| ServerConfig::from_value(s, format!("mcp.servers[{i}]")))
                .collect::<Result<_, _>>()?,
            Some(_) => return Err((top.here("servers"), "must be a list".into())),
        };
        top.done()?;
        Ok(McpConfig {
            max_body_bytes,
            servers,
        })
    }
}

impl ServerConfig {
    fn from_value(value: &Value, at: String) -> Result<ServerConfig, Problem> {
        let mut m = Members::of(value, at)?;
        let name = m
            .text("name")?
            .ok_or_else(|| (m.here("name"), "is required".to_string()))?;
        let scopes = m.texts("scopes")?.unwrap_or_default();
        let tools_list = m
            .choice(
                "tools_list",
                &[("all", ToolsList::All), ("callable", ToolsList::Callable)],
            )?
            .unwrap_or_default();
        let default = m
            .choice(
                "default",
                &[("allow", Unmatched::Allow), ("deny", Unmatched::Deny)],
            )?
            .unwrap_or_default();
        let tools = match m.get("tools") {
            None => Vec::new(),
            Some(Value::Array(items)) => {
                let here = m.here("tools");
                items
                    .iter()
                    .enumerate()
                    .map(|(j, r)| ToolRuleConfig::from_value(r, format!("{here}[{j}]")))
                    .collect::<Result<_, _>>()?
            }
            Some(_) => return Err((m.here("tools"), "must be a list".into())),
        };
        m.done()?;
        Ok(ServerConfig {
            name,
            scopes,
            tools_list,
            default,
            tools,
        })
    }
}

impl ToolRuleConfig {
    fn from_value(value: &Value, at: String) -> Result<ToolRuleConfig, Problem> {
        let mut m = Members::of(value, at)?;
        let tool = m
            .text("match")?
            .ok_or_else(|| (m.here("match"), "is required".to_string()))?;
        let scopes = m.texts("scopes")?.unwrap_or_default();
        let users = m.texts("users")?;
        let actors = m.texts("actors")?;
        let delegated = match m.get("delegated") {
            None => true,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err((m.here("delegated"), "must be true or false".into())),
        };
        m.done()?;
        Ok(ToolRuleConfig {
            tool,
            scopes,
            users,
            actors,
            delegated,
        })
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
    /// The index of the server a request path addresses, if it is an MCP
    /// route of a registered server.
    pub fn route_index(&self, path: &str) -> Option<usize> {
        let name = mcp::server_of(path)?;
        self.servers.iter().position(|s| s.name == name)
    }

    /// The server a request path addresses, as [`Mcp::route_index`].
    pub fn route(&self, path: &str) -> Option<&Server> {
        self.servers.get(self.route_index(path)?)
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
        McpConfig::from_value(&section)?.validate(Some("https://gw.example/"))
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
        assert_eq!(mcp.route_index("/mcp/tools"), Some(0));
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
        let section = McpConfig::from_value(&json!({"servers": []})).unwrap();
        assert_eq!(section.validate(None).unwrap_err().0, "resource");
        let unreadable = [
            (
                json!({"servers": [{"name": "a", "x": 1}]}),
                "mcp.servers[0]",
            ),
            (json!({"servers": [{}]}), "mcp.servers[0].name"),
            (json!({"servers": {}}), "mcp.servers"),
            (json!({"max_body_bytes": -1}), "mcp.max_body_bytes"),
            (
                json!({"servers": [{"name": "a", "default": "maybe"}]}),
                "mcp.servers[0].default",
            ),
            (
                json!({"servers": [{"name": "a", "tools": [{"match": "x", "delegated": 1}]}]}),
                "mcp.servers[0].tools[0].delegated",
            ),
            (
                json!({"servers": [{"name": "a", "tools": [{"match": "x", "users": "alice"}]}]}),
                "mcp.servers[0].tools[0].users",
            ),
            (
                json!({"servers": [{"name": "a", "tools": [{"scopes": []}]}]}),
                "mcp.servers[0].tools[0].match",
            ),
            (json!({"x": 1}), "mcp"),
        ];
        for (section, at) in unreadable {
            assert_eq!(
                McpConfig::from_value(&section).unwrap_err().0,
                at,
                "{section}"
            );
        }
        // The launcher writes the section with serde; it reads back the same.
        let written = McpConfig::from_value(&json!({"servers": [{"name": "a", "scopes": ["s"],
            "tools_list": "callable", "default": "deny",
            "tools": [{"match": "x*", "users": ["u"], "delegated": false}]}]}))
        .unwrap();
        let again = McpConfig::from_value(&serde_json::to_value(&written).unwrap()).unwrap();
        assert_eq!(again, written);
    }
}
