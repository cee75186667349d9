//! Request bodies for the Weaviate sink, and the reading of its answers.
//!
//! Shapes follow Weaviate's OpenAPI document (`Class`, `Property`, `Object`,
//! `ObjectsGetResponse`); the tests check them against it. The class and
//! its properties are the contract's ([`attach_contract::weaviate`]), which
//! the companion service reads back.

use attach_contract::event::{Event, Kind, Role};
use attach_contract::weaviate::{CLASS, PROPERTIES, Property};
use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use std::fmt;

/// The body of `POST /v1/schema`. Vectors are left to whoever reads the
/// memory: the filter cannot afford to embed text inline.
pub fn class_schema() -> Vec<u8> {
    let properties: Vec<serde_json::Value> = PROPERTIES.iter().map(property_json).collect();
    serde_json::json!({
        "class": CLASS,
        "description": "Model prompts and replies, and MCP tool calls and results, mirrored by Attach Gateway",
        "vectorizer": "none",
        "properties": properties,
    })
    .to_string()
    .into_bytes()
}

/// The body of `POST /v1/schema/{class}/properties`: one property added to
/// a class made before the contract had it.
pub fn property_body(p: &Property) -> Vec<u8> {
    property_json(p).to_string().into_bytes()
}

/// A property as Weaviate's `Property` definition.
fn property_json(p: &Property) -> serde_json::Value {
    let mut property = serde_json::Map::new();
    property.insert("name".into(), p.name.into());
    property.insert("dataType".into(), serde_json::json!([p.data_type]));
    if p.exact {
        property.insert("tokenization".into(), EXACT_TOKENIZATION.into());
    }
    serde_json::Value::Object(property)
}

/// The tokenization of an exact-match text property: the whole value is
/// one token.
pub const EXACT_TOKENIZATION: &str = "field";

#[derive(Serialize)]
struct BatchBody<'a> {
    objects: Vec<BatchObject<'a>>,
}

#[derive(Serialize)]
struct BatchObject<'a> {
    class: &'static str,
    id: &'a str,
    properties: Properties<'a>,
}

/// The event's fields under the class's camelCase property names (the
/// tests check them against [`PROPERTIES`]); absent optional values are
/// left out rather than written as null.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Properties<'a> {
    user: &'a str,
    session: &'a str,
    role: Role,
    kind: Kind,
    content: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    model: Option<&'a str>,
    route: &'a str,
    request_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    task_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<u16>,
    timestamp: &'a str,
    latency_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    tokens_in: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tokens_out: Option<u64>,
    truncated: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    unreadable: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    is_error: Option<bool>,
}

/// The body of `POST /v1/batch/objects`, which upserts by id: a retried
/// batch overwrites what an earlier attempt wrote.
pub fn batch_body(events: &[Event]) -> Vec<u8> {
    let body = BatchBody {
        objects: events
            .iter()
            .map(|e| BatchObject {
                class: CLASS,
                id: &e.id,
                properties: Properties {
                    user: &e.user,
                    session: &e.session,
                    role: e.role,
                    kind: e.kind,
                    content: &e.content,
                    model: e.model.as_deref(),
                    route: &e.route,
                    request_id: &e.request_id,
                    task_id: e.task_id.as_deref(),
                    status: e.status,
                    timestamp: &e.timestamp,
                    latency_ms: e.latency_ms,
                    tokens_in: e.tokens_in,
                    tokens_out: e.tokens_out,
                    truncated: e.truncated,
                    unreadable: e.unreadable.as_deref(),
                    request_bytes: e.request_bytes,
                    tool: e.tool.as_deref(),
                    is_error: e.is_error,
                },
            })
            .collect(),
    };
    // Serialising plain structs with string keys cannot fail.
    serde_json::to_vec(&body).unwrap_or_default()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BatchError {
    /// Not the array of per-object results the API promises.
    Malformed,
    /// An object failed without saying which; only a whole retry is safe.
    FailedWithoutId,
}

impl fmt::Display for BatchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BatchError::Malformed => "batch reply is not an array of object results",
            BatchError::FailedWithoutId => "batch reply has a failed object without an id",
        })
    }
}

impl std::error::Error for BatchError {}

#[derive(Deserialize)]
struct ObjectResult {
    id: Option<String>,
    result: Option<Outcome>,
}

#[derive(Deserialize)]
struct Outcome {
    status: Option<String>,
    errors: Option<Errors>,
}

#[derive(Deserialize)]
struct Errors {
    error: Option<Vec<IgnoredAny>>,
}

/// The ids of the objects a `200` batch reply says failed, so that only
/// those are retried. Weaviate answers 200 even when objects fail, marking
/// each in `result`: a `FAILED` status or a non-empty `errors.error`.
pub fn failed_ids(reply_body: &[u8]) -> Result<Vec<String>, BatchError> {
    let results: Vec<ObjectResult> =
        serde_json::from_slice(reply_body).map_err(|_| BatchError::Malformed)?;
    let mut failed = Vec::new();
    for object in results {
        let Some(outcome) = object.result else {
            continue;
        };
        let has_errors = outcome
            .errors
            .and_then(|e| e.error)
            .is_some_and(|list| !list.is_empty());
        if has_errors || outcome.status.as_deref() == Some("FAILED") {
            failed.push(object.id.ok_or(BatchError::FailedWithoutId)?);
        }
    }
    Ok(failed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::event::{Exchange, ToolCallText, ToolResultText, Unreadable};
    use crate::memory::prompt::Prompt;
    use crate::memory::reply_capture::Reply;
    use crate::memory::weaviate_upgrade;
    use serde_json::{Value, json};

    /// Weaviate's published OpenAPI document: `$WEAVIATE_CONTRACT`, else
    /// `shared/contracts/` beside the repository. The repository does not
    /// ship it, so without it the checks that need it say so and pass.
    fn contract() -> Option<Value> {
        let path = std::env::var("WEAVIATE_CONTRACT").unwrap_or_else(|_| {
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../shared/contracts/weaviate-openapi.json"
            )
            .to_string()
        });
        match std::fs::read_to_string(&path) {
            Ok(text) => Some(serde_json::from_str(&text).unwrap()),
            Err(e) => {
                eprintln!("Weaviate contract checks skipped: {path}: {e}");
                None
            }
        }
    }

    /// The subset of Swagger 2.0 schemas these bodies touch: `$ref`,
    /// `allOf`, object properties (unknown keys refused when properties are
    /// declared and no `additionalProperties` is), arrays, scalar types and
    /// enums. Returns every mismatch with its JSON path.
    fn validate(spec: &Value, schema: &Value, value: &Value, at: &str, errors: &mut Vec<String>) {
        if let Some(Value::String(r)) = schema.get("$ref") {
            let name = r.strip_prefix("#/definitions/").unwrap();
            return validate(spec, &spec["definitions"][name], value, at, errors);
        }
        if let Some(Value::Array(parts)) = schema.get("allOf") {
            let mut merged = serde_json::Map::new();
            for part in parts {
                let part = match part.get("$ref") {
                    Some(Value::String(r)) => {
                        &spec["definitions"][r.strip_prefix("#/definitions/").unwrap()]
                    }
                    _ => part,
                };
                if let Some(Value::Object(props)) = part.get("properties") {
                    merged.extend(props.clone());
                }
            }
            let flat = json!({"type": "object", "properties": merged});
            return validate(spec, &flat, value, at, errors);
        }
        let ok = match schema.get("type").and_then(Value::as_str) {
            Some("object") | None if schema.get("properties").is_some() => {
                let (Value::Object(map), Some(Value::Object(props))) =
                    (value, schema.get("properties"))
                else {
                    errors.push(format!("{at}: expected an object"));
                    return;
                };
                for (key, v) in map {
                    match (props.get(key), schema.get("additionalProperties")) {
                        (Some(s), _) | (None, Some(s)) => {
                            validate(spec, s, v, &format!("{at}.{key}"), errors)
                        }
                        (None, None) => errors.push(format!("{at}.{key}: not in the contract")),
                    }
                }
                true
            }
            Some("object") => value.is_object(),
            Some("array") => match value {
                Value::Array(items) => {
                    for (i, item) in items.iter().enumerate() {
                        validate(spec, &schema["items"], item, &format!("{at}[{i}]"), errors);
                    }
                    true
                }
                _ => false,
            },
            Some("string") => value.is_string(),
            Some("integer") => value.is_i64() || value.is_u64(),
            Some("number") => value.is_number(),
            Some("boolean") => value.is_boolean(),
            _ => true,
        };
        if !ok {
            errors.push(format!("{at}: {value} is not of type {}", schema["type"]));
        }
        if let Some(Value::Array(allowed)) = schema.get("enum") {
            if !allowed.contains(value) {
                errors.push(format!("{at}: {value} not among {allowed:?}"));
            }
        }
    }

    fn assert_valid(spec: &Value, schema: &Value, value: &Value) {
        let mut errors = Vec::new();
        validate(spec, schema, value, "$", &mut errors);
        assert!(errors.is_empty(), "{errors:#?}");
    }

    fn events() -> Vec<Event> {
        let exchange = Exchange {
            user: "alice smith",
            session: "s-1",
            actor: "",
            request_id: "req-1",
            route: "/v1/chat/completions",
            task_id: Some("t-1"),
            status: Some(200),
            start_ms: 1_700_000_000_000,
            end_ms: 1_700_000_000_900,
        };
        let prompt = Prompt {
            model: Some("gpt-4o".into()),
            text: "hi \"there\"".into(),
            truncated: false,
            stream: false,
        };
        let reply = Reply {
            text: "hello".into(),
            truncated: false,
            tokens_in: Some(3),
            tokens_out: Some(2),
            model: None,
        };
        let [p, r] = exchange.events(Ok(prompt), reply.clone());
        let bare = Event {
            model: None,
            task_id: None,
            status: None,
            ..r.clone()
        };
        let unreadable = Unreadable {
            reason: "duplicate key",
            request_bytes: 1234,
        };
        let [placeholder, _] = exchange.events(Err(unreadable), reply);
        let tool_exchange = Exchange {
            route: "/mcp/tools",
            request_id: "req-2",
            task_id: None,
            ..exchange
        };
        let result =
            serde_json::json!({"content": [{"type": "text", "text": "hi"}], "isError": true});
        let [call, result] = tool_exchange.tool_events(
            "echo",
            ToolCallText::new("echo", Some(r#"{"text":"hi"}"#), 1024),
            ToolResultText::from_result(&result, 1024),
        );
        vec![p, r, bare, placeholder, call, result]
    }

    #[test]
    fn class_schema_follows_the_contract() {
        let Some(spec) = contract() else { return };
        let class: Value = serde_json::from_slice(&class_schema()).unwrap();
        assert_valid(&spec, &json!({"$ref": "#/definitions/Class"}), &class);
        let body_schema = &spec["paths"]["/schema"]["post"]["parameters"][0]["schema"];
        assert_valid(&spec, body_schema, &class);
        assert_eq!(class["class"], CLASS);

        // The checker itself sees misspelt keys, wrong types and bad enums.
        let mut wrong = class.clone();
        wrong["vectoriser"] = "none".into();
        wrong["properties"][0]["dataType"] = "text".into();
        wrong["properties"][1]["tokenization"] = "fields".into();
        let mut errors = Vec::new();
        validate(
            &spec,
            &json!({"$ref": "#/definitions/Class"}),
            &wrong,
            "$",
            &mut errors,
        );
        assert_eq!(errors.len(), 3, "{errors:#?}");
        assert_eq!(class["vectorizer"], "none");
        let props = class["properties"].as_array().unwrap();
        assert_eq!(props.len(), PROPERTIES.len());
        let field: Vec<&str> = props
            .iter()
            .filter(|p| p["tokenization"] == "field")
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            field,
            [
                "user",
                "session",
                "role",
                "kind",
                "model",
                "route",
                "requestId",
                "taskId",
                "unreadable",
                "tool"
            ]
        );
        assert!(
            props
                .iter()
                .all(|p| { p["tokenization"].is_null() || p["dataType"] == json!(["text"]) })
        );
    }

    #[test]
    fn property_bodies_follow_the_contract_and_the_class() {
        let Some(spec) = contract() else { return };
        let add = &spec["paths"]["/schema/{className}/properties"]["post"];
        let body_schema = add["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["in"] == "body")
            .map(|p| &p["schema"])
            .unwrap();
        let class: Value = serde_json::from_slice(&class_schema()).unwrap();
        for (p, in_class) in PROPERTIES
            .iter()
            .zip(class["properties"].as_array().unwrap())
        {
            let body: Value = serde_json::from_slice(&property_body(p)).unwrap();
            assert_valid(&spec, body_schema, &body);
            assert_eq!(&body, in_class, "added as it would have been created");
        }
        // What the answers are read as: the added property, or the reason
        // a refusal gives.
        let property = json!({"$ref": "#/definitions/Property"});
        assert_eq!(add["responses"]["200"]["schema"], property);
        let refusal = json!({"error": [{"message": "property already exists"}]});
        let refusal_schema = &add["responses"]["422"]["schema"];
        assert_valid(&spec, refusal_schema, &refusal);
        assert_eq!(
            weaviate_upgrade::refusal_reason(refusal.to_string().as_bytes()).as_deref(),
            Some("property already exists")
        );
        let restricted = json!({"errorCode": "CONFIG_NOT_ALLOWED", "message": "not allowed"});
        assert_valid(&spec, refusal_schema, &restricted);
        assert_eq!(
            weaviate_upgrade::refusal_reason(restricted.to_string().as_bytes()).as_deref(),
            Some("not allowed")
        );
    }

    /// A class an older gateway created, as `GET /v1/schema/{class}`
    /// answers it (with the defaults Weaviate fills in), needs the
    /// properties added since, and nothing else.
    #[test]
    fn an_older_class_read_back_lacks_only_the_newer_properties() {
        let Some(spec) = contract() else { return };
        let mut class: Value = serde_json::from_slice(&class_schema()).unwrap();
        let props = class["properties"].as_array_mut().unwrap();
        props.retain(|p| !["tool", "isError"].contains(&p["name"].as_str().unwrap()));
        for p in props.iter_mut() {
            p["indexFilterable"] = true.into();
            p["indexRangeFilters"] = false.into();
            p["indexSearchable"] = (p["dataType"] == json!(["text"])).into();
            if p["dataType"] == json!(["text"]) && p["tokenization"].is_null() {
                p["tokenization"] = "word".into();
            }
        }
        class["multiTenancyConfig"] = json!({"enabled": false});
        let answer = &spec["paths"]["/schema/{className}"]["get"]["responses"]["200"]["schema"];
        assert_valid(&spec, answer, &class);
        let upgrade = weaviate_upgrade::plan(class.to_string().as_bytes()).unwrap();
        let names: Vec<&str> = upgrade.missing.iter().map(|p| p.name).collect();
        assert_eq!(names, ["tool", "isError"]);
        assert!(upgrade.conflicts.is_empty(), "{:?}", upgrade.conflicts);
    }

    #[test]
    fn batch_body_follows_the_contract_and_the_class() {
        let Some(spec) = contract() else { return };
        let events = events();
        let body: Value = serde_json::from_slice(&batch_body(&events)).unwrap();
        let body_schema = &spec["paths"]["/batch/objects"]["post"]["parameters"][0]["schema"];
        assert_valid(&spec, body_schema, &body);

        let class: Value = serde_json::from_slice(&class_schema()).unwrap();
        let types: std::collections::BTreeMap<&str, &str> = class["properties"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p["name"].as_str().unwrap(),
                    p["dataType"][0].as_str().unwrap(),
                )
            })
            .collect();
        let objects = body["objects"].as_array().unwrap();
        assert_eq!(objects.len(), events.len());
        for (object, event) in objects.iter().zip(&events) {
            assert_eq!(
                (object["class"].as_str(), object["id"].as_str()),
                (Some(CLASS), Some(event.id.as_str()))
            );
            for (name, value) in object["properties"].as_object().unwrap() {
                let fits = match types.get(name.as_str()) {
                    Some(&"text") => value.is_string(),
                    Some(&"int") => value.is_i64(),
                    Some(&"boolean") => value.is_boolean(),
                    Some(&"date") => value.as_str().is_some_and(|s| {
                        s.len() == 24 && s.ends_with('Z') && s.as_bytes()[10] == b'T'
                    }),
                    _ => false,
                };
                assert!(fits, "{name}: {value} does not fit the class");
            }
        }
        let full = &objects[0]["properties"];
        assert_eq!(full["requestId"], "req-1");
        assert_eq!(full["taskId"], "t-1");
        assert_eq!(full["latencyMs"], 900);
        assert_eq!(full["tokensIn"], 3);
        assert_eq!(full["role"], "user");
        assert_eq!(full["kind"], "prompt");
        assert_eq!(full["content"], "hi \"there\"");
        let bare = objects[2]["properties"].as_object().unwrap();
        for absent in [
            "model",
            "taskId",
            "status",
            "tokensIn",
            "unreadable",
            "requestBytes",
        ] {
            assert!(!bare.contains_key(absent), "{absent}");
        }
        let placeholder = &objects[3]["properties"];
        assert_eq!(placeholder["unreadable"], "duplicate key");
        assert_eq!(placeholder["requestBytes"], 1234);
        assert_eq!(placeholder["content"], "");
        let (call, result) = (&objects[4]["properties"], &objects[5]["properties"]);
        assert_eq!(
            (&call["kind"], &call["tool"], &call["route"]),
            (&json!("tool_call"), &json!("echo"), &json!("/mcp/tools"))
        );
        assert!(call.get("isError").is_none() && call.get("model").is_none());
        assert_eq!(
            (&result["kind"], &result["role"], &result["isError"]),
            (&json!("tool_result"), &json!("assistant"), &json!(true))
        );
        assert_eq!(
            serde_json::from_slice::<Value>(&batch_body(&[])).unwrap(),
            json!({"objects": []})
        );
    }

    /// Without Weaviate's document too: every property a batch writes is
    /// one of the contract's, of its type, and a full event writes them all.
    #[test]
    fn batch_properties_are_the_contracts() {
        let fits = |p: &Property, value: &Value| match p.data_type {
            "text" | "date" => value.is_string(),
            "int" => value.is_u64(),
            "boolean" => value.is_boolean(),
            _ => false,
        };
        let full = Event {
            model: Some("gpt-4o".into()),
            tokens_out: Some(1),
            tool: Some("echo".into()),
            is_error: Some(false),
            ..events().remove(3)
        };
        let mut all = events();
        all.push(full);
        let body: Value = serde_json::from_slice(&batch_body(&all)).unwrap();
        let objects = body["objects"].as_array().unwrap();
        for object in objects {
            for (name, value) in object["properties"].as_object().unwrap() {
                let property = PROPERTIES.iter().find(|p| p.name == name);
                assert!(
                    property.is_some_and(|p| fits(p, value)),
                    "{name}: {value} is not a property of the class"
                );
            }
        }
        let written = objects.last().unwrap()["properties"].as_object().unwrap();
        for p in PROPERTIES {
            assert!(written.contains_key(p.name), "{} is never written", p.name);
        }
    }

    #[test]
    fn failed_ids_reads_the_per_object_results() {
        let Some(spec) = contract() else { return };
        let reply = json!([
            {"class": CLASS, "id": "a", "properties": {"user": "u"}, "result": {}},
            {"class": CLASS, "id": "b", "result": {"status": "SUCCESS"}},
            {"class": CLASS, "id": "c", "result": {"status": "FAILED",
                "errors": {"error": [{"message": "invalid date property 'timestamp'"}]}}},
            {"class": CLASS, "id": "d", "result": {"errors": {"error": [{"message": "x"}]}}},
            {"class": CLASS, "id": "e", "result": {"errors": {"error": []}}},
            {"class": CLASS, "id": "f", "result": {"status": "FAILED"}},
            {"class": CLASS, "id": "g"},
        ]);
        let schema =
            json!({"type": "array", "items": {"$ref": "#/definitions/ObjectsGetResponse"}});
        assert_valid(&spec, &schema, &reply);
        let ok_reply = &spec["paths"]["/batch/objects"]["post"]["responses"]["200"]["schema"];
        assert_eq!(ok_reply, &schema);

        let body = serde_json::to_vec(&reply).unwrap();
        assert_eq!(
            failed_ids(&body),
            Ok(vec!["c".into(), "d".into(), "f".into()])
        );
        assert_eq!(failed_ids(b"[]"), Ok(vec![]));
        assert_eq!(
            failed_ids(br#"[{"result":{"status":"FAILED"}}]"#),
            Err(BatchError::FailedWithoutId)
        );
        for bad in [
            &b""[..],
            b"{}",
            br#"{"error":[{"message":"x"}]}"#,
            b"[1]",
            br#"[{"result":{"status":1}}]"#,
        ] {
            assert_eq!(failed_ids(bad), Err(BatchError::Malformed));
        }
        assert!(!BatchError::Malformed.to_string().is_empty());
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config::with_cases(512))]

        #[test]
        fn failed_ids_never_panics(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200),
            s in ".{0,40}",
        ) {
            let _ = failed_ids(&bytes);
            let _ = failed_ids(format!(r#"[{{"id":{s},"result":{{"status":{s},"errors":{s}}}}}]"#).as_bytes());
        }
    }
}
