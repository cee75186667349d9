//! An OpenAI streaming request rewritten to ask for the stream's usage.
//!
//! An OpenAI-compatible engine reports a stream's token counts only when
//! the request says `stream_options.include_usage: true`; without them a
//! stream could only be charged from an estimate of its text. The body is
//! edited as text, not re-serialised, so the engine gets the client's
//! request byte for byte plus that one member, and [`super::usage_strip`]
//! takes the report back out of the reply.

use super::json_text::Object;

const OPTIONS: &str = r#"{"include_usage":true}"#;

/// The same request asking for usage, for a JSON object with
/// `"stream": true` that does not already ask; `None` otherwise (not JSON,
/// not streaming, already asking, or `stream_options` of a type the engine
/// would refuse anyway), when the body is to be sent as it is.
pub fn ask_for_usage(body: &[u8]) -> Option<Vec<u8>> {
    serde_json::from_slice::<serde::de::IgnoredAny>(body).ok()?;
    let request = Object::at(body, 0)?;
    if request.get(body, "stream")?.value(body) != b"true" {
        return None;
    }
    let Some(options) = request.get(body, "stream_options") else {
        let last = request.members.last()?;
        let member = format!(r#","stream_options":{OPTIONS}"#);
        return Some(splice(body, last.value.end..last.value.end, &member));
    };
    let value = options.value(body);
    if value == b"null" {
        return Some(splice(body, options.value.clone(), OPTIONS));
    }
    let inner = Object::at(body, options.value.start)?;
    match inner.get(body, "include_usage") {
        Some(asked) if asked.value(body) == b"true" => None,
        Some(other) => Some(splice(body, other.value.clone(), "true")),
        None => match inner.members.last() {
            Some(last) => Some(splice(
                body,
                last.value.end..last.value.end,
                r#","include_usage":true"#,
            )),
            None => {
                let at = inner.open + 1;
                Some(splice(body, at..at, r#""include_usage":true"#))
            }
        },
    }
}

/// `body` with `range` replaced by `with`.
fn splice(body: &[u8], range: std::ops::Range<usize>, with: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + with.len());
    out.extend_from_slice(body.get(..range.start).unwrap_or_default());
    out.extend_from_slice(with.as_bytes());
    out.extend_from_slice(body.get(range.end..).unwrap_or_default());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn ask(body: &str) -> Option<String> {
        ask_for_usage(body.as_bytes()).map(|b| String::from_utf8(b).unwrap())
    }

    #[test]
    fn a_stream_is_asked_for_its_usage_with_nothing_else_changed() {
        let cases = [
            (
                r#"{"model":"m","stream":true,"messages":[{"role":"user","content":"}"}]}"#,
                r#"{"model":"m","stream":true,"messages":[{"role":"user","content":"}"}],"stream_options":{"include_usage":true}}"#,
            ),
            (
                "{\n  \"stream\": true,\n  \"model\": \"m\"\n}\n",
                "{\n  \"stream\": true,\n  \"model\": \"m\",\"stream_options\":{\"include_usage\":true}\n}\n",
            ),
            (
                r#"{"stream":true,"stream_options":null}"#,
                r#"{"stream":true,"stream_options":{"include_usage":true}}"#,
            ),
            (
                r#"{"stream":true,"stream_options":{ }}"#,
                r#"{"stream":true,"stream_options":{"include_usage":true }}"#,
            ),
            (
                r#"{"stream_options": {"continuous_usage_stats": false}, "stream": true}"#,
                r#"{"stream_options": {"continuous_usage_stats": false,"include_usage":true}, "stream": true}"#,
            ),
            (
                r#"{"stream":true,"stream_options":{"include_usage": false }}"#,
                r#"{"stream":true,"stream_options":{"include_usage": true }}"#,
            ),
            (
                r#"{"stream":true,"stream_options":{"include_usage":null}}"#,
                r#"{"stream":true,"stream_options":{"include_usage":true}}"#,
            ),
        ];
        for (body, want) in cases {
            let got = ask(body).unwrap_or_else(|| panic!("{body}"));
            assert_eq!(got, want);
            let v: Value = serde_json::from_str(&got).unwrap();
            assert_eq!(v["stream_options"]["include_usage"], json!(true));
            // And asking again changes nothing.
            assert_eq!(ask(&got), None);
        }
    }

    #[test]
    fn what_is_left_as_it_is() {
        for body in [
            r#"{"model":"m","messages":[]}"#,
            r#"{"stream":false}"#,
            r#"{"stream":"true"}"#,
            r#"{"stream":1}"#,
            r#"{"stream":true,"stream_options":{"include_usage":true}}"#,
            r#"{"stream":true,"stream_options":"yes"}"#,
            r#"{"stream":true,"stream_options":[]}"#,
            r#"{"stream":true,"#,
            r#"{"stream":true}{}"#,
            r#"[{"stream":true}]"#,
            "",
            "\u{feff}{\"stream\":true}",
        ] {
            assert_eq!(ask(body), None, "{body}");
        }
        // The key JSON reads last is the one that counts, as for the engine.
        assert_eq!(ask(r#"{"stream":true,"stream":false}"#), None);
        assert!(ask(r#"{"stream":false,"stream":true}"#).is_some());
    }

    proptest::proptest! {
        /// Whatever else a streaming request holds, the rewrite is the same
        /// JSON plus `stream_options.include_usage: true`.
        #[test]
        fn the_rewrite_adds_only_the_ask(
            extra in proptest::collection::btree_map("[a-z_\"\\\\é]{1,8}", "[ -~é]{0,8}", 0..5),
            options in proptest::option::of(proptest::collection::btree_map("[a-z]{1,6}", proptest::prelude::any::<bool>(), 0..3)),
            pretty in proptest::prelude::any::<bool>(),
        ) {
            let mut request = json!({"stream": true});
            for (k, v) in &extra {
                if k != "stream" && k != "stream_options" {
                    request[k] = json!(v);
                }
            }
            if let Some(options) = &options {
                request["stream_options"] = json!(options);
            }
            let body = if pretty { serde_json::to_string_pretty(&request) } else { serde_json::to_string(&request) }.unwrap();
            let asked = options.as_ref().and_then(|o| o.get("include_usage")) == Some(&true);
            match ask(&body) {
                None => proptest::prop_assert!(asked),
                Some(got) => {
                    let mut want = request.clone();
                    want["stream_options"]["include_usage"] = json!(true);
                    let got: Value = serde_json::from_str(&got).unwrap();
                    proptest::prop_assert_eq!(got, want);
                }
            }
        }
    }
}
