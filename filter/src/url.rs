//! Absolute http(s) URLs as the filter calls them: identity providers'
//! discovery documents and key sets, and the memory sink.

/// The parts of an absolute http(s) URL the filter needs to call it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Url {
    pub https: bool,
    pub host: String,
    pub port: u16,
    /// Path and query, always starting with `/`.
    pub path: String,
}

impl Url {
    /// Parses `http(s)://host[:port][/path]`; user-info and fragments are refused.
    pub fn parse(s: &str) -> Result<Url, &'static str> {
        let (https, rest) = if let Some(r) = s.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = s.strip_prefix("http://") {
            (false, r)
        } else {
            return Err("must start with http:// or https://");
        };
        let (authority, path) = rest.split_at(rest.find(['/', '?']).unwrap_or(rest.len()));
        let path = if path.is_empty() { "/" } else { path };
        if authority.contains('@') {
            return Err("must not contain user information");
        }
        if path.contains('#') {
            return Err("must not contain a fragment");
        }
        let (host, port) = split_host_port(authority, if https { 443 } else { 80 })?;
        let path = if path.starts_with('?') {
            format!("/{path}")
        } else {
            path.to_string()
        };
        Ok(Url {
            https,
            host,
            port,
            path,
        })
    }

    /// `scheme://host:port`, the key of [`crate::config::PluginConfig::clusters`].
    pub fn origin(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        format!("{scheme}://{}:{}", self.host, self.port)
    }

    /// The value for `:authority` (the port only when it is not the scheme's default).
    pub fn authority(&self) -> String {
        let default = if self.https { 443 } else { 80 };
        if self.port == default {
            self.host.clone()
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    pub fn is_loopback(&self) -> bool {
        self.host == "localhost"
            || self.host == "[::1]"
            || self.host.starts_with("127.")
                && self.host.split('.').all(|p| p.parse::<u8>().is_ok())
    }
}

fn split_host_port(authority: &str, default_port: u16) -> Result<(String, u16), &'static str> {
    let (host, port) = if authority.starts_with('[') {
        let end = authority
            .find(']')
            .ok_or("has an unterminated IPv6 address")?;
        let (host, after) = authority.split_at(end + 1);
        match after {
            "" => (host, None),
            p => (
                host,
                Some(p.strip_prefix(':').ok_or("has a malformed port")?),
            ),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err("has no host");
    }
    if !host
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-._[]:".contains(&b))
    {
        return Err("has an invalid host");
    }
    let port = match port {
        None => default_port,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or("has an invalid port")?,
    };
    Ok((host.to_ascii_lowercase(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let u = Url::parse("https://Idp.Example:8443/a/b?c=d").unwrap();
        assert_eq!(u.host, "idp.example");
        assert_eq!(u.port, 8443);
        assert_eq!(u.path, "/a/b?c=d");
        assert_eq!(u.authority(), "idp.example:8443");
        assert_eq!(u.origin(), "https://idp.example:8443");
        let u = Url::parse("http://127.0.0.1").unwrap();
        assert_eq!((u.port, u.path.as_str()), (80, "/"));
        assert!(u.is_loopback());
        assert!(!Url::parse("http://127.evil.com").unwrap().is_loopback());
        let u = Url::parse("http://[::1]:9000/x").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("[::1]", 9000));
        for bad in [
            "ftp://x",
            "http://",
            "http://u:p@host/",
            "http://h:0/",
            "http://h:99999/",
            "http://h/#f",
            "http://h o/",
        ] {
            assert!(Url::parse(bad).is_err(), "{bad}");
        }
    }
}
