//! Agent cards as the gateway publishes them.
//!
//! Built from the downstream agent's own card when it serves one (cached),
//! else synthesized; then the address is rewritten to the gateway's, bearer
//! sign-in is declared, and streaming is off. The card carries both the 0.3
//! fields (`url`, `protocolVersion`, `security`, `type`-tagged schemes) and
//! the 1.0 ones (`supportedInterfaces`, `securityRequirements`, wrapped
//! schemes) so clients of either generation read it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};

use crate::config::AgentConfig;

const CARD_TTL: Duration = Duration::from_secs(300);
const MISS_TTL: Duration = Duration::from_secs(30);
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Default)]
pub struct CardCache {
    entries: Mutex<HashMap<String, (Instant, Option<Value>)>>,
}

impl CardCache {
    /// The downstream agent's own card, if it serves one.
    pub async fn downstream(&self, client: &reqwest::Client, agent: &AgentConfig) -> Option<Value> {
        if let Ok(entries) = self.entries.lock() {
            if let Some((at, card)) = entries.get(&agent.name) {
                let ttl = if card.is_some() { CARD_TTL } else { MISS_TTL };
                if at.elapsed() < ttl {
                    return card.clone();
                }
            }
        }
        let mut found = None;
        for path in ["/.well-known/agent-card.json", "/.well-known/agent.json"] {
            let url = format!("{}{path}", agent.url);
            let Ok(response) = client.get(&url).timeout(FETCH_TIMEOUT).send().await else {
                break;
            };
            if !response.status().is_success() {
                continue;
            }
            if let Ok(Value::Object(card)) = response.json::<Value>().await {
                found = Some(Value::Object(card));
                break;
            }
        }
        if let Ok(mut entries) = self.entries.lock() {
            entries.insert(agent.name.clone(), (Instant::now(), found.clone()));
        }
        found
    }
}

/// The card for `agent` as reached through the gateway at `public_url`.
pub fn gateway_card(
    agent: &AgentConfig,
    downstream: Option<Value>,
    public_url: &str,
    oidc_issuer: Option<&str>,
) -> Value {
    let mut card = match downstream {
        Some(Value::Object(card)) => card,
        _ => Map::new(),
    };
    let url = format!("{public_url}/a2a/agents/{}", agent.name);
    let fill = |card: &mut Map<String, Value>, key: &str, value: Value| {
        if card.get(key).is_none_or(Value::is_null) {
            card.insert(key.into(), value);
        }
    };
    fill(&mut card, "name", json!(agent.name));
    fill(
        &mut card,
        "description",
        json!(format!(
            "Agent {} reached through Attach Gateway",
            agent.name
        )),
    );
    fill(&mut card, "version", json!("1.0.0"));
    fill(&mut card, "defaultInputModes", json!(["text/plain"]));
    fill(&mut card, "defaultOutputModes", json!(["text/plain"]));
    fill(&mut card, "skills", json!([]));

    for stale in [
        "additionalInterfaces",
        "signatures",
        "supportsAuthenticatedExtendedCard",
    ] {
        card.remove(stale);
    }
    card.insert("url".into(), json!(url));
    card.insert("preferredTransport".into(), json!("JSONRPC"));
    card.insert("protocolVersion".into(), json!("0.3.0"));
    card.insert(
        "supportedInterfaces".into(),
        json!([
            {"url": url, "protocolBinding": "JSONRPC", "protocolVersion": "1.0"},
            {"url": url, "protocolBinding": "JSONRPC", "protocolVersion": "0.3"},
        ]),
    );

    let mut capabilities = match card.remove("capabilities") {
        Some(Value::Object(c)) => c,
        _ => Map::new(),
    };
    capabilities.insert("streaming".into(), json!(false));
    capabilities.insert("pushNotifications".into(), json!(false));
    capabilities.insert("extendedAgentCard".into(), json!(false));
    card.insert("capabilities".into(), Value::Object(capabilities));

    let mut schemes = Map::new();
    schemes.insert(
        "bearer".into(),
        scheme(
            "http",
            "httpAuthSecurityScheme",
            json!({"scheme": "bearer", "bearerFormat": "JWT"}),
        ),
    );
    let mut security = vec![json!({"bearer": []})];
    let mut requirements = vec![json!({"schemes": {"bearer": {"list": []}}})];
    if let Some(issuer) = oidc_issuer {
        schemes.insert(
            "oidc".into(),
            scheme(
                "openIdConnect",
                "openIdConnectSecurityScheme",
                json!({"openIdConnectUrl": format!("{issuer}/.well-known/openid-configuration")}),
            ),
        );
        security.push(json!({"oidc": []}));
        requirements.push(json!({"schemes": {"oidc": {"list": []}}}));
    }
    card.insert("securitySchemes".into(), Value::Object(schemes));
    card.insert("security".into(), Value::Array(security));
    card.insert("securityRequirements".into(), Value::Array(requirements));
    Value::Object(card)
}

/// One security scheme in both generations' shapes: 0.3 discriminates by a
/// `type` field beside the scheme's fields, 1.0 wraps the same fields in a
/// member named after the kind (`httpAuthSecurityScheme`, ...). Each reader
/// ignores the other's members, so one card serves both.
fn scheme(legacy_type: &str, wrapper: &str, fields: Value) -> Value {
    let mut scheme = match fields.clone() {
        Value::Object(fields) => fields,
        _ => Map::new(),
    };
    scheme.insert("type".into(), json!(legacy_type));
    scheme.insert(wrapper.into(), fields);
    Value::Object(scheme)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::a2a::ProtocolVersion;
    use crate::config::AgentKind;

    fn agent() -> AgentConfig {
        AgentConfig {
            name: "planner".into(),
            url: "http://127.0.0.1:9".into(),
            kind: AgentKind::A2a,
            timeout: Duration::from_secs(1),
            forward_bearer: false,
            protocol: ProtocolVersion::V1_0,
        }
    }

    #[test]
    fn synthesized_card() {
        let card = gateway_card(
            &agent(),
            None,
            "https://gw.example",
            Some("https://idp.example"),
        );
        assert_eq!(card["url"], "https://gw.example/a2a/agents/planner");
        assert_eq!(card["name"], "planner");
        assert_eq!(card["capabilities"]["streaming"], false);
        assert_eq!(card["skills"], json!([]));
        let bearer = &card["securitySchemes"]["bearer"];
        assert_eq!(bearer["type"], "http");
        assert_eq!(bearer["scheme"], "bearer");
        assert_eq!(bearer["httpAuthSecurityScheme"]["scheme"], "bearer");
        assert_eq!(bearer["httpAuthSecurityScheme"]["bearerFormat"], "JWT");
        let oidc = &card["securitySchemes"]["oidc"];
        let discovery = "https://idp.example/.well-known/openid-configuration";
        assert_eq!(oidc["type"], "openIdConnect");
        assert_eq!(oidc["openIdConnectUrl"], discovery);
        assert_eq!(
            oidc["openIdConnectSecurityScheme"]["openIdConnectUrl"],
            discovery
        );
        assert_eq!(card["security"][0], json!({"bearer": []}));
        assert_eq!(card["supportedInterfaces"][0]["protocolVersion"], "1.0");
    }

    #[test]
    fn downstream_card_is_rewritten() {
        let downstream = json!({
            "name": "Planner", "description": "plans", "url": "http://127.0.0.1:8100/",
            "capabilities": {"streaming": true, "pushNotifications": true},
            "skills": [{"id": "plan", "name": "Plan", "description": "d", "tags": []}],
            "supportsAuthenticatedExtendedCard": true,
            "additionalInterfaces": [{"url": "http://127.0.0.1:8100/grpc", "transport": "GRPC"}],
        });
        let card = gateway_card(&agent(), Some(downstream), "http://127.0.0.1:8080", None);
        assert_eq!(card["name"], "Planner");
        assert_eq!(card["url"], "http://127.0.0.1:8080/a2a/agents/planner");
        assert_eq!(card["capabilities"]["streaming"], false);
        assert_eq!(card["skills"][0]["id"], "plan");
        assert!(card.get("additionalInterfaces").is_none());
        assert!(card.get("supportsAuthenticatedExtendedCard").is_none());
        assert!(card["securitySchemes"].get("oidc").is_none());
    }
}
