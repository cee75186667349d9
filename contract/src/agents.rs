//! The agent registry's syntax: the `A2A_AGENTS` list and the `A2A_CONFIG`
//! file, and which agent names may be registered.
//!
//! The companion service reads the registry to forward tasks; the launcher
//! reads the same registry to publish each agent's card path through Envoy.
//! Both parse it here, so that a name one accepts the other never refuses.
//! This module only reads the syntax (names, URLs as written, options as
//! raw text); what an option means is each reader's business.
//!
//! ```text
//! A2A_AGENTS=planner=http://127.0.0.1:8100,coder=http://127.0.0.1:8101;kind=http;timeout=30
//! A2A_AGENTS=planner=http://127.0.0.1:8100;did=did:key:z6Mk...
//! A2A_CONFIG → {"agents": [{"name", "url", "kind", "timeout", "forward_bearer", "protocol", "extended_card", "did"}]}
//! ```

use crate::registry;
use serde::Deserialize;

pub use crate::registry::{Entry, MAX_NAME_BYTES, SyntaxError, valid_name};

/// The variable holding the list form.
pub const LIST_VARIABLE: &str = "A2A_AGENTS";
/// The variable naming the file form.
pub const FILE_VARIABLE: &str = "A2A_CONFIG";
/// What this registry holds, in its messages.
const NOUN: &str = "agent";

/// The entries of an `A2A_AGENTS` list, in the registries' shared syntax
/// ([`registry::parse_list`]).
pub fn parse_list(list: &str) -> Result<Vec<Entry>, SyntaxError> {
    registry::parse_list(list, NOUN)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    agents: Vec<FileEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileEntry {
    name: String,
    url: String,
    kind: Option<String>,
    /// A number of seconds or a duration text.
    timeout: Option<serde_json::Value>,
    forward_bearer: Option<bool>,
    protocol: Option<String>,
    /// The path of the agent's extended card file.
    extended_card: Option<String>,
    /// The agent's own identity, to which hand-offs are delegated.
    did: Option<String>,
}

/// The entries of an `A2A_CONFIG` file, with its members as the options
/// they stand for (`timeout` as written, `forward_bearer` as `true` or
/// `false`), so that both forms mean the same.
pub fn parse_file(text: &str) -> Result<Vec<Entry>, SyntaxError> {
    let file: File =
        serde_json::from_str(text).map_err(|e| SyntaxError::NotTheFileShape(e.to_string()))?;
    let entries = file
        .agents
        .into_iter()
        .map(|e| {
            let timeout = e.timeout.map(|t| match t {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            });
            let options = [
                ("kind", e.kind),
                ("timeout", timeout),
                ("protocol", e.protocol),
                ("forward_bearer", e.forward_bearer.map(|b| b.to_string())),
                ("extended_card", e.extended_card),
                ("did", e.did),
            ]
            .into_iter()
            .filter_map(|(key, value)| Some((key.to_string(), value?)))
            .collect();
            Entry {
                name: e.name,
                url: e.url,
                options,
            }
        })
        .collect::<Vec<_>>();
    registry::check_names(entries.iter().map(|e| e.name.as_str()), NOUN)?;
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, url: &str, options: &[(&str, &str)]) -> Entry {
        Entry {
            name: name.into(),
            url: url.into(),
            options: options
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn lists_are_the_shared_syntax_with_agent_messages() {
        assert_eq!(
            parse_list("planner=http://127.0.0.1:8100;kind=http,coder=http://127.0.0.1:8101"),
            Ok(vec![
                entry("planner", "http://127.0.0.1:8100", &[("kind", "http")]),
                entry("coder", "http://127.0.0.1:8101", &[]),
            ])
        );
        let bad = parse_list("a*=http://x").unwrap_err().to_string();
        assert!(bad.starts_with(r#"agent name "a*" must be"#), "{bad}");
        let twice = parse_list("a=http://x,a=http://y").unwrap_err().to_string();
        assert_eq!(twice, r#"agent "a" is registered twice"#);
    }

    #[test]
    fn files_give_the_same_entries() {
        let text = r#"{"agents": [
            {"name": "seed", "url": "http://127.0.0.1:9/", "kind": "http", "timeout": 5,
             "forward_bearer": true, "protocol": "0.3", "extended_card": "cards/seed.json",
             "did": "did:key:z6MkSeed"},
            {"name": "b.2", "url": "http://x", "timeout": "2m"}
        ]}"#;
        assert_eq!(
            parse_file(text),
            Ok(vec![
                entry(
                    "seed",
                    "http://127.0.0.1:9/",
                    &[
                        ("kind", "http"),
                        ("timeout", "5"),
                        ("protocol", "0.3"),
                        ("forward_bearer", "true"),
                        ("extended_card", "cards/seed.json"),
                        ("did", "did:key:z6MkSeed")
                    ]
                ),
                entry("b.2", "http://x", &[("timeout", "2m")]),
            ])
        );
        for bad in [
            "",
            "[]",
            r#"{"agents": [{"url": "http://x"}]}"#,
            r#"{"agents": [{"name": "a", "url": "http://x", "colour": "red"}]}"#,
            r#"{"agents": [], "extra": 1}"#,
        ] {
            assert!(
                matches!(parse_file(bad), Err(SyntaxError::NotTheFileShape(_))),
                "{bad}"
            );
        }
        assert_eq!(
            parse_file(r#"{"agents": [{"name": "..", "url": "http://x"}]}"#),
            Err(SyntaxError::BadName {
                noun: NOUN,
                name: "..".into()
            })
        );
        assert_eq!(
            parse_file(
                r#"{"agents": [{"name": "a", "url": "http://x"}, {"name": "a", "url": "http://y"}]}"#
            ),
            Err(SyntaxError::RegisteredTwice {
                noun: NOUN,
                name: "a".into()
            })
        );
    }
}
