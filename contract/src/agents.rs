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

use serde::Deserialize;
use std::fmt;

/// The variable holding the list form.
pub const LIST_VARIABLE: &str = "A2A_AGENTS";
/// The variable naming the file form.
pub const FILE_VARIABLE: &str = "A2A_CONFIG";
/// The longest agent name, in bytes.
pub const MAX_NAME_BYTES: usize = 64;

/// One registered agent, as written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub url: String,
    /// `(key, value)` in the order written.
    pub options: Vec<(String, String)>,
}

/// Why a registry cannot be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SyntaxError {
    /// The file is not the JSON shape above (serde's message).
    NotTheFileShape(String),
    NotNameUrl {
        entry: String,
    },
    NotKeyValue {
        name: String,
        option: String,
    },
    BadName {
        name: String,
    },
    RegisteredTwice {
        name: String,
    },
}

impl fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SyntaxError::NotTheFileShape(reason) => f.write_str(reason),
            SyntaxError::NotNameUrl { entry } => write!(f, "entry {entry:?} is not name=url"),
            SyntaxError::NotKeyValue { name, option } => {
                write!(f, "option {option:?} of {name:?} is not key=value")
            }
            SyntaxError::BadName { name } => write!(
                f,
                "agent name {name:?} must be 1-{MAX_NAME_BYTES} letters, digits, '-', '_' or '.', and not \".\" or \"..\""
            ),
            SyntaxError::RegisteredTwice { name } => {
                write!(f, "agent {name:?} is registered twice")
            }
        }
    }
}

impl std::error::Error for SyntaxError {}

/// Whether `name` may be registered: 1 to 64 ASCII letters, digits, `-`,
/// `_` or `.`, but not `.` or `..`. A name becomes a segment of public
/// paths (`/a2a/agents/{name}/...`), where `*` and `/` would widen a route
/// and a dot segment would be normalised away into another path.
pub fn valid_name(name: &str) -> bool {
    (1..=MAX_NAME_BYTES).contains(&name.len())
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

/// The entries of an `A2A_AGENTS` list: comma-separated `name=url`, each
/// optionally followed by `;key=value` options. Blanks around the pieces
/// and empty entries or options are ignored.
pub fn parse_list(list: &str) -> Result<Vec<Entry>, SyntaxError> {
    let mut entries = Vec::new();
    for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let mut pieces = entry.split(';').map(str::trim);
        let head = pieces.next().unwrap_or_default();
        let (name, url) = head
            .split_once('=')
            .ok_or_else(|| SyntaxError::NotNameUrl {
                entry: entry.to_string(),
            })?;
        let name = name.trim().to_string();
        let mut options = Vec::new();
        for option in pieces.filter(|p| !p.is_empty()) {
            let (key, value) = option
                .split_once('=')
                .ok_or_else(|| SyntaxError::NotKeyValue {
                    name: name.clone(),
                    option: option.to_string(),
                })?;
            options.push((key.trim().to_string(), value.trim().to_string()));
        }
        entries.push(Entry {
            name,
            url: url.trim().to_string(),
            options,
        });
    }
    checked(entries)
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
        .collect();
    checked(entries)
}

/// `entries` when every name is valid and registered once.
fn checked(entries: Vec<Entry>) -> Result<Vec<Entry>, SyntaxError> {
    for (i, entry) in entries.iter().enumerate() {
        let name = &entry.name;
        if !valid_name(name) {
            return Err(SyntaxError::BadName { name: name.clone() });
        }
        if entries.iter().take(i).any(|earlier| earlier.name == *name) {
            return Err(SyntaxError::RegisteredTwice { name: name.clone() });
        }
    }
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
    fn lists_give_names_urls_and_raw_options() {
        assert_eq!(parse_list(""), Ok(vec![]));
        assert_eq!(
            parse_list(
                " planner=http://127.0.0.1:8100 , coder = http://127.0.0.1:8101/ ; kind=http;timeout = 2m;,"
            ),
            Ok(vec![
                entry("planner", "http://127.0.0.1:8100", &[]),
                entry(
                    "coder",
                    "http://127.0.0.1:8101/",
                    &[("kind", "http"), ("timeout", "2m")]
                ),
            ])
        );
        assert_eq!(
            parse_list("a=http://x?q=1;opt=a=b"),
            Ok(vec![entry("a", "http://x?q=1", &[("opt", "a=b")])]),
            "the first '=' splits"
        );
    }

    #[test]
    fn malformed_lists_say_which_entry() {
        assert_eq!(
            parse_list("planner"),
            Err(SyntaxError::NotNameUrl {
                entry: "planner".into()
            })
        );
        assert_eq!(
            parse_list("a=http://x;kind"),
            Err(SyntaxError::NotKeyValue {
                name: "a".into(),
                option: "kind".into()
            })
        );
        assert_eq!(
            parse_list("a=http://x,a=http://y"),
            Err(SyntaxError::RegisteredTwice { name: "a".into() })
        );
    }

    #[test]
    fn names_are_plain_path_segments() {
        for good in ["planner", "b.2", "a-b_c", "...", ".hidden", &"a".repeat(64)] {
            assert!(valid_name(good), "{good}");
        }
        for bad in [".", "..", "", "a*", "a/b", "a b", "é", &"a".repeat(65)] {
            assert!(!valid_name(bad), "{bad}");
            let err = parse_list(&format!("{bad}=http://x")).unwrap_err();
            assert_eq!(err, SyntaxError::BadName { name: bad.into() });
        }
        let message = parse_list(".=http://x").unwrap_err().to_string();
        assert!(message.contains(r#"not "." or "..""#), "{message}");
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
            Err(SyntaxError::BadName { name: "..".into() })
        );
        assert_eq!(
            parse_file(
                r#"{"agents": [{"name": "a", "url": "http://x"}, {"name": "a", "url": "http://y"}]}"#
            ),
            Err(SyntaxError::RegisteredTwice { name: "a".into() })
        );
    }
}
