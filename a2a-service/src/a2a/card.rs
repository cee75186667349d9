//! Agent cards as the gateway publishes them.
//!
//! Built from the downstream agent's own card when it serves one (cached),
//! else synthesized: the downstream's descriptive members are kept, and
//! what the gateway decides is its own: the interfaces (its address, for
//! A2A 1.0 and, as a second entry, 0.3, over JSON-RPC; then the 1.0
//! HTTP+JSON binding, whose paths hang off the same address), the
//! capabilities it offers, and bearer sign-in. The result is an A2A 1.0 `AgentCard` and nothing else
//! (specification section 4.4.1); `card_v0_3` renders the same card for
//! 0.3 readers. Cards go out signed by the gateway (`card_signing.rs`,
//! section 8.4), with a content-derived `ETag` and a `Cache-Control`
//! lifetime (section 8.6.1).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::capabilities;
use crate::config::AgentConfig;

const CARD_TTL: Duration = Duration::from_secs(300);
const MISS_TTL: Duration = Duration::from_secs(30);
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a client may keep a card: as long as the gateway keeps the
/// downstream card it is built from.
pub const CACHE_CONTROL: &str = "public, max-age=300";

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

/// The A2A 1.0 card for `agent` as reached through the gateway at
/// `public_url`; `push_notifications` is whether push is on. It declares
/// `extendedAgentCard` when the operator wrote one for the agent
/// (`extended_card.rs` lays it over this card).
pub fn gateway_card(
    agent: &AgentConfig,
    downstream: Option<Value>,
    public_url: &str,
    oidc_issuer: Option<&str>,
    push_notifications: bool,
) -> Value {
    let downstream = match downstream {
        Some(Value::Object(card)) => card,
        _ => Map::new(),
    };
    let url = format!("{public_url}/a2a/agents/{}", agent.name);
    let mut card = Map::new();
    let text = |key: &str| downstream.get(key).filter(|v| v.is_string()).cloned();
    let modes = |key: &str| {
        downstream
            .get(key)
            .filter(|v| is_string_list(v))
            .cloned()
            .unwrap_or_else(|| json!(["text/plain"]))
    };
    card.insert(
        "name".into(),
        text("name").unwrap_or_else(|| json!(agent.name)),
    );
    card.insert(
        "description".into(),
        text("description").unwrap_or_else(|| {
            json!(format!(
                "Agent {} reached through Attach Gateway",
                agent.name
            ))
        }),
    );
    card.insert(
        "supportedInterfaces".into(),
        json!([
            {"url": url, "protocolBinding": "JSONRPC", "protocolVersion": "1.0"},
            {"url": url, "protocolBinding": "JSONRPC", "protocolVersion": "0.3"},
            {"url": url, "protocolBinding": "HTTP+JSON", "protocolVersion": "1.0"},
        ]),
    );
    if let Some(provider) = downstream.get("provider").and_then(provider) {
        card.insert("provider".into(), provider);
    }
    card.insert(
        "version".into(),
        text("version").unwrap_or_else(|| json!("1.0.0")),
    );
    for key in ["documentationUrl", "iconUrl"] {
        if let Some(v) = text(key) {
            card.insert(key.into(), v);
        }
    }
    // Extensions are not offered: the gateway does not pass their
    // negotiation on to the agent.
    card.insert(
        "capabilities".into(),
        json!({
            "streaming": capabilities::STREAMING,
            "pushNotifications": push_notifications,
            "extendedAgentCard": agent.extended_card.is_some(),
        }),
    );
    let (schemes, requirements) = sign_in(oidc_issuer);
    card.insert("securitySchemes".into(), schemes);
    card.insert("securityRequirements".into(), requirements);
    card.insert("defaultInputModes".into(), modes("defaultInputModes"));
    card.insert("defaultOutputModes".into(), modes("defaultOutputModes"));
    let skills: Vec<Value> = match downstream.get("skills") {
        Some(Value::Array(skills)) => skills.iter().filter_map(skill).collect(),
        _ => Vec::new(),
    };
    card.insert("skills".into(), Value::Array(skills));
    Value::Object(card)
}

/// Bearer tokens, and the IdP's OpenID Connect discovery when there is one:
/// the schemes and the requirement that names each. A requirement asks for
/// no scopes, and its `StringList` is written without its empty `list`, as
/// the protocol buffers' JSON writes it and as the canonical form of a
/// signed card leaves it out (section 8.4.1 rule 1).
fn sign_in(oidc_issuer: Option<&str>) -> (Value, Value) {
    let mut schemes = Map::new();
    schemes.insert(
        "bearer".into(),
        json!({"httpAuthSecurityScheme": {"scheme": "bearer", "bearerFormat": "JWT"}}),
    );
    let mut requirements = vec![json!({"schemes": {"bearer": {}}})];
    if let Some(issuer) = oidc_issuer {
        let discovery = format!("{issuer}/.well-known/openid-configuration");
        schemes.insert(
            "oidc".into(),
            json!({"openIdConnectSecurityScheme": {"openIdConnectUrl": discovery}}),
        );
        requirements.push(json!({"schemes": {"oidc": {}}}));
    }
    (Value::Object(schemes), Value::Array(requirements))
}

fn is_string_list(value: &Value) -> bool {
    value
        .as_array()
        .is_some_and(|items| items.iter().all(Value::is_string))
}

/// The downstream's `AgentProvider`, when it has both of its members.
fn provider(value: &Value) -> Option<Value> {
    let organization = value.get("organization").filter(|v| v.is_string())?;
    let url = value.get("url").filter(|v| v.is_string())?;
    Some(json!({"organization": organization, "url": url}))
}

/// A downstream skill as an `AgentSkill`: its descriptive members, when it
/// has the required ones. Its security requirements name the agent's own
/// schemes, not the gateway's, and are left out.
fn skill(value: &Value) -> Option<Value> {
    let obj = value.as_object()?;
    let mut skill = Map::new();
    for key in ["id", "name", "description"] {
        skill.insert(key.into(), obj.get(key).filter(|v| v.is_string())?.clone());
    }
    let tags = obj.get("tags").filter(|v| is_string_list(v));
    skill.insert("tags".into(), tags.cloned().unwrap_or_else(|| json!([])));
    for key in OPTIONAL_SKILL_LISTS {
        if let Some(list) = obj.get(key).filter(|v| is_optional_list(v)) {
            skill.insert(key.into(), list.clone());
        }
    }
    Some(Value::Object(skill))
}

/// The `AgentSkill` lists that are not required: an empty one is their
/// protocol-buffer default, which the canonical form of a signed card
/// leaves out (section 8.4.1 rule 1), so the card leaves it out too and
/// reads the same before and after a verifier removes defaults.
const OPTIONAL_SKILL_LISTS: [&str; 3] = ["examples", "inputModes", "outputModes"];

/// A list of strings with at least one.
fn is_optional_list(value: &Value) -> bool {
    is_string_list(value) && value.as_array().is_some_and(|items| !items.is_empty())
}

/// A strong entity tag derived from a card's bytes.
pub fn etag(body: &[u8]) -> String {
    let digest = Sha256::digest(body);
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("\"{hex}\"")
}

/// Whether an `If-None-Match` value names `etag` (weak comparison, as
/// RFC 9110 section 13.1.2 asks for this header).
pub fn none_match_hits(if_none_match: &str, etag: &str) -> bool {
    if_none_match.split(',').map(str::trim).any(|candidate| {
        candidate == "*" || candidate.strip_prefix("W/").unwrap_or(candidate) == etag
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::a2a::ProtocolVersion;
    use crate::a2a::card_v0_3::card_v0_3;
    use crate::a2a::extended_card::ExtendedCard;
    use crate::config::AgentKind;
    use std::sync::Arc;

    fn agent() -> AgentConfig {
        AgentConfig {
            name: "planner".into(),
            url: "http://127.0.0.1:9".into(),
            kind: AgentKind::A2a,
            timeout: Duration::from_secs(1),
            forward_bearer: false,
            protocol: ProtocolVersion::V1_0,
            extended_card: None,
            did: None,
        }
    }

    /// No member of the 0.3 card may appear in the 1.0 one.
    fn assert_only_1_0(card: &Value) {
        for legacy in [
            "url",
            "preferredTransport",
            "protocolVersion",
            "security",
            "additionalInterfaces",
            "supportsAuthenticatedExtendedCard",
        ] {
            assert!(card.get(legacy).is_none(), "{legacy} in {card}");
        }
        for scheme in card["securitySchemes"].as_object().unwrap().values() {
            assert_eq!(scheme.as_object().unwrap().len(), 1, "{scheme}");
        }
    }

    #[test]
    fn synthesized_card() {
        let card = gateway_card(
            &agent(),
            None,
            "https://gw.example",
            Some("https://idp.example"),
            false,
        );
        assert_only_1_0(&card);
        let url = "https://gw.example/a2a/agents/planner";
        assert_eq!(
            card["supportedInterfaces"],
            json!([
                {"url": url, "protocolBinding": "JSONRPC", "protocolVersion": "1.0"},
                {"url": url, "protocolBinding": "JSONRPC", "protocolVersion": "0.3"},
                {"url": url, "protocolBinding": "HTTP+JSON", "protocolVersion": "1.0"},
            ])
        );
        assert_eq!(card["name"], "planner");
        assert_eq!(card["capabilities"]["streaming"], true);
        assert_eq!(card["skills"], json!([]));
        let bearer = &card["securitySchemes"]["bearer"]["httpAuthSecurityScheme"];
        assert_eq!(*bearer, json!({"scheme": "bearer", "bearerFormat": "JWT"}));
        assert_eq!(
            card["securitySchemes"]["oidc"]["openIdConnectSecurityScheme"]["openIdConnectUrl"],
            "https://idp.example/.well-known/openid-configuration"
        );
        assert_eq!(
            card["securityRequirements"][1],
            json!({"schemes": {"oidc": {}}})
        );
    }

    #[test]
    fn downstream_card_is_rewritten() {
        let downstream = json!({
            "name": "Planner", "description": "plans", "url": "http://127.0.0.1:8100/",
            "protocolVersion": "0.3.0", "preferredTransport": "JSONRPC",
            "capabilities": {"streaming": true, "pushNotifications": true},
            "skills": [
                {"id": "plan", "name": "Plan", "description": "d", "tags": [], "security": [{"k": []}]},
                {"id": "broken"},
            ],
            "supportsAuthenticatedExtendedCard": true,
            "additionalInterfaces": [{"url": "http://127.0.0.1:8100/grpc", "transport": "GRPC"}],
            "provider": {"organization": "Example", "url": "https://example.org"},
            "signatures": [{"protected": "x", "signature": "y"}],
            "security": [{"apiKey": []}],
            "iconUrl": 7,
        });
        let card = gateway_card(
            &agent(),
            Some(downstream.clone()),
            "http://127.0.0.1:8080",
            None,
            false,
        );
        assert_only_1_0(&card);
        assert_eq!(card["name"], "Planner");
        assert_eq!(
            card["supportedInterfaces"][0]["url"],
            "http://127.0.0.1:8080/a2a/agents/planner"
        );
        assert_eq!(card["capabilities"]["streaming"], true);
        assert_eq!(card["capabilities"]["extendedAgentCard"], false);
        assert_eq!(
            card["skills"],
            json!([{"id": "plan", "name": "Plan", "description": "d", "tags": []}])
        );
        assert_eq!(card["provider"]["organization"], "Example");
        assert!(card.get("signatures").is_none());
        assert!(card.get("iconUrl").is_none());
        assert!(card["securitySchemes"].get("oidc").is_none());
        // The downstream's push capability is not the gateway's: only the
        // setting declares it.
        assert_eq!(card["capabilities"]["pushNotifications"], false);
        let on = gateway_card(&agent(), Some(downstream), "http://gw", None, true);
        assert_eq!(on["capabilities"]["pushNotifications"], true);
    }

    #[test]
    fn an_agent_with_an_extended_card_declares_it() {
        let mut with = agent();
        let extended = ExtendedCard::parse(r#"{"card": {"description": "more"}}"#).unwrap();
        with.extended_card = Some(Arc::new(extended));
        let card = gateway_card(&with, None, "http://gw", None, false);
        assert_eq!(card["capabilities"]["extendedAgentCard"], true);
        assert_eq!(card_v0_3(&card)["supportsAuthenticatedExtendedCard"], true);
        assert_eq!(
            card["description"],
            "Agent planner reached through Attach Gateway"
        );
        let without = gateway_card(&agent(), None, "http://gw", None, false);
        assert_eq!(without["capabilities"]["extendedAgentCard"], false);
        assert_eq!(
            card_v0_3(&without)["supportsAuthenticatedExtendedCard"],
            false
        );
    }

    /// Section 8.4.1 rule 1: the canonical form of a signed card leaves out
    /// members at their protocol-buffer default (an empty list that is not
    /// REQUIRED, a `false` without field presence). The gateway's cards
    /// carry none, so the card a client receives is already that form.
    fn assert_no_defaults(value: &Value, at: &str) {
        const REQUIRED_LISTS: [&str; 5] = [
            "supportedInterfaces",
            "defaultInputModes",
            "defaultOutputModes",
            "skills",
            "tags",
        ];
        const PRESENCE: [&str; 3] = ["streaming", "pushNotifications", "extendedAgentCard"];
        match value {
            Value::Object(members) => {
                for (key, member) in members {
                    let default = match member {
                        Value::Array(items) => {
                            items.is_empty() && !REQUIRED_LISTS.contains(&key.as_str())
                        }
                        Value::Bool(b) => !b && !PRESENCE.contains(&key.as_str()),
                        Value::Object(map) => map.is_empty() && key == "securitySchemes",
                        _ => false,
                    };
                    assert!(!default, "{at}.{key} is at its default: {member}");
                    assert_no_defaults(member, &format!("{at}.{key}"));
                }
            }
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    assert_no_defaults(item, &format!("{at}[{i}]"));
                }
            }
            _ => {}
        }
    }

    #[test]
    fn cards_carry_no_protocol_buffer_defaults() {
        let downstream = json!({
            "skills": [
                {"id": "a", "name": "A", "description": "", "tags": [], "examples": [], "inputModes": []},
                {"id": "b", "name": "B", "description": "b", "outputModes": ["text/plain"]},
            ],
        });
        for issuer in [None, Some("https://idp.example")] {
            let card = gateway_card(
                &agent(),
                Some(downstream.clone()),
                "http://gw",
                issuer,
                false,
            );
            assert_no_defaults(&card, "card");
            assert_eq!(
                card["skills"][0],
                json!({"id": "a", "name": "A", "description": "", "tags": []})
            );
            assert_eq!(card["skills"][1]["outputModes"], json!(["text/plain"]));
            let file = r#"{"card": {"skills": [{"id": "c", "name": "C", "description": "c", "examples": []}]}}"#;
            let extended = ExtendedCard::parse(file).unwrap().for_caller(card, "alice");
            assert_no_defaults(&extended, "extended");
            assert_eq!(
                extended["skills"][2],
                json!({"id": "c", "name": "C", "description": "c", "tags": []})
            );
        }
    }

    #[test]
    fn entity_tags() {
        let tag = etag(b"{}");
        assert_eq!(tag, etag(b"{}"));
        assert_ne!(tag, etag(b"{ }"));
        assert!(tag.starts_with('"') && tag.ends_with('"') && tag.len() == 34);
        assert!(none_match_hits(&tag, &tag));
        assert!(none_match_hits(&format!("\"x\", W/{tag}"), &tag));
        assert!(none_match_hits("*", &tag));
        assert!(!none_match_hits("\"x\"", &tag));
    }
}
