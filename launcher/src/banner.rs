//! The lines `attach run` ends its start-up with, printed once Envoy says it
//! is ready, so that they are the last thing on the screen: where the
//! gateway and the demo are, and how a caller gets a token.

use crate::dev;
use crate::env::{Env, Settings};
use crate::mcp;
use attach_contract::budget::Policy;
use attach_contract::mcp as mcp_paths;
use attach_filter::config::PluginConfig;
use std::path::Path;

/// The settings that decide what `attach token` signs for (whether DID
/// sign-in is on, the audience, the lifetime, the identity file). Those
/// that are set go in front of the command the banner shows, so that it
/// mints a token this gateway accepts when run from another shell.
const TOKEN_SETTINGS: [&str; 10] = [
    "ATTACH_CONFIG",
    "ATTACH_DATA_DIR",
    "ATTACH_BIND",
    "ATTACH_PORT",
    "ATTACH_PUBLIC_URL",
    "OIDC_ISSUER",
    "OIDC_AUD",
    "DID_AUD",
    "DID_ALLOW",
    "DID_MAX_TTL",
];

/// The banner: the gateway, the demo when `demo` is on, each MCP server at
/// its canonical URI (the resource its clients' tokens must name), and one
/// line per way of signing in that `config` accepts.
pub fn text(
    settings: &Settings,
    config: &PluginConfig,
    mcp: &[mcp::Server],
    demo: bool,
    token_command: &str,
) -> String {
    let gateway = settings.gateway_url();
    let mut lines = vec![
        "attach: ready".to_string(),
        format!("  gateway  {gateway} -> {}", settings.engine_url),
    ];
    if demo {
        lines.push(format!(
            "  demo     {gateway}{} (signs in by itself; agents planner and coder, model {})",
            dev::DEMO_PATH,
            settings.dev.model
        ));
    }
    let resource = config.resource.as_deref().unwrap_or(&settings.public_url);
    for server in mcp {
        lines.push(format!(
            "  mcp      {} -> {}",
            mcp_paths::canonical_uri(resource, server.name()),
            server.registered.url
        ));
    }
    if let Some(budget) = &config.budget {
        lines.push(format!("  budgets  {}", budget_summary(&budget.policy)));
    }
    if config.did.is_some() {
        lines.push(format!(
            "  token    TOKEN=$({token_command}), sent as -H \"Authorization: Bearer $TOKEN\""
        ));
    }
    for provider in &config.providers {
        lines.push(format!(
            "  token    from {} for audience {}",
            provider.issuer,
            provider.audiences.join(", ")
        ));
    }
    if config.did.is_none() && config.providers.is_empty() {
        lines.push("  token    none is accepted: no OIDC issuer, and DID sign-in is off".into());
    }
    lines.join("\n")
}

/// What the budget limits, in a few words: the windows every user has,
/// and how many model rules and user overrides add to them.
fn budget_summary(policy: &Policy) -> String {
    let mut text = match policy.windows.as_slice() {
        [] if policy.limits_anything() => "no limit for all models".to_string(),
        [] => "metering only (no limits)".to_string(),
        windows => {
            let each: Vec<String> = windows
                .iter()
                .map(|w| format!("{} tokens / {} s", w.tokens, w.seconds))
                .collect();
            format!("{} per user", each.join(", "))
        }
    };
    let count = |n: usize, what: &str| match n {
        0 => None,
        1 => Some(format!("1 {what}")),
        n => Some(format!("{n} {what}s")),
    };
    let more: Vec<String> = [
        count(policy.models.len(), "model rule"),
        count(policy.users.len(), "user override"),
    ]
    .into_iter()
    .flatten()
    .collect();
    if !more.is_empty() {
        text = format!("{text}; {}", more.join(", "));
    }
    text
}

/// `attach token` as the user can type it in `cwd`: the launcher's own
/// path (relative when it is below `cwd`), after the [`TOKEN_SETTINGS`]
/// that `env` sets.
pub fn token_command(env: Env, exe: &Path, cwd: &Path) -> String {
    let program = match exe.strip_prefix(cwd) {
        Ok(relative) => format!("./{}", relative.display()),
        Err(_) => exe.display().to_string(),
    };
    let mut words: Vec<String> = TOKEN_SETTINGS
        .iter()
        .filter_map(|name| {
            let value = env(name).filter(|v| !v.trim().is_empty())?;
            Some(format!("{name}={}", shell_quote(&value)))
        })
        .collect();
    words.push(shell_quote(&program));
    words.push("token".to_string());
    words.join(" ")
}

/// `word` as one shell word: as is when it holds only characters no shell
/// treats specially, else in single quotes.
fn shell_quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_./:,@%+=-".contains(&b));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env::tests::{env_of, settings};
    use crate::plugin;

    fn config(pairs: &[(&str, &str)]) -> (Settings, PluginConfig) {
        let s = settings(pairs).unwrap();
        let config = plugin::build(&s, None).unwrap().config;
        (s, config)
    }

    #[test]
    fn mcp_servers_are_listed_at_their_canonical_uris() {
        let s = settings(&[
            ("ATTACH_PUBLIC_URL", "https://gw.example/"),
            (
                "MCP_SERVERS",
                "tools=http://127.0.0.1:9000/mcp,files=http://127.0.0.1:9001/;scopes=files:read",
            ),
        ])
        .unwrap();
        let p = plugin::build(&s, None).unwrap();
        let banner = text(&s, &p.config, &p.mcp, false, "attach token");
        let lines: Vec<&str> = banner.lines().collect();
        assert_eq!(
            lines[2..4],
            [
                "  mcp      https://gw.example/mcp/tools -> http://127.0.0.1:9000/mcp",
                "  mcp      https://gw.example/mcp/files -> http://127.0.0.1:9001/",
            ]
        );
    }

    #[test]
    fn budgets_have_their_line() {
        let line = |pairs: &[(&str, &str)], file: Option<serde_json::Value>| {
            let s = settings(pairs).unwrap();
            let file = file.map(|f| serde_json::from_value(f).unwrap());
            let p = plugin::build(&s, file).unwrap();
            text(&s, &p.config, &[], false, "attach token")
                .lines()
                .find(|l| l.starts_with("  budgets"))
                .map(str::to_string)
        };
        assert_eq!(line(&[], None), None, "off unless configured");
        assert_eq!(
            line(&[("MAX_TOKENS_PER_MIN", "60000")], None).as_deref(),
            Some("  budgets  60000 tokens / 60 s per user")
        );
        assert_eq!(
            line(&[("MAX_REQUEST_BYTES", "4096")], None).as_deref(),
            Some("  budgets  metering only (no limits)")
        );
        let file = serde_json::json!({"budget": {
            "windows": [{"seconds": 60, "tokens": 100}, {"seconds": 86400, "tokens": 5000, "status": 403}],
            "models": [{"match": "llama3*", "windows": [{"seconds": 60, "tokens": 10}]}],
            "users": [{"match": "a", "windows": []}, {"match": "b", "models": []}],
        }});
        assert_eq!(
            line(&[], Some(file)).as_deref(),
            Some(
                "  budgets  100 tokens / 60 s, 5000 tokens / 86400 s per user; 1 model rule, 2 user overrides"
            )
        );
        let models = serde_json::json!({"budget": {
            "models": [{"match": "big", "windows": [{"seconds": 60, "tokens": 10}]}],
        }});
        assert_eq!(
            line(&[], Some(models)).as_deref(),
            Some("  budgets  no limit for all models; 1 model rule")
        );
    }

    #[test]
    fn defaults_show_the_gateway_and_the_token_command() {
        let (s, c) = config(&[]);
        assert_eq!(
            text(&s, &c, &[], false, "./target/release/attach token"),
            "attach: ready\n  \
             gateway  http://127.0.0.1:8080 -> http://127.0.0.1:11434\n  \
             token    TOKEN=$(./target/release/attach token), sent as -H \"Authorization: Bearer $TOKEN\""
        );
    }

    #[test]
    fn the_demo_has_its_own_line() {
        let (s, c) = config(&[("ATTACH_MODEL", "qwen2.5-coder")]);
        let banner = text(&s, &c, &[], true, "attach token");
        let lines: Vec<&str> = banner.lines().collect();
        assert_eq!(
            lines[2],
            "  demo     http://127.0.0.1:8080/demo (signs in by itself; agents planner and coder, model qwen2.5-coder)"
        );
        assert!(lines[3].starts_with("  token    TOKEN=$(attach token)"));
    }

    #[test]
    fn an_issuer_is_named_with_its_audiences() {
        let (s, c) = config(&[
            ("OIDC_ISSUER", "https://idp.example"),
            ("OIDC_AUD", "api,cli"),
        ]);
        let banner = text(&s, &c, &[], false, "attach token");
        assert!(!banner.contains("TOKEN="), "DID sign-in is off: {banner}");
        assert!(
            banner.ends_with("\n  token    from https://idp.example for audience api, cli"),
            "{banner}"
        );
        let (s, c) = config(&[
            ("OIDC_ISSUER", "https://idp.example"),
            ("OIDC_AUD", "api"),
            ("DID_ALLOW", "did:key:*"),
        ]);
        let banner = text(&s, &c, &[], false, "attach token");
        assert_eq!(banner.matches("\n  token    ").count(), 2, "{banner}");
    }

    #[test]
    fn the_token_command_carries_the_settings_that_decide_the_audience() {
        let cwd = Path::new("/srv/attach");
        let exe = Path::new("/srv/attach/target/release/attach");
        assert_eq!(
            token_command(&env_of(&[]), exe, cwd),
            "./target/release/attach token"
        );
        let env = env_of(&[
            ("ATTACH_PORT", "9000"),
            ("DID_ALLOW", "did:key:*"),
            ("DID_AUD", "it's"),
            ("ENGINE_URL", "http://127.0.0.1:1"),
            ("OIDC_AUD", " "),
        ]);
        assert_eq!(
            token_command(&env, Path::new("/opt/attach bin/attach"), cwd),
            r"ATTACH_PORT=9000 DID_AUD='it'\''s' DID_ALLOW='did:key:*' '/opt/attach bin/attach' token"
        );
    }
}
