//! The gateway's card as A2A 0.3 readers expect it, served at the 0.3 card
//! path (`.well-known/agent.json`) only.
//!
//! A 0.3 card names one endpoint (`url`, `preferredTransport`,
//! `protocolVersion`), lists requirements as `security`, and tags each
//! security scheme with a `type` beside its fields; 1.0 dropped all of
//! those, so a 1.0 card that carried them would not be a valid 1.0 card.
//! This rendering is derived from the 1.0 card so the two never disagree.

use serde_json::{Map, Value, json};

/// The 1.0 wrapper member of each security scheme kind, and its 0.3 `type`.
const SCHEME_KINDS: [(&str, &str); 5] = [
    ("apiKeySecurityScheme", "apiKey"),
    ("httpAuthSecurityScheme", "http"),
    ("oauth2SecurityScheme", "oauth2"),
    ("openIdConnectSecurityScheme", "openIdConnect"),
    ("mtlsSecurityScheme", "mutualTLS"),
];

/// The 0.3 card for the 1.0 card `card` (as `gateway_card` builds it).
pub fn card_v0_3(card: &Value) -> Value {
    let mut out = Map::new();
    for key in [
        "name",
        "description",
        "version",
        "provider",
        "documentationUrl",
        "iconUrl",
        "defaultInputModes",
        "defaultOutputModes",
        "skills",
    ] {
        if let Some(v) = card.get(key) {
            out.insert(key.into(), v.clone());
        }
    }
    let interfaces = card["supportedInterfaces"].as_array();
    let endpoint = interfaces
        .and_then(|all| all.iter().find(|i| i["protocolVersion"] == "0.3"))
        .cloned()
        .unwrap_or(Value::Null);
    out.insert("url".into(), endpoint["url"].clone());
    out.insert(
        "preferredTransport".into(),
        endpoint["protocolBinding"].clone(),
    );
    out.insert("protocolVersion".into(), json!("0.3.0"));
    let capabilities = &card["capabilities"];
    out.insert(
        "capabilities".into(),
        json!({
            "streaming": capabilities["streaming"],
            "pushNotifications": capabilities["pushNotifications"],
        }),
    );
    out.insert(
        "supportsAuthenticatedExtendedCard".into(),
        capabilities["extendedAgentCard"].clone(),
    );
    if let Some(schemes) = card["securitySchemes"].as_object() {
        let legacy: Map<String, Value> = schemes
            .iter()
            .filter_map(|(name, scheme)| Some((name.clone(), scheme_v0_3(scheme)?)))
            .collect();
        out.insert("securitySchemes".into(), Value::Object(legacy));
    }
    if let Some(requirements) = card["securityRequirements"].as_array() {
        let security: Vec<Value> = requirements
            .iter()
            .map(|r| {
                let scopes: Map<String, Value> = r["schemes"]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(name, scopes)| {
                        // 1.0 leaves an empty `list` out; 0.3 spells it `[]`.
                        let list = scopes.get("list").cloned().unwrap_or_else(|| json!([]));
                        (name.clone(), list)
                    })
                    .collect();
                Value::Object(scopes)
            })
            .collect();
        out.insert("security".into(), Value::Array(security));
    }
    Value::Object(out)
}

/// `{"httpAuthSecurityScheme": {fields}}` as `{"type": "http", fields}`.
fn scheme_v0_3(scheme: &Value) -> Option<Value> {
    SCHEME_KINDS.iter().find_map(|(wrapper, kind)| {
        let mut fields = scheme.get(*wrapper)?.as_object()?.clone();
        fields.insert("type".into(), json!(kind));
        Some(Value::Object(fields))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_rendering() {
        let card = json!({
            "name": "planner", "description": "d", "version": "1.0.0",
            "supportedInterfaces": [
                {"url": "https://gw/a2a/agents/planner", "protocolBinding": "JSONRPC", "protocolVersion": "1.0"},
                {"url": "https://gw/a2a/agents/planner", "protocolBinding": "JSONRPC", "protocolVersion": "0.3"},
            ],
            "capabilities": {"streaming": false, "pushNotifications": false, "extendedAgentCard": false},
            "securitySchemes": {
                "bearer": {"httpAuthSecurityScheme": {"scheme": "bearer", "bearerFormat": "JWT"}},
                "oidc": {"openIdConnectSecurityScheme": {"openIdConnectUrl": "https://idp/.well-known/openid-configuration"}},
            },
            "securityRequirements": [
                {"schemes": {"bearer": {}}},
                {"schemes": {"oidc": {"list": ["openid"]}}},
            ],
            "defaultInputModes": ["text/plain"], "defaultOutputModes": ["text/plain"], "skills": [],
        });
        let legacy = card_v0_3(&card);
        assert_eq!(legacy["url"], "https://gw/a2a/agents/planner");
        assert_eq!(legacy["preferredTransport"], "JSONRPC");
        assert_eq!(legacy["protocolVersion"], "0.3.0");
        assert_eq!(legacy["supportsAuthenticatedExtendedCard"], false);
        assert_eq!(
            legacy["securitySchemes"]["bearer"],
            json!({"type": "http", "scheme": "bearer", "bearerFormat": "JWT"})
        );
        assert_eq!(legacy["securitySchemes"]["oidc"]["type"], "openIdConnect");
        assert_eq!(
            legacy["security"],
            json!([{"bearer": []}, {"oidc": ["openid"]}])
        );
        assert!(legacy.get("supportedInterfaces").is_none());
        assert!(legacy.get("securityRequirements").is_none());
    }
}
