//! Where the members of a JSON object lie in its text, so that a body can
//! be edited in place and every byte not edited stays as it was sent.
//!
//! The scan trusts its input to be JSON (callers check with serde first)
//! but never panics on any: what it cannot follow is `None`.

use std::ops::Range;

/// One member: where its key starts and where its value lies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// The key's opening quote.
    pub start: usize,
    /// The key, quotes included.
    pub key: Range<usize>,
    pub value: Range<usize>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Object {
    /// The opening brace.
    pub open: usize,
    /// The closing brace.
    pub close: usize,
    pub members: Vec<Member>,
}

impl Object {
    /// The object whose text starts at `at` in `text` (after whitespace).
    pub fn at(text: &[u8], at: usize) -> Option<Object> {
        let open = skip_space(text, at);
        if text.get(open) != Some(&b'{') {
            return None;
        }
        let mut members = Vec::new();
        let mut at = skip_space(text, open + 1);
        if text.get(at) == Some(&b'}') {
            return Some(Object {
                open,
                close: at,
                members,
            });
        }
        loop {
            let start = at;
            let key_end = string_end(text, start)?;
            at = skip_space(text, key_end);
            if text.get(at) != Some(&b':') {
                return None;
            }
            let value_start = skip_space(text, at + 1);
            let value_end = value_end(text, value_start)?;
            members.push(Member {
                start,
                key: start..key_end,
                value: value_start..value_end,
            });
            at = skip_space(text, value_end);
            match text.get(at) {
                Some(b',') => at = skip_space(text, at + 1),
                Some(b'}') => {
                    return Some(Object {
                        open,
                        close: at,
                        members,
                    });
                }
                _ => return None,
            }
        }
    }

    /// The member named `name` (the last one, as JSON parsers read a
    /// repeated key).
    pub fn get(&self, text: &[u8], name: &str) -> Option<&Member> {
        self.members.iter().rev().find(|m| m.key_is(text, name))
    }
}

impl Member {
    pub fn key_is(&self, text: &[u8], name: &str) -> bool {
        let Some(key) = text.get(self.key.clone()) else {
            return false;
        };
        let bare = key.get(1..key.len().saturating_sub(1)).unwrap_or_default();
        if !bare.contains(&b'\\') {
            return bare == name.as_bytes();
        }
        serde_json::from_slice::<String>(key).is_ok_and(|k| k == name)
    }

    pub fn value<'t>(&self, text: &'t [u8]) -> &'t [u8] {
        text.get(self.value.clone()).unwrap_or_default()
    }
}

fn skip_space(text: &[u8], mut at: usize) -> usize {
    while text
        .get(at)
        .is_some_and(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
    {
        at += 1;
    }
    at
}

/// The end (past the closing quote) of the string opening at `at`.
fn string_end(text: &[u8], at: usize) -> Option<usize> {
    if text.get(at) != Some(&b'"') {
        return None;
    }
    let mut i = at + 1;
    loop {
        match text.get(i)? {
            b'"' => return Some(i + 1),
            b'\\' => i += 2,
            _ => i += 1,
        }
    }
}

/// The end of the value starting at `at`.
fn value_end(text: &[u8], at: usize) -> Option<usize> {
    match text.get(at)? {
        b'"' => string_end(text, at),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut i = at;
            loop {
                match text.get(i)? {
                    b'"' => {
                        i = string_end(text, i)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth = depth.checked_sub(1)?;
                        if depth == 0 {
                            return Some(i + 1);
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
        }
        _ => {
            let len = text
                .get(at..)?
                .iter()
                .position(|b| matches!(b, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r'))
                .unwrap_or(text.len() - at);
            (len > 0).then_some(at + len)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spans(json: &str) -> Vec<(&str, &str)> {
        let text = json.as_bytes();
        let object = Object::at(text, 0).expect("an object");
        assert_eq!(text[object.open], b'{');
        assert_eq!(text[object.close], b'}');
        object
            .members
            .iter()
            .map(|m| (&json[m.key.clone()], &json[m.value.clone()]))
            .collect()
    }

    #[test]
    fn members_and_their_values() {
        assert_eq!(
            spans(r#" { "a" : 1 , "b\"}":"x}" ,"c":{"d":[1,{"e":"]"}]},"f":[ ],"g":null}"#),
            [
                (r#""a""#, "1"),
                (r#""b\"}""#, r#""x}""#),
                (r#""c""#, r#"{"d":[1,{"e":"]"}]}"#),
                (r#""f""#, "[ ]"),
                (r#""g""#, "null"),
            ]
        );
        assert_eq!(spans("{}"), []);
        assert_eq!(spans("{\n}"), []);
        assert_eq!(spans("{\"a\":-1.5e3}"), [(r#""a""#, "-1.5e3")]);
    }

    #[test]
    fn keys_are_read_as_json_reads_them() {
        let text = br#"{"stream":false,"str\u0065am":true}"#;
        let object = Object::at(text, 0).unwrap();
        assert_eq!(object.get(text, "stream").unwrap().value(text), b"true");
        assert!(object.get(text, "strea").is_none());
    }

    #[test]
    fn what_is_not_an_object() {
        for bad in [
            "",
            "[]",
            "1",
            "{",
            r#"{"a"}"#,
            r#"{"a":}"#,
            r#"{"a":1,}"#,
            r#"{"a":"x"#,
            r#"{"a":[1}"#,
            "{a:1}",
        ] {
            assert!(Object::at(bad.as_bytes(), 0).is_none(), "{bad}");
        }
    }

    proptest::proptest! {
        /// Any bytes at all: never a panic.
        #[test]
        fn never_panics(bytes in proptest::collection::vec(proptest::sample::select(b"{}[]\",:\\ a1n".to_vec()), 0..60)) {
            if let Some(object) = Object::at(&bytes, 0) {
                for m in &object.members {
                    proptest::prop_assert!(m.value.end <= bytes.len());
                }
            }
        }
    }
}
