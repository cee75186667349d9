//! The MCP server registry's syntax: the `MCP_SERVERS` list and the
//! `MCP_CONFIG` file, in the same grammar and name rule as the agent
//! registry ([`crate::registry`]), and the tool rules a server carries.
//!
//! The launcher reads the registry to route `/mcp/{name}` to each server
//! ([`crate::mcp`]) and to write the filter's `mcp` section, in which the
//! servers' options and tool rules are written as they are here. Unlike the
//! agents' options, an MCP option means the same to every reader, so the
//! options are read here; what a rule or scope may hold is the filter's
//! validation, and URLs stay as written: the launcher checks them.
//!
//! ```text
//! MCP_SERVERS=tools=http://127.0.0.1:9000/mcp,files=http://127.0.0.1:9001/mcp;scopes=files:read files:write
//! MCP_SERVERS=tools=http://127.0.0.1:9000/mcp;tools_list=callable;default=deny
//! MCP_CONFIG → {"servers": [{"name", "url", "scopes": [...], "tools": [{"match", "scopes", "users", "actors", "delegated"}], "tools_list", "default"}]}
//! ```

use crate::registry::{self, SyntaxError};
use serde::{Deserialize, Serialize};

/// The variable holding the list form.
pub const LIST_VARIABLE: &str = "MCP_SERVERS";
/// The variable naming the file form.
pub const FILE_VARIABLE: &str = "MCP_CONFIG";
/// What this registry holds, in its messages.
const NOUN: &str = "MCP server";
/// The options of the list form.
const OPTIONS: [&str; 3] = ["scopes", "tools_list", "default"];

/// One registered MCP server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Server {
    pub name: String,
    pub url: String,
    /// Scopes every request to the server needs.
    pub scopes: Vec<String>,
    /// Rules per tool name; the first that matches a tool decides.
    pub tools: Vec<ToolRule>,
    pub tools_list: ToolsList,
    /// What a tool no rule matches gets.
    pub default: Decision,
}

/// What a caller needs to call the tools a rule matches.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolRule {
    /// A tool name, or a prefix when it ends in `*`.
    #[serde(rename = "match")]
    pub pattern: String,
    /// Scopes the call needs, all of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
    /// Patterns (exact or `prefix*`) one of which the calling user must match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub users: Option<Vec<String>>,
    /// Patterns that every actor of a delegated call's chain must match one of.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actors: Option<Vec<String>>,
    /// `false` refuses any delegated call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delegated: Option<bool>,
}

/// Which tools a `tools/list` answer shows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ToolsList {
    /// The server's answer as it is.
    #[default]
    All,
    /// Only the tools the caller may call.
    Callable,
}

/// Whether a tool no rule matches may be called.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    #[default]
    Allow,
    Deny,
}

/// The servers of an `MCP_SERVERS` list: `name=url`, comma-separated, each
/// with optional `;scopes=a b` (space-separated), `;tools_list=all|callable`
/// and `;default=allow|deny`. Tool rules need the file form.
pub fn parse_list(list: &str) -> Result<Vec<Server>, SyntaxError> {
    registry::parse_list(list, NOUN)?
        .into_iter()
        .map(|entry| {
            let name = entry.name;
            let bad = |option: &str, reason: String| SyntaxError::BadOption {
                name: name.clone(),
                option: option.to_string(),
                reason,
            };
            let mut server = Server {
                name: name.clone(),
                url: entry.url,
                scopes: Vec::new(),
                tools: Vec::new(),
                tools_list: ToolsList::All,
                default: Decision::Allow,
            };
            for (i, (key, value)) in entry.options.iter().enumerate() {
                if !OPTIONS.contains(&key.as_str()) {
                    let known = OPTIONS.join(", ");
                    return Err(bad(key, format!("not an option (they are {known})")));
                }
                if entry.options.iter().take(i).any(|(k, _)| k == key) {
                    return Err(bad(key, "given twice".into()));
                }
                match key.as_str() {
                    "scopes" => {
                        server.scopes = value.split_whitespace().map(String::from).collect()
                    }
                    "tools_list" => {
                        server.tools_list =
                            word(value, "all or callable").map_err(|m| bad(key, m))?
                    }
                    _ => server.default = word(value, "allow or deny").map_err(|m| bad(key, m))?,
                }
            }
            Ok(server)
        })
        .collect()
}

/// `value` as the lowercase word of an enum.
fn word<T: serde::de::DeserializeOwned>(value: &str, expected: &str) -> Result<T, String> {
    serde_json::from_value(serde_json::Value::String(value.to_string()))
        .map_err(|_| format!("{value:?} is not {expected}"))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    servers: Vec<FileServer>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileServer {
    name: String,
    url: String,
    #[serde(default)]
    scopes: Vec<String>,
    #[serde(default)]
    tools: Vec<ToolRule>,
    #[serde(default)]
    tools_list: ToolsList,
    #[serde(default)]
    default: Decision,
}

/// The servers of an `MCP_CONFIG` file, held to the same rules as the list.
pub fn parse_file(text: &str) -> Result<Vec<Server>, SyntaxError> {
    let file: File =
        serde_json::from_str(text).map_err(|e| SyntaxError::NotTheFileShape(e.to_string()))?;
    registry::check_names(file.servers.iter().map(|s| s.name.as_str()), NOUN)?;
    let servers = file
        .servers
        .into_iter()
        .map(|s| Server {
            name: s.name,
            url: s.url,
            scopes: s.scopes,
            tools: s.tools,
            tools_list: s.tools_list,
            default: s.default,
        })
        .collect();
    Ok(servers)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(name: &str, url: &str) -> Server {
        Server {
            name: name.into(),
            url: url.into(),
            scopes: Vec::new(),
            tools: Vec::new(),
            tools_list: ToolsList::All,
            default: Decision::Allow,
        }
    }

    fn rule(pattern: &str) -> ToolRule {
        ToolRule {
            pattern: pattern.into(),
            scopes: Vec::new(),
            users: None,
            actors: None,
            delegated: None,
        }
    }

    #[test]
    fn lists_give_servers_with_their_options() {
        assert_eq!(parse_list(""), Ok(vec![]));
        assert_eq!(
            parse_list(
                "tools=http://127.0.0.1:9000/mcp,files=http://127.0.0.1:9001/mcp;scopes=files:read  files:write"
            ),
            Ok(vec![
                server("tools", "http://127.0.0.1:9000/mcp"),
                Server {
                    scopes: vec!["files:read".into(), "files:write".into()],
                    ..server("files", "http://127.0.0.1:9001/mcp")
                },
            ])
        );
        assert_eq!(
            parse_list("t=http://x/mcp;tools_list=callable;default=deny"),
            Ok(vec![Server {
                tools_list: ToolsList::Callable,
                default: Decision::Deny,
                ..server("t", "http://x/mcp")
            }])
        );
    }

    #[test]
    fn list_errors_say_what_to_fix() {
        let message = |list: &str| parse_list(list).unwrap_err().to_string();
        assert_eq!(
            message("tools=http://x;colour=red"),
            r#"colour of "tools": not an option (they are scopes, tools_list, default)"#
        );
        assert_eq!(
            message("tools=http://x;default=maybe"),
            r#"default of "tools": "maybe" is not allow or deny"#
        );
        assert_eq!(
            message("tools=http://x;tools_list=some"),
            r#"tools_list of "tools": "some" is not all or callable"#
        );
        assert_eq!(
            message("tools=http://x;scopes=a;scopes=b"),
            r#"scopes of "tools": given twice"#
        );
        assert_eq!(
            message("a/b=http://x"),
            r#"MCP server name "a/b" must be 1-64 letters, digits, '-', '_' or '.', and not "." or "..""#
        );
        assert_eq!(
            message("t=http://x,t=http://y"),
            r#"MCP server "t" is registered twice"#
        );
    }

    #[test]
    fn files_carry_tool_rules() {
        let text = r#"{"servers": [
            {"name": "tools", "url": "http://127.0.0.1:9000/mcp", "scopes": ["tools:use"],
             "tools_list": "callable", "default": "deny",
             "tools": [
                {"match": "admin_*", "scopes": ["tools:admin"]},
                {"match": "echo", "users": ["alice", "did:key:*"], "actors": ["did:key:z6Mk*"], "delegated": true}
             ]},
            {"name": "files", "url": "http://127.0.0.1:9001/mcp"}
        ]}"#;
        let admin = ToolRule {
            scopes: vec!["tools:admin".into()],
            ..rule("admin_*")
        };
        let echo = ToolRule {
            users: Some(vec!["alice".into(), "did:key:*".into()]),
            actors: Some(vec!["did:key:z6Mk*".into()]),
            delegated: Some(true),
            ..rule("echo")
        };
        assert_eq!(
            parse_file(text),
            Ok(vec![
                Server {
                    scopes: vec!["tools:use".into()],
                    tools: vec![admin.clone(), echo.clone()],
                    tools_list: ToolsList::Callable,
                    default: Decision::Deny,
                    ..server("tools", "http://127.0.0.1:9000/mcp")
                },
                server("files", "http://127.0.0.1:9001/mcp"),
            ])
        );
        // Rules read back as they are written in the filter's section.
        assert_eq!(
            serde_json::to_value(&admin).unwrap(),
            serde_json::json!({"match": "admin_*", "scopes": ["tools:admin"]})
        );
    }

    #[test]
    fn file_errors_say_what_to_fix() {
        for bad in [
            "",
            r#"{"agents": []}"#,
            r#"{"servers": [{"url": "http://x"}]}"#,
            r#"{"servers": [{"name": "a", "url": "http://x", "colour": "red"}]}"#,
            r#"{"servers": [{"name": "a", "url": "http://x", "default": "maybe"}]}"#,
            r#"{"servers": [{"name": "a", "url": "http://x", "tools": [{"match": "x", "role": "y"}]}]}"#,
        ] {
            assert!(
                matches!(parse_file(bad), Err(SyntaxError::NotTheFileShape(_))),
                "{bad}"
            );
        }
        let message = |text: &str| parse_file(text).unwrap_err().to_string();
        assert_eq!(
            message(
                r#"{"servers": [{"name": "a", "url": "http://x"}, {"name": "a", "url": "http://y"}]}"#
            ),
            r#"MCP server "a" is registered twice"#
        );
        assert_eq!(
            message(r#"{"servers": [{"name": "..", "url": "http://x"}]}"#),
            r#"MCP server name ".." must be 1-64 letters, digits, '-', '_' or '.', and not "." or "..""#
        );
    }
}
