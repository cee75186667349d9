//! Bringing an existing Weaviate class up to the contract's properties.
//!
//! The filter creates [`CLASS`] when it is missing, but a class an older
//! gateway created lacks every property added to the contract since; the
//! companion service selects them all, so its reads fail until they exist.
//! When the schema check finds the class, [`plan`] compares the class's
//! definition (the `GET /v1/schema/{class}` answer) with [`PROPERTIES`]:
//! what is missing is added one property at a time
//! ([`super::weaviate::property_body`]); what exists in another shape cannot
//! be changed in place, so it is only reported, and the writes it refuses
//! are counted as any other failed write.

use super::weaviate::EXACT_TOKENIZATION;
use attach_contract::limits;
use attach_contract::weaviate::{CLASS, PROPERTIES, Property};
use serde_json::Value;
use std::fmt;

/// What the class needs.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Upgrade {
    /// The contract's properties the class does not have, in the contract's order.
    pub missing: Vec<Property>,
    /// Properties the class has in another shape than the contract's.
    pub conflicts: Vec<Conflict>,
}

/// A property the class declares otherwise than the contract.
#[derive(Debug, PartialEq, Eq)]
pub struct Conflict {
    pub property: Property,
    /// The class's data type (as Weaviate lists it) or tokenization.
    pub found: String,
}

impl fmt::Display for Conflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = &self.property;
        write!(
            f,
            "property {} of {CLASS} is {}, not {}{}",
            p.name,
            self.found,
            p.data_type,
            if p.exact {
                " with field tokenization"
            } else {
                ""
            }
        )
    }
}

/// One property of the class, as far as it is compared here.
struct Declared<'a> {
    name: &'a str,
    data_type: Vec<&'a str>,
    tokenization: Option<&'a str>,
}

impl<'a> Declared<'a> {
    /// `None` when `value` is not a `Property` with a name.
    fn read(value: &'a Value) -> Option<Self> {
        let data_type = match value.get("dataType") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(types)) => types.iter().map(Value::as_str).collect::<Option<_>>()?,
            Some(_) => return None,
        };
        let tokenization = match value.get("tokenization") {
            None | Some(Value::Null) => None,
            Some(t) => Some(t.as_str()?),
        };
        Some(Declared {
            name: value.get("name")?.as_str()?,
            data_type,
            tokenization,
        })
    }
}

/// The class definition is not the `Class` object the API promises.
#[derive(Debug, PartialEq, Eq)]
pub struct Unreadable;

/// What the class in `class_body` needs to match the contract.
pub fn plan(class_body: &[u8]) -> Result<Upgrade, Unreadable> {
    let class: Value = serde_json::from_slice(class_body).map_err(|_| Unreadable)?;
    let declared: Vec<Declared> = match class.as_object().ok_or(Unreadable)?.get("properties") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(list)) => list
            .iter()
            .map(Declared::read)
            .collect::<Option<_>>()
            .ok_or(Unreadable)?,
        Some(_) => return Err(Unreadable),
    };
    let mut upgrade = Upgrade::default();
    for p in PROPERTIES {
        let Some(have) = declared.iter().find(|d| d.name == p.name) else {
            upgrade.missing.push(p);
            continue;
        };
        if let Some(found) = conflict(&p, have) {
            upgrade.conflicts.push(Conflict { property: p, found });
        }
    }
    Ok(upgrade)
}

/// How `have` differs from `want`, if it does. A tokenization Weaviate
/// leaves out is not held against the class.
fn conflict(want: &Property, have: &Declared) -> Option<String> {
    if have.data_type != [want.data_type] {
        return Some(format!("{:?}", have.data_type));
    }
    match have.tokenization {
        Some(t) if want.exact && t != EXACT_TOKENIZATION => Some(format!("tokenized by {t}")),
        _ => None,
    }
}

/// A refusal's reason fitted for a log line.
const MAX_REASON_CHARS: usize = 200;

/// The reason in an error answer (`ErrorResponse`, or the
/// `RestrictionViolationResponse` a refused property comes with).
pub fn refusal_reason(body: &[u8]) -> Option<String> {
    let refusal: Value = serde_json::from_slice(body).ok()?;
    let listed = refusal
        .get("error")
        .and_then(Value::as_array)
        .and_then(|list| list.iter().find_map(|e| e.get("message")?.as_str()));
    listed
        .or_else(|| refusal.get("message")?.as_str())
        .map(|m| limits::fit(m, MAX_REASON_CHARS))
}

#[cfg(test)]
mod tests {
    use super::*;
    use attach_contract::weaviate::property;
    use serde_json::json;

    fn found(p: &Property) -> Value {
        let mut v = json!({"name": p.name, "dataType": [p.data_type], "indexFilterable": true});
        if p.data_type == "text" {
            v["tokenization"] = if p.exact { "field" } else { "word" }.into();
        }
        v
    }

    fn class_without(names: &[&str]) -> Value {
        let properties: Vec<Value> = PROPERTIES
            .iter()
            .filter(|p| !names.contains(&p.name))
            .map(found)
            .collect();
        json!({"class": CLASS, "vectorizer": "none", "properties": properties})
    }

    fn plan_of(class: &Value) -> Upgrade {
        plan(class.to_string().as_bytes()).unwrap()
    }

    #[test]
    fn a_current_class_needs_nothing() {
        assert_eq!(plan_of(&class_without(&[])), Upgrade::default());
    }

    #[test]
    fn an_older_class_gets_what_it_lacks_in_the_contracts_order() {
        let old = class_without(&[property::IS_ERROR, property::TOOL, property::UNREADABLE]);
        let upgrade = plan_of(&old);
        let names: Vec<&str> = upgrade.missing.iter().map(|p| p.name).collect();
        assert_eq!(names, ["unreadable", "tool", "isError"]);
        assert!(upgrade.conflicts.is_empty());
        let tool = upgrade.missing[1];
        assert_eq!((tool.data_type, tool.exact), ("text", true));
        assert_eq!(upgrade.missing[2].data_type, "boolean");

        // A class without properties (Weaviate may leave the key out or null).
        for empty in [
            json!({"class": CLASS}),
            json!({"class": CLASS, "properties": null}),
        ] {
            assert_eq!(plan_of(&empty).missing, PROPERTIES.to_vec());
        }
    }

    #[test]
    fn another_shape_is_reported_not_added() {
        let mut class = class_without(&[property::TOOL]);
        let props = class["properties"].as_array_mut().unwrap();
        for p in props.iter_mut() {
            match p["name"].as_str().unwrap() {
                "isError" => p["dataType"] = json!(["text"]),
                "user" => p["tokenization"] = "word".into(),
                "status" => p["dataType"] = json!(["int", "number"]),
                // Left out by Weaviate: nothing to hold against the class.
                "session" => {
                    p.as_object_mut().unwrap().remove("tokenization");
                }
                _ => {}
            }
        }
        props.push(json!({"name": "extra", "dataType": ["text"]}));
        let upgrade = plan_of(&class);
        assert_eq!(
            upgrade.missing.iter().map(|p| p.name).collect::<Vec<_>>(),
            ["tool"]
        );
        let conflicts: Vec<String> = upgrade.conflicts.iter().map(ToString::to_string).collect();
        assert_eq!(
            conflicts,
            [
                "property user of MemoryEvent is tokenized by word, not text with field tokenization",
                "property status of MemoryEvent is [\"int\", \"number\"], not int",
                "property isError of MemoryEvent is [\"text\"], not boolean",
            ]
        );
        let mut no_type = class_without(&[]);
        no_type["properties"][0]
            .as_object_mut()
            .unwrap()
            .remove("dataType");
        assert_eq!(plan_of(&no_type).conflicts[0].found, "[]");
    }

    #[test]
    fn an_unreadable_definition_is_said_so() {
        for bad in [
            &b""[..],
            b"[]",
            b"null",
            b"<html>",
            br#"{"properties": {}}"#,
            br#"{"properties": [{"dataType": ["text"]}]}"#,
            br#"{"properties": [{"name": 1}]}"#,
            br#"{"properties": [{"name": "user", "dataType": "text"}]}"#,
        ] {
            assert_eq!(
                plan(bad),
                Err(Unreadable),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn refusal_reasons_are_read_and_fitted() {
        let listed = json!({"error": [{"message": "property already exists\nreally"}]});
        assert_eq!(
            refusal_reason(listed.to_string().as_bytes()).as_deref(),
            Some("property already exists\u{fffd}really")
        );
        let restriction = json!({"errorCode": "CONFIG_NOT_ALLOWED", "message": "not allowed"});
        assert_eq!(
            refusal_reason(restriction.to_string().as_bytes()).as_deref(),
            Some("not allowed")
        );
        let long = json!({"error": [{}, {"message": "x".repeat(500)}]});
        assert_eq!(
            refusal_reason(long.to_string().as_bytes()).map(|r| r.len()),
            Some(MAX_REASON_CHARS)
        );
        for none in [
            &b""[..],
            b"{}",
            b"[]",
            br#"{"error": [{}]}"#,
            br#"{"error": 3}"#,
        ] {
            assert_eq!(refusal_reason(none), None);
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config::with_cases(512))]

        #[test]
        fn reading_answers_never_panics(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200),
            s in ".{0,40}",
        ) {
            let _ = plan(&bytes);
            let _ = refusal_reason(&bytes);
            let shaped = format!(r#"{{"properties":[{{"name":{s},"dataType":[{s}],"tokenization":{s}}}],"error":[{{"message":{s}}}]}}"#);
            let _ = plan(shaped.as_bytes());
            let _ = refusal_reason(shaped.as_bytes());
        }
    }
}
