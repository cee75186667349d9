//! The launcher's one error type and how it maps to an exit status.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// A setting the user must fix; `var` names the environment variable.
    Setting { var: String, message: String },
    /// Something failed while running (I/O, spawning Envoy).
    Runtime(String),
}

impl Error {
    pub fn setting(var: impl Into<String>, message: impl Into<String>) -> Error {
        Error::Setting {
            var: var.into(),
            message: one_line(&message.into()),
        }
    }

    pub fn runtime(message: impl Into<String>) -> Error {
        Error::Runtime(one_line(&message.into()))
    }

    /// 2 for bad settings (like a usage error), 1 for anything else.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Setting { .. } => 2,
            Error::Runtime(_) => 1,
        }
    }

    /// The variable a setting error names, if any.
    #[cfg(test)]
    pub fn var(&self) -> Option<&str> {
        match self {
            Error::Setting { var, .. } => Some(var),
            Error::Runtime(_) => None,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Setting { var, message } => write!(f, "{var}: {message}"),
            Error::Runtime(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for Error {}

/// Messages are printed as exactly one line on stderr.
fn one_line(s: &str) -> String {
    s.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_one_line() {
        let e = Error::setting("ATTACH_CONFIG", "bad\n  at line 2\n");
        assert_eq!(e.to_string(), "ATTACH_CONFIG: bad at line 2");
        assert_eq!(e.exit_code(), 2);
        assert_eq!(Error::runtime("x").exit_code(), 1);
    }
}
