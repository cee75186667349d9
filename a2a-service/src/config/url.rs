//! The URL settings' one rule: an absolute http(s) URL without spaces.

pub(super) fn is_http_url(s: &str) -> bool {
    (s.starts_with("http://") || s.starts_with("https://"))
        && s.len() > "https://".len()
        && !s.contains(char::is_whitespace)
}
