//! The one pattern rule of every allow-list and match in the configuration
//! (MCP tool rules, budget model rules and user overrides): an exact value,
//! or a prefix when the text ends in `*`.

/// An exact value, or every value with a prefix (`prefix*`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Pattern {
    Exact(String),
    Prefix(String),
}

impl Pattern {
    /// Visible ASCII only, not empty, and `*` only as the last character.
    pub fn parse(text: &str) -> Result<Pattern, &'static str> {
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

    /// The pattern as it is written in the configuration.
    pub fn text(&self) -> String {
        match self {
            Pattern::Exact(p) => p.clone(),
            Pattern::Prefix(p) => format!("{p}*"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_and_prefix() {
        let exact = Pattern::parse("echo").unwrap();
        assert!(exact.matches("echo") && !exact.matches("echo2"));
        let prefix = Pattern::parse("did:key:*").unwrap();
        assert!(prefix.matches("did:key:z6Mk") && !prefix.matches("did:web:x"));
        assert_eq!(prefix.text(), "did:key:*");
        assert_eq!(Pattern::parse("*").unwrap(), Pattern::Prefix(String::new()));
    }

    #[test]
    fn bad_patterns_are_refused() {
        for bad in ["", "a*b", "a**", "two words", "é"] {
            assert!(Pattern::parse(bad).is_err(), "{bad:?}");
        }
    }
}
