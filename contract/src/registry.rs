//! What every registry of named upstreams shares (the A2A agents of
//! [`crate::agents`], the MCP servers of [`crate::mcp_servers`]): the list
//! form `name=url;key=value,...`, the rule a name must follow, and the
//! error that says why a registry cannot be read.
//!
//! The readers give the options their meaning; here they are raw text.

use std::fmt;

/// The longest registered name, in bytes.
pub const MAX_NAME_BYTES: usize = 64;

/// One registered upstream, as written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub url: String,
    /// `(key, value)` in the order written.
    pub options: Vec<(String, String)>,
}

/// Why a registry cannot be read. `noun` says what the registry holds
/// ("agent", "MCP server"), for messages a user can act on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SyntaxError {
    /// The file is not its registry's JSON shape (serde's message).
    NotTheFileShape(String),
    NotNameUrl {
        entry: String,
    },
    NotKeyValue {
        name: String,
        option: String,
    },
    BadName {
        noun: &'static str,
        name: String,
    },
    RegisteredTwice {
        noun: &'static str,
        name: String,
    },
    /// An option (or file member) its registry does not take as written.
    BadOption {
        name: String,
        option: String,
        reason: String,
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
            SyntaxError::BadName { noun, name } => write!(
                f,
                "{noun} name {name:?} must be 1-{MAX_NAME_BYTES} letters, digits, '-', '_' or '.', and not \".\" or \"..\""
            ),
            SyntaxError::RegisteredTwice { noun, name } => {
                write!(f, "{noun} {name:?} is registered twice")
            }
            SyntaxError::BadOption {
                name,
                option,
                reason,
            } => write!(f, "{option} of {name:?}: {reason}"),
        }
    }
}

impl std::error::Error for SyntaxError {}

/// Whether `name` may be registered: 1 to 64 ASCII letters, digits, `-`,
/// `_` or `.`, but not `.` or `..`. A name becomes a segment of public
/// paths (`/a2a/agents/{name}/...`, `/mcp/{name}/...`), where `*` and `/`
/// would widen a route and a dot segment would be normalised away into
/// another path.
pub fn valid_name(name: &str) -> bool {
    (1..=MAX_NAME_BYTES).contains(&name.len())
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

/// The entries of a list: comma-separated `name=url`, each optionally
/// followed by `;key=value` options. Blanks around the pieces and empty
/// entries or options are ignored; the first `=` of a piece splits it.
pub fn parse_list(list: &str, noun: &'static str) -> Result<Vec<Entry>, SyntaxError> {
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
    check_names(entries.iter().map(|e| e.name.as_str()), noun)?;
    Ok(entries)
}

/// Whether every name is valid and registered once; the first that is not
/// is the error.
pub fn check_names<'a>(
    names: impl IntoIterator<Item = &'a str>,
    noun: &'static str,
) -> Result<(), SyntaxError> {
    let mut seen: Vec<&str> = Vec::new();
    for name in names {
        if !valid_name(name) {
            return Err(SyntaxError::BadName {
                noun,
                name: name.to_string(),
            });
        }
        if seen.contains(&name) {
            return Err(SyntaxError::RegisteredTwice {
                noun,
                name: name.to_string(),
            });
        }
        seen.push(name);
    }
    Ok(())
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
        assert_eq!(parse_list("", "thing"), Ok(vec![]));
        assert_eq!(
            parse_list(
                " planner=http://127.0.0.1:8100 , coder = http://127.0.0.1:8101/ ; kind=http;timeout = 2m;,",
                "thing"
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
            parse_list("a=http://x?q=1;opt=a=b", "thing"),
            Ok(vec![entry("a", "http://x?q=1", &[("opt", "a=b")])]),
            "the first '=' splits"
        );
    }

    #[test]
    fn malformed_lists_say_which_entry() {
        assert_eq!(
            parse_list("planner", "thing"),
            Err(SyntaxError::NotNameUrl {
                entry: "planner".into()
            })
        );
        assert_eq!(
            parse_list("a=http://x;kind", "thing"),
            Err(SyntaxError::NotKeyValue {
                name: "a".into(),
                option: "kind".into()
            })
        );
        let twice = parse_list("a=http://x,a=http://y", "thing").unwrap_err();
        assert_eq!(
            twice,
            SyntaxError::RegisteredTwice {
                noun: "thing",
                name: "a".into()
            }
        );
        assert_eq!(twice.to_string(), r#"thing "a" is registered twice"#);
    }

    #[test]
    fn names_are_plain_path_segments() {
        for good in ["planner", "b.2", "a-b_c", "...", ".hidden", &"a".repeat(64)] {
            assert!(valid_name(good), "{good}");
        }
        for bad in [".", "..", "", "a*", "a/b", "a b", "é", &"a".repeat(65)] {
            assert!(!valid_name(bad), "{bad}");
            let err = parse_list(&format!("{bad}=http://x"), "thing").unwrap_err();
            assert_eq!(
                err,
                SyntaxError::BadName {
                    noun: "thing",
                    name: bad.into()
                }
            );
        }
        let message = parse_list(".=http://x", "thing").unwrap_err().to_string();
        assert!(message.starts_with(r#"thing name ".""#), "{message}");
        assert!(message.contains(r#"not "." or "..""#), "{message}");
    }
}
