//! What the gateways and the companion service exchange to share budgets
//! and meter usage: every gateway sends, on its tick, the usage records
//! of the model calls it finished and asks for what the other gateways
//! spent; the service answers with those totals and the runtime overrides.
//!
//! `POST /usage/sync` (the ingest key, as for `/mem/ingest`):
//!
//! ```json
//! {"gateway": "g-5f2c…",
//!  "records": [{"id": "…", "user": "alice", "model": "llama3", "route": "/api/chat", "at_ms": 1765000000123,
//!               "tokens_in": 12, "tokens_out": 40, "estimated": false, "outcome": "complete"}],
//!  "totals_for": [{"user": "alice", "scope": "*", "seconds": 60}]}
//! ```
//! answered with
//! ```json
//! {"totals": [{"user": "alice", "scope": "*", "seconds": 60, "tokens": 1234}],
//!  "overrides": [{"user": "bob", "windows": [{"seconds": 60, "tokens": 5000}]}]}
//! ```
//!
//! A record's `id` makes it idempotent: a batch sent again (its answer was
//! lost) is not counted twice. A total counts the records of every
//! gateway but the asking one, which knows its own exactly.

use crate::budget::{FieldError, Override, Scope};
use crate::pattern::Pattern;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// Where the service takes the gateways' batches.
pub const SYNC_PATH: &str = "/usage/sync";
/// The caller's usage, and an admin's view of anyone's.
pub const USAGE_PATH: &str = "/usage";
/// The most records one batch may carry.
pub const MAX_RECORDS: usize = 500;
/// The most totals one batch may ask for.
pub const MAX_TOTALS: usize = 2_000;
/// The longest user, model, route or id a record may carry (bytes).
pub const MAX_FIELD_BYTES: usize = 512;

/// How a metered model call ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// The reply ended.
    Complete,
    /// The client went away before the reply ended: charged what passed.
    Abandoned,
    /// The gateway ended the reply past its reservation (the hard stop).
    Stopped,
    /// The upstream answered an error status: charged what it reported.
    Failed,
    /// The budget refused the call: no tokens, counted for the metrics.
    Refused,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Complete => "complete",
            Outcome::Abandoned => "abandoned",
            Outcome::Stopped => "stopped",
            Outcome::Failed => "failed",
            Outcome::Refused => "refused",
        }
    }
}

/// One model call's usage.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record {
    pub id: String,
    pub user: String,
    /// The model asked for (the one the budget's model rules saw), empty
    /// when the request named none.
    pub model: String,
    pub route: String,
    /// When the call ended (ms since the epoch).
    pub at_ms: u64,
    pub tokens_in: u64,
    pub tokens_out: u64,
    /// The engine reported no usage: the counts are the gateway's estimate.
    pub estimated: bool,
    pub outcome: Outcome,
}

impl Record {
    /// The tokens the record charges.
    pub fn tokens(&self) -> u64 {
        self.tokens_in.saturating_add(self.tokens_out)
    }

    /// Why the record cannot be stored, if it cannot.
    pub fn problem(&self) -> Option<&'static str> {
        let fields = [&self.id, &self.user, &self.model, &self.route];
        if self.id.is_empty() || self.user.is_empty() {
            return Some("a record needs an id and a user");
        }
        if fields.iter().any(|f| f.len() > MAX_FIELD_BYTES) {
            return Some("a record's id, user, model and route are at most 512 bytes");
        }
        None
    }
}

/// Which user's spending in which window a gateway asks about.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TotalKey {
    pub user: String,
    /// `*` (every model) or a model rule's pattern.
    pub scope: String,
    pub seconds: u64,
}

impl TotalKey {
    pub fn scope(&self) -> Scope {
        Scope::from_name(&self.scope)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncRequest {
    /// Chosen by each gateway when it starts.
    pub gateway: String,
    #[serde(default)]
    pub records: Vec<Record>,
    #[serde(default)]
    pub totals_for: Vec<TotalKey>,
}

impl SyncRequest {
    /// Why the batch cannot be taken, if it cannot (nothing of it is).
    pub fn problem(&self) -> Option<&'static str> {
        if self.gateway.is_empty() || self.gateway.len() > MAX_FIELD_BYTES {
            return Some("gateway must name the gateway (1 to 512 bytes)");
        }
        if self.records.len() > MAX_RECORDS {
            return Some("at most 500 records per batch");
        }
        if self.totals_for.len() > MAX_TOTALS {
            return Some("at most 2000 totals per batch");
        }
        self.records.iter().find_map(Record::problem)
    }
}

/// What other gateways spent: `tokens` in the last `seconds` seconds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Total {
    pub key: TotalKey,
    pub tokens: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SyncResponse {
    pub totals: Vec<Total>,
    /// Every runtime override, each for one user exactly.
    pub overrides: Vec<Override>,
}

impl SyncResponse {
    pub fn to_value(&self) -> Value {
        json!({
            "totals": self.totals.iter().map(|t| json!({
                "user": t.key.user, "scope": t.key.scope, "seconds": t.key.seconds, "tokens": t.tokens,
            })).collect::<Vec<_>>(),
            "overrides": self.overrides.iter().map(|o| {
                let mut v = o.fields_value();
                if let Some(object) = v.as_object_mut() {
                    object.insert("user".into(), Value::String(o.user.text()));
                }
                v
            }).collect::<Vec<_>>(),
        })
    }

    /// Reads the service's answer (by hand: the filter reads it).
    pub fn from_value(value: &Value) -> Result<SyncResponse, FieldError> {
        let field = |at: &str, why: &str| (at.to_string(), why.to_string());
        let list = |name: &str| match value.get(name) {
            None => Ok(&[][..]),
            Some(Value::Array(list)) => Ok(list.as_slice()),
            Some(_) => Err(field(name, "must be a list")),
        };
        let mut totals = Vec::new();
        for (i, t) in list("totals")?.iter().enumerate() {
            let text = |name: &str| t.get(name).and_then(Value::as_str).map(str::to_string);
            let number = |name: &str| t.get(name).and_then(Value::as_u64);
            let (Some(user), Some(scope), Some(seconds), Some(tokens)) = (
                text("user"),
                text("scope"),
                number("seconds"),
                number("tokens"),
            ) else {
                return Err(field(
                    &format!("totals[{i}]"),
                    "needs user, scope, seconds and tokens",
                ));
            };
            totals.push(Total {
                key: TotalKey {
                    user,
                    scope,
                    seconds,
                },
                tokens,
            });
        }
        let mut overrides = Vec::new();
        for (i, o) in list("overrides")?.iter().enumerate() {
            let at = format!("overrides[{i}]");
            let object = o
                .as_object()
                .ok_or_else(|| field(&at, "must be an object"))?;
            let user = object
                .get("user")
                .and_then(Value::as_str)
                .filter(|u| !u.is_empty())
                .ok_or_else(|| field(&format!("{at}.user"), "must name a user"))?;
            let user = Pattern::Exact(user.to_string());
            let allowed = ["user", "windows", "models", "updated_at"];
            overrides.push(Override::from_object(object, user, &at, &allowed)?);
        }
        Ok(SyncResponse { totals, overrides })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::budget::Window;

    fn record() -> Record {
        Record {
            id: "r1".into(),
            user: "alice".into(),
            model: "llama3".into(),
            route: "/api/chat".into(),
            at_ms: 1_765_000_000_123,
            tokens_in: 12,
            tokens_out: 40,
            estimated: false,
            outcome: Outcome::Complete,
        }
    }

    #[test]
    fn a_batch_reads_back_and_names_its_problems() {
        let batch = SyncRequest {
            gateway: "g1".into(),
            records: vec![record()],
            totals_for: vec![TotalKey {
                user: "alice".into(),
                scope: "*".into(),
                seconds: 60,
            }],
        };
        let text = serde_json::to_string(&batch).unwrap();
        assert!(text.contains(r#""outcome":"complete""#), "{text}");
        assert_eq!(serde_json::from_str::<SyncRequest>(&text).unwrap(), batch);
        assert_eq!(batch.problem(), None);
        assert_eq!(batch.records[0].tokens(), 52);
        assert_eq!(batch.totals_for[0].scope(), Scope::All);
        let mut bad = batch.clone();
        bad.records[0].user.clear();
        assert!(bad.problem().unwrap().contains("user"));
        let mut bad = batch.clone();
        bad.records = vec![record(); MAX_RECORDS + 1];
        assert!(bad.problem().is_some());
        let mut bad = batch;
        bad.records[0].route = "x".repeat(MAX_FIELD_BYTES + 1);
        assert!(bad.problem().is_some());
        assert!(serde_json::from_str::<SyncRequest>(r#"{"gateway":"g","extra":1}"#).is_err());
    }

    #[test]
    fn an_answer_reads_back() {
        let answer = SyncResponse {
            totals: vec![Total {
                key: TotalKey {
                    user: "alice".into(),
                    scope: "llama3*".into(),
                    seconds: 60,
                },
                tokens: 1234,
            }],
            overrides: vec![Override {
                user: Pattern::Exact("bob*".into()),
                windows: Some(vec![Window {
                    seconds: 60,
                    tokens: 5000,
                    status: 429,
                }]),
                models: None,
            }],
        };
        let value = answer.to_value();
        // A runtime override names one user exactly, even one whose name ends in `*`.
        assert_eq!(value["overrides"][0]["user"], "bob*");
        let back = SyncResponse::from_value(&value).unwrap();
        assert_eq!(back.totals, answer.totals);
        assert_eq!(back.overrides[0].user, Pattern::Exact("bob*".into()));
        assert_eq!(back.overrides[0].windows, answer.overrides[0].windows);
        for (bad, at) in [
            (json!({"totals": {}}), "totals"),
            (
                json!({"totals": [{"user": "a", "scope": "*", "seconds": 60}]}),
                "totals[0]",
            ),
            (json!({"overrides": [{"windows": []}]}), "overrides[0].user"),
            (
                json!({"overrides": [{"user": "a", "windows": [{"seconds": 0, "tokens": 1}]}]}),
                "overrides[0].windows[0].seconds",
            ),
        ] {
            assert_eq!(SyncResponse::from_value(&bad).unwrap_err().0, at, "{bad}");
        }
    }
}
