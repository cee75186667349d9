//! Which requests are model calls, and in which API dialect.

use serde::{Deserialize, Serialize};

/// The model API's JSON dialect: it decides the field names, the streaming
/// default and the framing of a streamed reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WireFormat {
    Ollama,
    OpenAi,
}

/// Chat APIs carry a conversation (`messages`), completion APIs one `prompt`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RouteKind {
    Chat,
    Completion,
}

impl RouteKind {
    /// Every chat API in use (`/api/chat`, `/v1/chat/completions`, Azure's
    /// `/openai/deployments/{d}/chat/completions`) has a `chat` segment, so
    /// configurations rarely need to spell the kind out.
    pub fn infer(path: &str) -> Self {
        if path.split('/').any(|segment| segment == "chat") {
            RouteKind::Chat
        } else {
            RouteKind::Completion
        }
    }
}

/// A request path whose bodies are mirrored. In the plugin configuration:
/// `{"path": "/api/chat", "format": "ollama"}`, with an optional `"kind"`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "RouteSpec")]
pub struct ModelRoute {
    pub path: String,
    pub format: WireFormat,
    pub kind: RouteKind,
}

/// The configuration form, where `kind` may be left out.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RouteSpec {
    path: String,
    format: WireFormat,
    #[serde(default)]
    kind: Option<RouteKind>,
}

impl From<RouteSpec> for ModelRoute {
    fn from(spec: RouteSpec) -> Self {
        let kind = spec.kind.unwrap_or_else(|| RouteKind::infer(&spec.path));
        ModelRoute {
            path: spec.path,
            format: spec.format,
            kind,
        }
    }
}

impl ModelRoute {
    pub fn new(path: &str, format: WireFormat) -> Self {
        ModelRoute {
            path: path.to_owned(),
            format,
            kind: RouteKind::infer(path),
        }
    }

    /// Matching is exact on the path without its query string, so a route
    /// written with a query, a fragment or spaces could never match.
    pub fn check(&self) -> Result<(), &'static str> {
        if !self.path.starts_with('/')
            || self
                .path
                .chars()
                .any(|c| c == '?' || c == '#' || c.is_whitespace() || c.is_control())
        {
            return Err("must be a path starting with / (no query, fragment or spaces)");
        }
        Ok(())
    }
}

/// The native Ollama API and the OpenAI-compatible one (which Ollama, vLLM
/// and most local servers also speak).
pub fn default_routes() -> Vec<ModelRoute> {
    vec![
        ModelRoute::new("/api/chat", WireFormat::Ollama),
        ModelRoute::new("/api/generate", WireFormat::Ollama),
        ModelRoute::new("/v1/chat/completions", WireFormat::OpenAi),
        ModelRoute::new("/v1/completions", WireFormat::OpenAi),
    ]
}

/// The route for a request's `:path`, ignoring its query string.
pub fn match_route<'a>(routes: &'a [ModelRoute], path: &str) -> Option<&'a ModelRoute> {
    routes.get(route_index(routes, path)?)
}

/// The index of the route `path` (its query left out) names exactly.
pub fn route_index(routes: &[ModelRoute], path: &str) -> Option<usize> {
    let bare = path.split_once('?').map_or(path, |(p, _)| p);
    routes.iter().position(|r| r.path == bare)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_cover_both_dialects_and_kinds() {
        let routes = default_routes();
        let kinds: Vec<_> = routes
            .iter()
            .map(|r| (r.path.as_str(), r.format, r.kind))
            .collect();
        assert_eq!(
            kinds,
            [
                ("/api/chat", WireFormat::Ollama, RouteKind::Chat),
                ("/api/generate", WireFormat::Ollama, RouteKind::Completion),
                ("/v1/chat/completions", WireFormat::OpenAi, RouteKind::Chat),
                ("/v1/completions", WireFormat::OpenAi, RouteKind::Completion),
            ]
        );
        assert!(routes.iter().all(|r| r.check().is_ok()));
    }

    #[test]
    fn matches_the_exact_path_without_its_query() {
        let routes = default_routes();
        let found = |p| match_route(&routes, p).map(|r| r.path.as_str());
        assert_eq!(found("/api/chat"), Some("/api/chat"));
        assert_eq!(found("/api/chat?x=1"), Some("/api/chat"));
        assert_eq!(found("/v1/completions?"), Some("/v1/completions"));
        assert_eq!(found("/api/chat/"), None);
        assert_eq!(found("/api/chatty"), None);
        assert_eq!(found("/API/chat"), None);
        assert_eq!(found("/x/api/chat"), None);
        assert_eq!(found(""), None);
        assert_eq!(found("?/api/chat"), None);
    }

    #[test]
    fn configuration_form_infers_the_kind_unless_given() {
        let r: ModelRoute =
            serde_json::from_str(r#"{"path": "/api/chat", "format": "ollama"}"#).unwrap();
        assert_eq!(r, ModelRoute::new("/api/chat", WireFormat::Ollama));
        let r: ModelRoute = serde_json::from_str(
            r#"{"path": "/openai/deployments/gpt/chat/completions", "format": "openai"}"#,
        )
        .unwrap();
        assert_eq!((r.format, r.kind), (WireFormat::OpenAi, RouteKind::Chat));
        let r: ModelRoute =
            serde_json::from_str(r#"{"path": "/llm", "format": "openai", "kind": "chat"}"#)
                .unwrap();
        assert_eq!(r.kind, RouteKind::Chat);
        let r: ModelRoute =
            serde_json::from_str(r#"{"path": "/llm", "format": "openai"}"#).unwrap();
        assert_eq!(r.kind, RouteKind::Completion);

        let back: ModelRoute = serde_json::from_value(serde_json::to_value(&r).unwrap()).unwrap();
        assert_eq!(back, r);

        for bad in [
            r#"{"path": "/a", "format": "anthropic"}"#,
            r#"{"path": "/a", "format": "ollama", "kind": "embed"}"#,
            r#"{"path": "/a", "format": "ollama", "extra": 1}"#,
            r#"{"format": "ollama"}"#,
        ] {
            assert!(serde_json::from_str::<ModelRoute>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn check_refuses_paths_that_could_never_match() {
        for bad in ["api/chat", "/api/chat?x=1", "/a#b", "/a b", "/a\u{7f}", ""] {
            assert!(
                ModelRoute::new(bad, WireFormat::Ollama).check().is_err(),
                "{bad:?}"
            );
        }
    }
}
