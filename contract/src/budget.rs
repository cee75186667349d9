//! The token budget policy: which limits apply to a user's request for a
//! model, in the JSON form every side reads (the filter's `budget`
//! section, the companion service's `ATTACH_BUDGET`, the runtime overrides
//! the service hands the filters) and the headers a client reads them from.
//!
//! ```json
//! {"windows": [{"seconds": 60, "tokens": 60000}, {"seconds": 86400, "tokens": 2000000, "status": 403}],
//!  "models":  [{"match": "llama3*", "windows": [{"seconds": 60, "tokens": 10000}]}],
//!  "users":   [{"match": "alice", "windows": [{"seconds": 60, "tokens": 200000}]}]}
//! ```
//!
//! A request counts against every window of `windows` (all models), and
//! against the windows of the first `models` rule its model matches
//! (tokens of the models that rule matches). The first override that
//! matches the user (the runtime overrides first, then `users`) replaces
//! `windows`, `models`, or both. Tokens are input plus output.
//!
//! Everything is read by hand from a [`Value`]: the filter links this
//! crate into its wasm module, where derived deserializers cost size.

use crate::pattern::Pattern;
use serde_json::{Map, Value, json};

/// The limit of the most constraining window, as OpenAI's API names it.
pub const LIMIT_HEADER: &str = "x-ratelimit-limit-tokens";
/// Tokens left in that window.
pub const REMAINING_HEADER: &str = "x-ratelimit-remaining-tokens";
/// How long until that window is whole again, as a duration (`1m30s`).
pub const RESET_HEADER: &str = "x-ratelimit-reset-tokens";

/// The longest window: a year.
pub const MAX_WINDOW_SECONDS: u64 = 365 * 86_400;
/// What an exhausted window answers unless it says otherwise.
pub const DEFAULT_STATUS: u16 = 429;
/// The scope name of the windows that count every model.
pub const ALL_MODELS: &str = "*";

/// A field of the configuration and what is wrong with it.
pub type FieldError = (String, String);

/// At most `tokens` in any `seconds` seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub seconds: u64,
    pub tokens: u64,
    /// 429, or 403 for a long quota that retrying soon cannot help.
    pub status: u16,
}

/// Windows for the models a pattern matches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelRule {
    pub pattern: Pattern,
    pub windows: Vec<Window>,
}

/// Limits of their own for the users a pattern matches; what it leaves
/// out (`None`) stays as the policy has it, an empty list means none.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Override {
    pub user: Pattern,
    pub windows: Option<Vec<Window>>,
    pub models: Option<Vec<ModelRule>>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Policy {
    pub windows: Vec<Window>,
    pub models: Vec<ModelRule>,
    pub users: Vec<Override>,
}

/// What a limit counts: every model, or the models of one rule (named by
/// its pattern as written).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    All,
    Model(String),
}

impl Scope {
    /// `*`, or the model rule's pattern.
    pub fn name(&self) -> &str {
        match self {
            Scope::All => ALL_MODELS,
            Scope::Model(pattern) => pattern,
        }
    }

    pub fn from_name(name: &str) -> Scope {
        match name {
            ALL_MODELS => Scope::All,
            pattern => Scope::Model(pattern.to_string()),
        }
    }

    /// Whether a request for `model` counts here.
    pub fn counts(&self, model: Option<&str>) -> bool {
        match self {
            Scope::All => true,
            Scope::Model(pattern) => match (Pattern::parse(pattern), model) {
                (Ok(p), Some(model)) => p.matches(model),
                _ => false,
            },
        }
    }
}

/// One window a request must fit in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limit {
    pub scope: Scope,
    pub window: Window,
}

impl Policy {
    /// Reads the policy's three lists from an object that may hold other
    /// fields too (the filter's section does); `at` names the object in
    /// messages (`budget`).
    pub fn from_object(object: &Map<String, Value>, at: &str) -> Result<Policy, FieldError> {
        let windows = match object.get("windows") {
            Some(v) => windows(v, &format!("{at}.windows"))?,
            None => Vec::new(),
        };
        let models = match object.get("models") {
            Some(v) => model_rules(v, &format!("{at}.models"))?,
            None => Vec::new(),
        };
        let mut users = Vec::new();
        if let Some(v) = object.get("users") {
            for (i, o) in list(v, &format!("{at}.users"))?.iter().enumerate() {
                let at = format!("{at}.users[{i}]");
                let object = o
                    .as_object()
                    .ok_or_else(|| (at.clone(), "must be an object".to_string()))?;
                let user = pattern(object.get("match"), &format!("{at}.match"))?;
                users.push(Override::from_object(
                    object,
                    user,
                    &at,
                    &["match", "windows", "models"],
                )?);
            }
        }
        Ok(Policy {
            windows,
            models,
            users,
        })
    }

    /// Reads a policy object that holds nothing else.
    pub fn from_value(value: &Value, at: &str) -> Result<Policy, FieldError> {
        let object = value
            .as_object()
            .ok_or_else(|| (at.to_string(), "must be an object".to_string()))?;
        only(object, at, &["windows", "models", "users"])?;
        Policy::from_object(object, at)
    }

    /// Whether any request can ever be refused: a policy without a single
    /// window only meters.
    pub fn limits_anything(&self) -> bool {
        !self.windows.is_empty()
            || self.models.iter().any(|m| !m.windows.is_empty())
            || self.users.iter().any(|o| {
                o.windows.as_ref().is_some_and(|w| !w.is_empty())
                    || o.models.iter().flatten().any(|m| !m.windows.is_empty())
            })
    }

    /// The windows a request of `user` for `model` must fit in: the
    /// first matching override of `runtime`, else of the policy's own
    /// `users`, replaces what it names; then the first model rule that
    /// matches adds its windows.
    pub fn limits(&self, runtime: &[Override], user: &str, model: Option<&str>) -> Vec<Limit> {
        let (windows, models) = self.chosen_for(runtime, user);
        let mut limits = all_models(windows);
        let rule = model.and_then(|m| models.iter().find(|r| r.pattern.matches(m)));
        if let Some(rule) = rule {
            limits.extend(rule_limits(rule));
        }
        limits
    }

    /// Every limit of `user`, whatever the model: the windows of all
    /// models, then each model rule's (a request counts against one rule
    /// at most, the first its model matches). What a user's usage is
    /// shown against.
    pub fn user_limits(&self, runtime: &[Override], user: &str) -> Vec<Limit> {
        let (windows, models) = self.chosen_for(runtime, user);
        let mut limits = all_models(windows);
        limits.extend(models.iter().flat_map(rule_limits));
        limits
    }

    /// The windows and model rules of `user`: the first matching override
    /// of `runtime`, else of the policy's own `users`, replaces what it
    /// names.
    fn chosen_for<'a>(
        &'a self,
        runtime: &'a [Override],
        user: &str,
    ) -> (&'a [Window], &'a [ModelRule]) {
        let chosen = runtime
            .iter()
            .chain(&self.users)
            .find(|o| o.user.matches(user));
        let windows = chosen
            .and_then(|o| o.windows.as_deref())
            .unwrap_or(&self.windows);
        let models = chosen
            .and_then(|o| o.models.as_deref())
            .unwrap_or(&self.models);
        (windows, models)
    }

    /// The policy in its JSON form (what [`Policy::from_value`] reads).
    pub fn to_value(&self) -> Value {
        json!({
            "windows": windows_value(&self.windows),
            "models": models_value(&self.models),
            "users": self.users.iter().map(|o| {
                let mut v = o.fields_value();
                if let Some(object) = v.as_object_mut() {
                    object.insert("match".into(), Value::String(o.user.text()));
                }
                v
            }).collect::<Vec<_>>(),
        })
    }
}

impl Override {
    /// A runtime override: limits for one user exactly, from the object
    /// `{"windows": [...], "models": [...]}` (either may be left out).
    pub fn for_user(user: &str, value: &Value, at: &str) -> Result<Override, FieldError> {
        let object = value
            .as_object()
            .ok_or_else(|| (at.to_string(), "must be an object".to_string()))?;
        Override::from_object(
            object,
            Pattern::Exact(user.to_string()),
            at,
            &["windows", "models"],
        )
    }

    /// Reads the override's fields from `object`, which may hold only
    /// `allowed` fields.
    pub(crate) fn from_object(
        object: &Map<String, Value>,
        user: Pattern,
        at: &str,
        allowed: &[&str],
    ) -> Result<Override, FieldError> {
        only(object, at, allowed)?;
        Ok(Override {
            user,
            windows: object
                .get("windows")
                .map(|v| windows(v, &format!("{at}.windows")))
                .transpose()?,
            models: object
                .get("models")
                .map(|v| model_rules(v, &format!("{at}.models")))
                .transpose()?,
        })
    }

    /// `{"windows": …, "models": …}` with what the override names.
    pub fn fields_value(&self) -> Value {
        let mut object = Map::new();
        if let Some(w) = &self.windows {
            object.insert("windows".into(), windows_value(w));
        }
        if let Some(m) = &self.models {
            object.insert("models".into(), models_value(m));
        }
        Value::Object(object)
    }
}

fn all_models(windows: &[Window]) -> Vec<Limit> {
    windows
        .iter()
        .map(|w| Limit {
            scope: Scope::All,
            window: *w,
        })
        .collect()
}

fn rule_limits(rule: &ModelRule) -> impl Iterator<Item = Limit> + '_ {
    rule.windows.iter().map(|w| Limit {
        scope: Scope::Model(rule.pattern.text()),
        window: *w,
    })
}

fn windows_value(windows: &[Window]) -> Value {
    Value::Array(
        windows
            .iter()
            .map(|w| json!({"seconds": w.seconds, "tokens": w.tokens, "status": w.status}))
            .collect(),
    )
}

fn models_value(models: &[ModelRule]) -> Value {
    Value::Array(
        models
            .iter()
            .map(|m| json!({"match": m.pattern.text(), "windows": windows_value(&m.windows)}))
            .collect(),
    )
}

fn only(object: &Map<String, Value>, at: &str, allowed: &[&str]) -> Result<(), FieldError> {
    match object.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err((
            format!("{at}.{k}"),
            format!(
                "is not a field here (expected one of: {})",
                allowed.join(", ")
            ),
        )),
        None => Ok(()),
    }
}

fn list<'a>(value: &'a Value, at: &str) -> Result<&'a Vec<Value>, FieldError> {
    value
        .as_array()
        .ok_or_else(|| (at.to_string(), "must be a list".to_string()))
}

fn pattern(value: Option<&Value>, at: &str) -> Result<Pattern, FieldError> {
    let text = value
        .and_then(Value::as_str)
        .ok_or_else(|| (at.to_string(), "must be a string".to_string()))?;
    Pattern::parse(text).map_err(|m| (at.to_string(), m.to_string()))
}

fn positive(object: &Map<String, Value>, field: &str, at: &str) -> Result<u64, FieldError> {
    match object.get(field).and_then(Value::as_u64) {
        Some(n) if n >= 1 => Ok(n),
        _ => Err((format!("{at}.{field}"), "must be a positive integer".into())),
    }
}

fn windows(value: &Value, at: &str) -> Result<Vec<Window>, FieldError> {
    let mut out: Vec<Window> = Vec::new();
    for (i, w) in list(value, at)?.iter().enumerate() {
        let at = format!("{at}[{i}]");
        let object = w
            .as_object()
            .ok_or_else(|| (at.clone(), "must be an object".to_string()))?;
        only(object, &at, &["seconds", "tokens", "status"])?;
        let seconds = positive(object, "seconds", &at)?;
        if seconds > MAX_WINDOW_SECONDS {
            return Err((
                format!("{at}.seconds"),
                format!("must be at most {MAX_WINDOW_SECONDS} (a year)"),
            ));
        }
        let tokens = positive(object, "tokens", &at)?;
        let status = match object.get("status") {
            None => DEFAULT_STATUS,
            Some(v) => match v.as_u64() {
                Some(s @ (429 | 403)) => s as u16,
                _ => return Err((format!("{at}.status"), "must be 429 or 403".into())),
            },
        };
        if out.iter().any(|o| o.seconds == seconds) {
            return Err((
                format!("{at}.seconds"),
                "two windows of one length: keep the lower limit".into(),
            ));
        }
        out.push(Window {
            seconds,
            tokens,
            status,
        });
    }
    Ok(out)
}

fn model_rules(value: &Value, at: &str) -> Result<Vec<ModelRule>, FieldError> {
    let mut rules = Vec::new();
    for (i, r) in list(value, at)?.iter().enumerate() {
        let at = format!("{at}[{i}]");
        let object = r
            .as_object()
            .ok_or_else(|| (at.clone(), "must be an object".to_string()))?;
        only(object, &at, &["match", "windows"])?;
        let pattern = pattern(object.get("match"), &format!("{at}.match"))?;
        if pattern == Pattern::Prefix(String::new()) {
            return Err((
                format!("{at}.match"),
                "\"*\" is every model: put these windows in the top-level windows".into(),
            ));
        }
        let windows = windows(
            object.get("windows").unwrap_or(&Value::Null),
            &format!("{at}.windows"),
        )?;
        rules.push(ModelRule { pattern, windows });
    }
    Ok(rules)
}

/// A window length as the environment writes it (`WINDOW`): seconds
/// (`60`), or a number with `s`, `m`, `h` or `d`.
pub fn parse_window(text: &str) -> Result<u64, &'static str> {
    let text = text.trim();
    let (digits, unit) = match text.char_indices().last() {
        Some((i, c @ ('s' | 'm' | 'h' | 'd'))) => (text.get(..i).unwrap_or(""), c),
        _ => (text, 's'),
    };
    let n: u64 = digits.parse().map_err(
        |_| "must be a number of seconds, or a number with s, m, h or d (90s, 15m, 1h, 1d)",
    )?;
    let seconds = n.saturating_mul(match unit {
        'm' => 60,
        'h' => 3_600,
        'd' => 86_400,
        _ => 1,
    });
    if seconds == 0 || seconds > MAX_WINDOW_SECONDS {
        return Err("must be between 1 second and a year");
    }
    Ok(seconds)
}

/// A duration in the form OpenAI's rate-limit headers use: `250ms`, `6s`,
/// `1m30s`, `2h0m0s`.
pub fn duration_text(ms: u64) -> String {
    if ms < 1_000 {
        return format!("{ms}ms");
    }
    let seconds = ms.div_ceil(1_000);
    let (h, m, s) = (seconds / 3_600, seconds / 60 % 60, seconds % 60);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, m) => format!("{m}m{s}s"),
        (h, m) => format!("{h}h{m}m{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(v: Value) -> Policy {
        Policy::from_value(&v, "budget").unwrap()
    }

    fn refused(v: Value) -> FieldError {
        Policy::from_value(&v, "budget").unwrap_err()
    }

    fn w(seconds: u64, tokens: u64) -> Window {
        Window {
            seconds,
            tokens,
            status: 429,
        }
    }

    #[test]
    fn windows_and_model_rules_apply_to_the_models_they_match() {
        let p = policy(json!({
            "windows": [{"seconds": 60, "tokens": 60000}, {"seconds": 86400, "tokens": 2000000, "status": 403}],
            "models": [{"match": "llama3*", "windows": [{"seconds": 60, "tokens": 10000}]},
                       {"match": "llama3.2", "windows": [{"seconds": 60, "tokens": 1}]}],
        }));
        let all = |window| Limit {
            scope: Scope::All,
            window,
        };
        let day = Window {
            seconds: 86400,
            tokens: 2_000_000,
            status: 403,
        };
        assert_eq!(
            p.limits(&[], "alice", Some("qwen")),
            vec![all(w(60, 60000)), all(day)]
        );
        // The first rule that matches decides.
        assert_eq!(
            p.limits(&[], "alice", Some("llama3.2")),
            vec![
                all(w(60, 60000)),
                all(day),
                Limit {
                    scope: Scope::Model("llama3*".into()),
                    window: w(60, 10000)
                }
            ]
        );
        assert_eq!(p.limits(&[], "alice", None).len(), 2);
        assert!(Scope::Model("llama3*".into()).counts(Some("llama3.1")));
        assert!(!Scope::Model("llama3*".into()).counts(Some("qwen")));
        assert!(!Scope::Model("llama3*".into()).counts(None));
        assert!(Scope::All.counts(None));
        assert_eq!(Scope::from_name("*"), Scope::All);
        assert_eq!(
            Scope::from_name(Scope::Model("x*".into()).name()),
            Scope::Model("x*".into())
        );
    }

    #[test]
    fn overrides_replace_what_they_name_runtime_first() {
        let p = policy(json!({
            "windows": [{"seconds": 60, "tokens": 100}],
            "models": [{"match": "big", "windows": [{"seconds": 60, "tokens": 10}]}],
            "users": [{"match": "did:key:*", "windows": [{"seconds": 60, "tokens": 5}]},
                      {"match": "root", "windows": [], "models": []}],
        }));
        let tokens =
            |limits: Vec<Limit>| limits.iter().map(|l| l.window.tokens).collect::<Vec<_>>();
        assert_eq!(
            tokens(p.limits(&[], "did:key:z6Mk", Some("big"))),
            vec![5, 10]
        );
        assert_eq!(
            tokens(p.limits(&[], "root", Some("big"))),
            Vec::<u64>::new()
        );
        assert_eq!(tokens(p.limits(&[], "alice", Some("big"))), vec![100, 10]);
        let runtime =
            [Override::for_user("did:key:z6Mk", &json!({"models": []}), "override").unwrap()];
        // The runtime override names only models: the windows stay the policy's.
        assert_eq!(
            tokens(p.limits(&runtime, "did:key:z6Mk", Some("big"))),
            vec![100]
        );
        assert_eq!(
            tokens(p.limits(&runtime, "did:key:other", Some("big"))),
            vec![5, 10]
        );
        assert!(p.limits_anything());
        assert!(!policy(json!({"users": [{"match": "a", "windows": []}]})).limits_anything());
        // Whatever the model: every rule of the override chosen, or of the policy.
        assert_eq!(tokens(p.user_limits(&[], "alice")), vec![100, 10]);
        assert_eq!(tokens(p.user_limits(&runtime, "did:key:z6Mk")), vec![100]);
        assert_eq!(
            p.user_limits(&[], "did:key:z6Mk")[1].scope,
            Scope::Model("big".into())
        );
    }

    #[test]
    fn the_json_form_reads_back() {
        let p = policy(json!({
            "windows": [{"seconds": 60, "tokens": 100, "status": 403}],
            "models": [{"match": "m*", "windows": [{"seconds": 5, "tokens": 1}]}],
            "users": [{"match": "a", "models": []}],
        }));
        assert_eq!(Policy::from_value(&p.to_value(), "x").unwrap(), p);
        let o = Override::for_user(
            "bob",
            &json!({"windows": [{"seconds": 1, "tokens": 2}]}),
            "o",
        )
        .unwrap();
        assert_eq!(
            Override::for_user("bob", &o.fields_value(), "o").unwrap(),
            o
        );
    }

    #[test]
    fn mistakes_name_their_field() {
        let cases = [
            (json!([]), "budget", "must be an object"),
            (
                json!({"window": []}),
                "budget.window",
                "is not a field here",
            ),
            (
                json!({"windows": [{"seconds": 0, "tokens": 1}]}),
                "budget.windows[0].seconds",
                "positive",
            ),
            (
                json!({"windows": [{"seconds": 60, "tokens": -1}]}),
                "budget.windows[0].tokens",
                "positive",
            ),
            (
                json!({"windows": [{"seconds": 60, "tokens": 1.5}]}),
                "budget.windows[0].tokens",
                "positive",
            ),
            (
                json!({"windows": [{"seconds": 40000000, "tokens": 1}]}),
                "budget.windows[0].seconds",
                "a year",
            ),
            (
                json!({"windows": [{"seconds": 60, "tokens": 1, "status": 503}]}),
                "budget.windows[0].status",
                "429 or 403",
            ),
            (
                json!({"windows": [{"seconds": 60, "tokens": 1}, {"seconds": 60, "tokens": 2}]}),
                "budget.windows[1].seconds",
                "two windows",
            ),
            (
                json!({"models": [{"match": "*", "windows": []}]}),
                "budget.models[0].match",
                "every model",
            ),
            (
                json!({"models": [{"match": "a*b", "windows": []}]}),
                "budget.models[0].match",
                "trailing",
            ),
            (
                json!({"models": [{"match": "a"}]}),
                "budget.models[0].windows",
                "must be a list",
            ),
            (
                json!({"users": [{"windows": []}]}),
                "budget.users[0].match",
                "must be a string",
            ),
            (
                json!({"users": [{"match": "a", "limit": 1}]}),
                "budget.users[0].limit",
                "is not a field",
            ),
        ];
        for (value, field, message) in cases {
            let (at, why) = refused(value.clone());
            assert_eq!(at, field, "{value}");
            assert!(why.contains(message), "{value}: {why}");
        }
        assert_eq!(
            Override::for_user("u", &json!({"match": "x"}), "override")
                .unwrap_err()
                .0,
            "override.match"
        );
    }

    #[test]
    fn window_lengths_as_the_environment_writes_them() {
        for (text, seconds) in [
            ("60", 60),
            ("90s", 90),
            ("15m", 900),
            ("1h", 3600),
            ("1d", 86400),
            (" 2m ", 120),
        ] {
            assert_eq!(parse_window(text), Ok(seconds), "{text}");
        }
        for bad in ["", "0", "m", "1w", "-5", "1.5m", "400d"] {
            assert!(parse_window(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn durations_read_as_openai_writes_them() {
        for (ms, text) in [
            (0, "0ms"),
            (250, "250ms"),
            (1_000, "1s"),
            (1_001, "2s"),
            (90_000, "1m30s"),
            (7_200_000, "2h0m0s"),
            (86_400_000, "24h0m0s"),
        ] {
            assert_eq!(duration_text(ms), text);
        }
    }
}
