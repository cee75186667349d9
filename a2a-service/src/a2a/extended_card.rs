//! The extended agent card (A2A 1.0 sections 3.1.11 and 13.3): what a
//! signed-in caller learns about an agent beyond its public card.
//!
//! The public card tells anyone how to reach an agent and sign in; an
//! operator who wants signed-in callers to see more (internal skills,
//! documentation, who runs the agent), and some callers more than others,
//! writes a JSON file and names it in the agent's `extended_card` option
//! (`config/agents.rs`). The file is read and checked once, at start-up:
//!
//! ```json
//! {
//!   "card": {
//!     "description": "Plans work; signed-in callers also see the internal skills",
//!     "documentationUrl": "https://docs.example/planner",
//!     "provider": {"organization": "Example", "url": "https://example.org"},
//!     "skills": [
//!       {"id": "plan", "name": "Plan", "description": "Breaks a request into steps", "tags": ["planning"]},
//!       {"id": "deploy", "name": "Deploy", "description": "Ships a build", "tags": ["ops"]}
//!     ]
//!   },
//!   "skill_users": {"deploy": ["alice", "https://idp.example#*"]}
//! }
//! ```
//!
//! `card` holds AgentCard members as a 1.0 card spells them. `description`,
//! `version`, `provider`, `documentationUrl`, `iconUrl`,
//! `defaultInputModes` and `defaultOutputModes` replace the public card's;
//! `skills` are added to the public card's, a skill with the id of a public
//! one taking its place. The members that say how to reach and trust the
//! agent (`supportedInterfaces`, `capabilities`, `securitySchemes`,
//! `securityRequirements`, `signatures`, and a skill's
//! `securityRequirements`) and its `name` stay the gateway's, so the file
//! cannot set them: a client that swaps its cached public card for the
//! extended one (section 3.1.11) still reaches the gateway and signs in the
//! same way.
//!
//! `skill_users` (optional) keeps skills of the file to some callers: each
//! skill id it names lists the users who see that skill, as the gateway
//! verified them (`X-Attach-User`, never a header the caller chose),
//! written exactly or as a prefix ending in `*`. A skill it does not name is
//! shown to every signed-in caller; a caller not listed for a skill gets the
//! card the file would give without it, so nothing tells them it exists.

use std::path::Path;

use serde_json::{Map, Value};

use crate::error::one_line;

/// How long the caller's own client may keep an extended card: as long as
/// a public one, in no cache shared with other callers, since the card
/// depends on who asked.
pub const CACHE_CONTROL: &str = "private, max-age=300";

/// The members of `card` that replace the public card's.
const REPLACED: [&str; 7] = [
    "description",
    "version",
    "provider",
    "documentationUrl",
    "iconUrl",
    "defaultInputModes",
    "defaultOutputModes",
];
/// Card members the gateway decides, named so the refusal can say why.
const GATEWAY_MEMBERS: [&str; 6] = [
    "name",
    "supportedInterfaces",
    "capabilities",
    "securitySchemes",
    "securityRequirements",
    "signatures",
];
const SKILL_TEXTS: [&str; 3] = ["id", "name", "description"];
const SKILL_LISTS: [&str; 3] = ["examples", "inputModes", "outputModes"];

/// One agent's extended card, checked: what it lays over the public card.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExtendedCard {
    /// The members of [`REPLACED`] the file sets.
    members: Map<String, Value>,
    skills: Vec<Skill>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Skill {
    id: String,
    /// The `AgentSkill` as served.
    card: Value,
    /// Who sees it; `None`: every signed-in caller.
    users: Option<Vec<String>>,
}

impl Skill {
    fn shown_to(&self, user: &str) -> bool {
        self.users.as_ref().is_none_or(|patterns| {
            patterns.iter().any(|p| match p.strip_suffix('*') {
                Some(prefix) => user.starts_with(prefix),
                None => p == user,
            })
        })
    }
}

impl ExtendedCard {
    /// The file at `path`, checked; the reason names the file and the
    /// member at fault.
    pub fn read(path: &Path) -> Result<Self, String> {
        let at = path.display();
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {at}: {e}"))?;
        Self::parse(&text).map_err(|reason| format!("{at}: {reason}"))
    }

    /// A file's text, checked.
    pub fn parse(text: &str) -> Result<Self, String> {
        let file: Value = serde_json::from_str(text)
            .map_err(|e| format!("not JSON: {}", one_line(&e.to_string())))?;
        let file = file
            .as_object()
            .ok_or("must be a JSON object with a \"card\" member")?;
        if let Some(unknown) = file.keys().find(|k| *k != "card" && *k != "skill_users") {
            return Err(format!(
                "unknown member {unknown:?} (an extended card file has card and skill_users)"
            ));
        }
        let card = file
            .get("card")
            .ok_or("has no \"card\" member")?
            .as_object()
            .ok_or("card must be an object of AgentCard members")?;
        let mut members = Map::new();
        let mut skills = Vec::new();
        for (key, value) in card {
            let at = format!("card.{key}");
            if key == "skills" {
                skills = parse_skills(value)?;
            } else if REPLACED.contains(&key.as_str()) {
                check_member(key, value).map_err(|why| format!("{at} {why}"))?;
                members.insert(key.clone(), value.clone());
            } else if GATEWAY_MEMBERS.contains(&key.as_str()) {
                return Err(format!(
                    "{at} is the gateway's: the extended card keeps the public card's"
                ));
            } else {
                return Err(format!(
                    "{at} is not a member an extended card sets ({}, skills)",
                    REPLACED.join(", ")
                ));
            }
        }
        if let Some(access) = file.get("skill_users") {
            let access = access
                .as_object()
                .ok_or("skill_users must be an object of skill id: [users]")?;
            for (id, users) in access {
                let at = format!("skill_users.{id}");
                let skill = skills
                    .iter_mut()
                    .find(|s| s.id == *id)
                    .ok_or_else(|| format!("{at} names no skill of card.skills"))?;
                skill.users = Some(parse_users(users).map_err(|why| format!("{at} {why}"))?);
            }
        }
        Ok(Self { members, skills })
    }

    /// The card `user` is served: `public` (the gateway's 1.0 card for the
    /// agent) with the file's members laid over it and the file's skills
    /// `user` may see added.
    pub fn for_caller(&self, public: Value, user: &str) -> Value {
        let mut card = match public {
            Value::Object(card) => card,
            _ => Map::new(),
        };
        for (key, value) in &self.members {
            card.insert(key.clone(), value.clone());
        }
        let mut skills = match card.remove("skills") {
            Some(Value::Array(skills)) => skills,
            _ => Vec::new(),
        };
        for skill in self.skills.iter().filter(|s| s.shown_to(user)) {
            let same_id = skills
                .iter_mut()
                .find(|s| s.get("id").and_then(Value::as_str) == Some(skill.id.as_str()));
            match same_id {
                Some(public) => *public = skill.card.clone(),
                None => skills.push(skill.card.clone()),
            }
        }
        card.insert("skills".into(), Value::Array(skills));
        Value::Object(card)
    }
}

/// Why `value` cannot be the card member `key`, which is one of [`REPLACED`].
fn check_member(key: &str, value: &Value) -> Result<(), String> {
    match key {
        "provider" => {
            let provider = value
                .as_object()
                .ok_or("must be an object with organization and url")?;
            for field in ["organization", "url"] {
                if !provider.get(field).is_some_and(Value::is_string) {
                    return Err(format!("needs {field} as a string"));
                }
            }
            if let Some(unknown) = provider
                .keys()
                .find(|k| *k != "organization" && *k != "url")
            {
                return Err(format!(
                    "has an unknown member {unknown:?} (organization, url)"
                ));
            }
            Ok(())
        }
        "defaultInputModes" | "defaultOutputModes" => string_list(value),
        _ if value.is_string() => Ok(()),
        _ => Err("must be a string".into()),
    }
}

fn string_list(value: &Value) -> Result<(), String> {
    match value.as_array() {
        Some(items) if items.iter().all(Value::is_string) => Ok(()),
        _ => Err("must be a list of strings".into()),
    }
}

fn parse_skills(value: &Value) -> Result<Vec<Skill>, String> {
    let items = value
        .as_array()
        .ok_or("card.skills must be a list of AgentSkill objects")?;
    let mut skills: Vec<Skill> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let at = format!("card.skills[{i}]");
        let skill = parse_skill(item).map_err(|why| format!("{at}{why}"))?;
        if skills.iter().any(|s| s.id == skill.id) {
            return Err(format!(
                "{at}.id {:?} is the id of an earlier skill",
                skill.id
            ));
        }
        skills.push(skill);
    }
    Ok(skills)
}

/// An `AgentSkill`: the reason starts with the member at fault (`.tags …`).
fn parse_skill(value: &Value) -> Result<Skill, String> {
    let obj = value.as_object().ok_or(" must be an AgentSkill object")?;
    for key in obj.keys() {
        let known = SKILL_TEXTS.contains(&key.as_str())
            || SKILL_LISTS.contains(&key.as_str())
            || key == "tags";
        if key == "securityRequirements" {
            return Err(format!(
                ".{key} is the gateway's: skills are reached with the card's sign-in"
            ));
        }
        if !known {
            return Err(format!(
                ".{key} is not an AgentSkill member (id, name, description, tags, {})",
                SKILL_LISTS.join(", ")
            ));
        }
    }
    let mut skill = Map::new();
    for key in SKILL_TEXTS {
        let text = obj
            .get(key)
            .and_then(Value::as_str)
            .ok_or_else(|| format!(".{key} must be given as a string"))?;
        skill.insert(key.into(), Value::from(text));
    }
    let tags = obj
        .get("tags")
        .cloned()
        .unwrap_or_else(|| Value::Array(Vec::new()));
    string_list(&tags).map_err(|why| format!(".tags {why}"))?;
    skill.insert("tags".into(), tags);
    for key in SKILL_LISTS {
        if let Some(list) = obj.get(key) {
            string_list(list).map_err(|why| format!(".{key} {why}"))?;
            // Empty is the list's default, which a signed card's canonical
            // form leaves out (A2A 1.0 section 8.4.1 rule 1): so does the card.
            if list.as_array().is_some_and(|items| !items.is_empty()) {
                skill.insert(key.into(), list.clone());
            }
        }
    }
    let id = obj
        .get("id")
        .and_then(Value::as_str)
        .filter(|id| !id.is_empty())
        .ok_or(".id must not be empty")?
        .to_string();
    Ok(Skill {
        id,
        card: Value::Object(skill),
        users: None,
    })
}

/// The user patterns of one `skill_users` entry.
fn parse_users(value: &Value) -> Result<Vec<String>, String> {
    let items = value
        .as_array()
        .ok_or("must be a list of users (exact, or a prefix ending in *)")?;
    if items.is_empty() {
        return Err("lists no user; leave the skill out of the file to show it to nobody".into());
    }
    items
        .iter()
        .map(|item| {
            let pattern = item
                .as_str()
                .filter(|p| !p.is_empty())
                .ok_or("must hold user names as non-empty strings")?;
            if pattern.trim_end_matches('*').contains('*') {
                return Err(format!(
                    "{pattern:?}: only a trailing * stands for any rest of a user name"
                ));
            }
            Ok(pattern.to_string())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn public() -> Value {
        json!({
            "name": "planner",
            "description": "public",
            "supportedInterfaces": [{"url": "https://gw/a2a/agents/planner", "protocolBinding": "JSONRPC", "protocolVersion": "1.0"}],
            "version": "1.0.0",
            "capabilities": {"streaming": false, "pushNotifications": false, "extendedAgentCard": true},
            "securitySchemes": {"bearer": {"httpAuthSecurityScheme": {"scheme": "bearer"}}},
            "securityRequirements": [{"schemes": {"bearer": {}}}],
            "defaultInputModes": ["text/plain"],
            "defaultOutputModes": ["text/plain"],
            "skills": [
                {"id": "plan", "name": "Plan", "description": "public plan", "tags": []},
                {"id": "chat", "name": "Chat", "description": "talks", "tags": []},
            ],
        })
    }

    fn file() -> ExtendedCard {
        ExtendedCard::parse(
            &json!({
                "card": {
                    "description": "for signed-in callers",
                    "documentationUrl": "https://docs.example/planner",
                    "provider": {"organization": "Example", "url": "https://example.org"},
                    "defaultOutputModes": ["text/plain", "application/json"],
                    "skills": [
                        {"id": "plan", "name": "Plan", "description": "detailed plan", "tags": ["planning"],
                         "examples": ["plan a trip"]},
                        {"id": "deploy", "name": "Deploy", "description": "ships", "tags": ["ops"]},
                        {"id": "audit", "name": "Audit", "description": "reads logs"},
                    ],
                },
                "skill_users": {
                    "deploy": ["alice", "https://idp.example#*"],
                    "plan": ["did:key:*"],
                },
            })
            .to_string(),
        )
        .unwrap()
    }

    fn skill_ids(card: &Value) -> Vec<&str> {
        card["skills"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["id"].as_str().unwrap())
            .collect()
    }

    #[test]
    fn members_are_laid_over_the_public_card() {
        let card = file().for_caller(public(), "bob");
        assert_eq!(card["description"], "for signed-in callers");
        assert_eq!(card["documentationUrl"], "https://docs.example/planner");
        assert_eq!(card["provider"]["organization"], "Example");
        assert_eq!(
            card["defaultOutputModes"],
            json!(["text/plain", "application/json"])
        );
        // What the file does not set, and what it cannot, stay public.
        let public = public();
        for key in [
            "name",
            "version",
            "supportedInterfaces",
            "capabilities",
            "securitySchemes",
            "securityRequirements",
            "defaultInputModes",
        ] {
            assert_eq!(card[key], public[key], "{key}");
        }
        // A skill without tags is served with an empty list, as AgentSkill needs.
        let audit = &card["skills"][2];
        assert_eq!(
            *audit,
            json!({"id": "audit", "name": "Audit", "description": "reads logs", "tags": []})
        );
    }

    #[test]
    fn skills_follow_the_caller() {
        let card = file();
        // Not listed anywhere: the public skills and the unrestricted one.
        let bob = card.for_caller(public(), "bob");
        assert_eq!(skill_ids(&bob), ["plan", "chat", "audit"]);
        assert_eq!(bob["skills"][0]["description"], "public plan");
        // Named exactly.
        let alice = card.for_caller(public(), "alice");
        assert_eq!(skill_ids(&alice), ["plan", "chat", "deploy", "audit"]);
        // By prefix; a file skill with a public skill's id takes its place.
        let did = card.for_caller(public(), "did:key:z6Mkabc");
        assert_eq!(skill_ids(&did), ["plan", "chat", "audit"]);
        assert_eq!(did["skills"][0]["description"], "detailed plan");
        assert_eq!(did["skills"][0]["examples"], json!(["plan a trip"]));
        let oidc = card.for_caller(public(), "https://idp.example#carol");
        assert_eq!(skill_ids(&oidc), ["plan", "chat", "deploy", "audit"]);
        // A prefix is a prefix, not a substring; exact names are whole.
        for user in [
            "x-did:key:z6Mk",
            "alice2",
            "Alice",
            "https://idp.example.evil#x",
        ] {
            assert_eq!(
                skill_ids(&card.for_caller(public(), user)),
                ["plan", "chat", "audit"],
                "{user}"
            );
        }
    }

    #[test]
    fn a_public_card_without_skills_gets_the_files() {
        let mut bare = public();
        bare.as_object_mut().unwrap().remove("skills");
        let card = file();
        assert_eq!(
            skill_ids(&card.for_caller(bare.clone(), "did:key:z6Mk")),
            ["plan", "audit"]
        );
        // Alice may not see the file's plan, and there is no public one.
        assert_eq!(
            skill_ids(&card.for_caller(bare, "alice")),
            ["deploy", "audit"]
        );
    }

    #[test]
    fn an_empty_card_changes_nothing() {
        let card = ExtendedCard::parse(r#"{"card": {}}"#).unwrap();
        assert_eq!(card.for_caller(public(), "alice"), public());
    }

    /// Each bad file, and a piece of the reason it is refused with.
    #[test]
    fn bad_files_are_refused_with_the_member_at_fault() {
        for (text, reason) in [
            ("", "not JSON"),
            ("{\"card\": {}", "not JSON"),
            ("[]", "must be a JSON object"),
            ("{}", "has no \"card\" member"),
            (r#"{"card": [], "x": 1}"#, "unknown member \"x\""),
            (r#"{"card": []}"#, "card must be an object"),
            (
                r#"{"card": {"supportedInterfaces": []}}"#,
                "card.supportedInterfaces is the gateway's",
            ),
            (
                r#"{"card": {"capabilities": {"streaming": true}}}"#,
                "card.capabilities is the gateway's",
            ),
            (
                r#"{"card": {"securitySchemes": {}}}"#,
                "card.securitySchemes is the gateway's",
            ),
            (
                r#"{"card": {"securityRequirements": []}}"#,
                "card.securityRequirements is the gateway's",
            ),
            (
                r#"{"card": {"signatures": []}}"#,
                "card.signatures is the gateway's",
            ),
            (
                r#"{"card": {"name": "other"}}"#,
                "card.name is the gateway's",
            ),
            (
                r#"{"card": {"url": "http://x"}}"#,
                "card.url is not a member an extended card sets",
            ),
            (
                r#"{"card": {"description": 7}}"#,
                "card.description must be a string",
            ),
            (
                r#"{"card": {"defaultInputModes": "text/plain"}}"#,
                "card.defaultInputModes must be a list of strings",
            ),
            (
                r#"{"card": {"provider": {"organization": "x"}}}"#,
                "card.provider needs url",
            ),
            (
                r#"{"card": {"provider": {"organization": "x", "url": "u", "y": 1}}}"#,
                "card.provider has an unknown member \"y\"",
            ),
            (r#"{"card": {"skills": {}}}"#, "card.skills must be a list"),
            (
                r#"{"card": {"skills": [7]}}"#,
                "card.skills[0] must be an AgentSkill object",
            ),
            (
                r#"{"card": {"skills": [{"name": "n", "description": "d"}]}}"#,
                "card.skills[0].id must be given",
            ),
            (
                r#"{"card": {"skills": [{"id": "", "name": "n", "description": "d"}]}}"#,
                "card.skills[0].id must not be empty",
            ),
            (
                r#"{"card": {"skills": [{"id": "a", "name": "n", "description": "d", "tags": [1]}]}}"#,
                "card.skills[0].tags must be a list of strings",
            ),
            (
                r#"{"card": {"skills": [{"id": "a", "name": "n", "description": "d", "examples": "e"}]}}"#,
                "card.skills[0].examples must be a list",
            ),
            (
                r#"{"card": {"skills": [{"id": "a", "name": "n", "description": "d", "securityRequirements": []}]}}"#,
                "card.skills[0].securityRequirements is the gateway's",
            ),
            (
                r#"{"card": {"skills": [{"id": "a", "name": "n", "description": "d", "security": []}]}}"#,
                "card.skills[0].security is not an AgentSkill member",
            ),
            (
                r#"{"card": {"skills": [{"id": "a", "name": "n", "description": "d"}, {"id": "a", "name": "m", "description": "e"}]}}"#,
                "card.skills[1].id \"a\" is the id of an earlier skill",
            ),
            (
                r#"{"card": {}, "skill_users": []}"#,
                "skill_users must be an object",
            ),
            (
                r#"{"card": {}, "skill_users": {"ghost": ["alice"]}}"#,
                "skill_users.ghost names no skill of card.skills",
            ),
        ] {
            let err = ExtendedCard::parse(text).unwrap_err();
            assert!(err.contains(reason), "{text}: {err}");
            assert!(!err.contains('\n'), "{err}");
        }
        let skill = r#"{"id": "a", "name": "n", "description": "d"}"#;
        for (users, reason) in [
            ("\"alice\"", "must be a list of users"),
            ("[]", "lists no user"),
            ("[\"\"]", "non-empty strings"),
            ("[7]", "non-empty strings"),
            ("[\"a*b\"]", "only a trailing *"),
        ] {
            let text =
                format!(r#"{{"card": {{"skills": [{skill}]}}, "skill_users": {{"a": {users}}}}}"#);
            let err = ExtendedCard::parse(&text).unwrap_err();
            assert!(
                err.contains(&format!("skill_users.a {reason}")) || err.contains(reason),
                "{users}: {err}"
            );
        }
    }

    #[test]
    fn reading_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("none.json");
        let err = ExtendedCard::read(&missing).unwrap_err();
        assert!(
            err.starts_with(&format!("cannot read {}", missing.display())),
            "{err}"
        );
        let bad = dir.path().join("bad.json");
        std::fs::write(&bad, r#"{"card": {"capabilities": {}}}"#).unwrap();
        let err = ExtendedCard::read(&bad).unwrap_err();
        assert_eq!(
            err,
            format!(
                "{}: card.capabilities is the gateway's: the extended card keeps the public card's",
                bad.display()
            )
        );
        let good = dir.path().join("good.json");
        std::fs::write(&good, r#"{"card": {"version": "2.0.0"}}"#).unwrap();
        let card = ExtendedCard::read(&good).unwrap();
        assert_eq!(card.for_caller(public(), "alice")["version"], "2.0.0");
    }
}
