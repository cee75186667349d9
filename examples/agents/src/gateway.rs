//! Calls to the gateway, always for the user who sent the task, never as
//! the agent alone. How depends on how the agent is registered:
//!
//! - With a DID (`AGENT_IDENTITY`), the service gives the agent a token the
//!   gateway delegated to it ([`DELEGATION_HEADER`]: `sub` the user, `act`
//!   the agent), and every call carries it as the bearer token, so the
//!   gateway stamps the user and the chain of actors on each hop. A
//!   hand-off to another agent first exchanges it (RFC 8693, see
//!   [`crate::exchange`]) with the agent's own DID-JWT as actor token: only
//!   the agent the token was delegated to can do that.
//! - Without one (the legacy `forward_bearer=true` registration), each
//!   request carries the caller's own `Authorization` header, unchanged,
//!   and the `X-Attach-Session` with the `X-Attach-Assertion` the service
//!   gave the agent, so the gateway keeps the caller's session on every
//!   hop (it honours them only with its own signature over that user and
//!   session).
//!
//! Nothing else of the caller's goes along. Redirects are not followed: a
//! redirect would take the token to another place.
//!
//! Each failure comes back as one plain sentence for a task's status
//! message: which party failed and what the gateway said, with the route's
//! path but never the gateway's address.

use std::time::Duration;

use attach_contract::did_key::DidKeyIdentity;
use attach_contract::headers::{ASSERTION_HEADER, DELEGATION_HEADER, SESSION_HEADER};
use axum::http::HeaderValue;
use axum::http::header::HeaderMap;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::a2a::{self, one_line};
use crate::exchange;
use crate::gateway_keys::unix_now;
use crate::identity::ACTOR_TOKEN_SECS;

/// Largest reply read from the gateway.
const MAX_REPLY_BYTES: usize = 8 * 1024 * 1024;
/// Pause between `GetTask` polls of a hand-off still in progress.
const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// What the agent presents on the user's behalf.
#[derive(Clone, Debug)]
pub enum Caller {
    /// A token the gateway delegated to this agent, sent as the bearer.
    Delegated { token: String },
    /// The caller's own bearer, forwarded by the service (legacy), with the
    /// caller's session and the gateway's assertion over it.
    Forwarded {
        authorization: HeaderValue,
        session: Option<(HeaderValue, HeaderValue)>,
    },
}

impl Caller {
    /// The token delegated to the agent, from the headers the service
    /// sent; `None` without one.
    pub fn delegated(headers: &HeaderMap) -> Option<Caller> {
        let token = headers.get(DELEGATION_HEADER)?.to_str().ok()?.trim();
        (!token.is_empty()).then(|| Caller::Delegated {
            token: token.to_string(),
        })
    }

    /// The caller's forwarded bearer, from the headers the service sent;
    /// `None` without a token.
    pub fn forwarded(headers: &HeaderMap) -> Option<Caller> {
        let mut authorization = headers.get(AUTHORIZATION)?.clone();
        // Marked sensitive so that no debug output or HTTP/2 header table
        // keeps a copy of the caller's token.
        authorization.set_sensitive(true);
        let session = match (headers.get(SESSION_HEADER), headers.get(ASSERTION_HEADER)) {
            (Some(s), Some(a)) => Some((s.clone(), a.clone())),
            _ => None,
        };
        Some(Caller::Forwarded {
            authorization,
            session,
        })
    }

    fn apply(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match self {
            Caller::Delegated { token } => request.bearer_auth(token),
            Caller::Forwarded {
                authorization,
                session,
            } => {
                let mut request = request.header(AUTHORIZATION, authorization.clone());
                if let Some((session, assertion)) = session {
                    request = request
                        .header(SESSION_HEADER, session.clone())
                        .header(ASSERTION_HEADER, assertion.clone());
                }
                request
            }
        }
    }
}

/// The agent's own credential, for token exchanges: its identity and the
/// audience its DID-JWTs name.
pub struct Actor {
    pub identity: DidKeyIdentity,
    pub audience: String,
}

pub const CHAT_PATH: &str = "/api/chat";
pub const MEMORY_PATH: &str = "/mem/events";

/// Why a task fails before anything is sent, for an agent without a DID:
/// without the caller's token it cannot act for the caller.
pub const NO_AUTHORIZATION: &str = "no Authorization header was forwarded, so the agent cannot \
act as the caller (register it at the gateway with its DID, or with forward_bearer=true)";
/// The same for an agent with a DID: the service sends the delegated token.
pub const NO_DELEGATION: &str = "no delegated token (X-Attach-Delegation) came with the task, \
so the agent cannot act for the user";

/// Why a call failed, before it is put in words.
enum CallError {
    Timeout,
    Unreachable(String),
    Status { code: u16, detail: Option<String> },
    NotJson,
}

pub struct Gateway {
    client: reqwest::Client,
    base: String,
    model: String,
    timeout: Duration,
    /// Set for an agent with a DID.
    actor: Option<Actor>,
}

/// The HTTP client for every call to the gateway: no redirects, no proxies
/// from the environment.
pub fn client() -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))
}

impl Gateway {
    pub fn new(
        client: reqwest::Client,
        base: &str,
        model: &str,
        timeout: Duration,
        actor: Option<Actor>,
    ) -> Self {
        Gateway {
            client,
            base: base.trim_end_matches('/').to_string(),
            model: model.to_string(),
            timeout,
            actor,
        }
    }

    /// Why a task without a credential for the user cannot go on.
    pub fn no_caller(&self) -> &'static str {
        match self.actor {
            Some(_) => NO_DELEGATION,
            None => NO_AUTHORIZATION,
        }
    }

    /// The credential for a hand-off to another agent: for a delegated
    /// token, the one the gateway issues in exchange for it and the agent's
    /// own DID-JWT (RFC 8693), so the hand-off proves this agent made it;
    /// a forwarded bearer as it is.
    async fn for_hand_off(&self, auth: &Caller, deadline: Instant) -> Result<Caller, String> {
        let (Caller::Delegated { token }, Some(actor)) = (auth, &self.actor) else {
            return Ok(auth.clone());
        };
        let actor_token = actor.identity.token(
            &actor.audience,
            unix_now(),
            ACTOR_TOKEN_SECS,
            Some(&uuid::Uuid::new_v4().to_string()),
        );
        let form = exchange::request_form(token, &actor_token, None);
        let request = self
            .client
            .post(format!("{}{}", self.base, exchange::TOKEN_PATH))
            .header(ACCEPT, "application/json")
            .form(&form);
        let path = exchange::TOKEN_PATH;
        let exchanged = async {
            let response = request.send().await.map_err(|e| {
                format!(
                    "the gateway could not be reached for {path} ({})",
                    transport_reason(&e)
                )
            })?;
            let status = response.status().as_u16();
            let body = read_capped(response)
                .await
                .map_err(|e| format!("the gateway could not be reached for {path} ({e})"))?;
            exchange::read_reply(status, &body)
        };
        let token = tokio::time::timeout_at(deadline, exchanged)
            .await
            .unwrap_or_else(|_| {
                Err(format!(
                    "the gateway did not answer within {} s ({path})",
                    self.timeout.as_secs_f64()
                ))
            })?;
        Ok(Caller::Delegated { token })
    }

    /// One request, bounded by `deadline` from connecting to the last byte
    /// of the reply; a 2xx JSON reply is the answer.
    async fn call(
        &self,
        request: reqwest::RequestBuilder,
        auth: &Caller,
        deadline: Instant,
    ) -> Result<Value, CallError> {
        let exchange = async {
            let response = auth
                .apply(request)
                .send()
                .await
                .map_err(|e| CallError::Unreachable(transport_reason(&e)))?;
            let status = response.status();
            let body = read_capped(response)
                .await
                .map_err(CallError::Unreachable)?;
            if !status.is_success() {
                return Err(CallError::Status {
                    code: status.as_u16(),
                    detail: error_detail(&body),
                });
            }
            serde_json::from_slice(&body).map_err(|_| CallError::NotJson)
        };
        tokio::time::timeout_at(deadline, exchange)
            .await
            .unwrap_or(Err(CallError::Timeout))
    }

    fn post(&self, path: &str, body: &Value) -> reqwest::RequestBuilder {
        self.client
            .post(format!("{}{path}", self.base))
            .header(CONTENT_TYPE, "application/json")
            .json(body)
    }

    fn deadline(&self) -> Instant {
        Instant::now() + self.timeout
    }

    /// Puts a failed call in words. `who` names the party behind `path`
    /// ("the model engine").
    fn explain(&self, error: CallError, who: &str, path: &str) -> String {
        match error {
            CallError::Timeout => format!(
                "{who} did not answer within {} s ({path})",
                self.timeout.as_secs_f64()
            ),
            CallError::Unreachable(reason) => {
                format!("the gateway could not be reached for {path} ({reason})")
            }
            CallError::NotJson => format!("{who} replied with something other than JSON ({path})"),
            CallError::Status { code, detail } => {
                let said = detail.map(|d| format!(": {d}")).unwrap_or_default();
                match code {
                    401 | 403 => format!(
                        "the gateway refused the credentials for the user (it returned {code} for {path}){said}"
                    ),
                    502..=504 => format!(
                        "{who} is not answering (the gateway returned {code} for {path}){said}"
                    ),
                    _ => format!("{who} failed (the gateway returned {code} for {path}){said}"),
                }
            }
        }
    }

    /// Asks the model; the answer is the reply's `message.content`.
    pub async fn chat(&self, auth: &Caller, system: &str, user: &str) -> Result<String, String> {
        const WHO: &str = "the model engine";
        let body = json!({
            "model": self.model,
            "stream": false,
            "messages": [
                {"role": "system", "content": system},
                {"role": "user", "content": user},
            ],
        });
        let reply = self
            .call(self.post(CHAT_PATH, &body), auth, self.deadline())
            .await
            .map_err(|e| self.explain(e, WHO, CHAT_PATH))?;
        match reply.pointer("/message/content").and_then(Value::as_str) {
            Some(text) if !text.trim().is_empty() => Ok(text.trim().to_string()),
            _ => Err(format!(
                "{WHO} answered without any text (no message.content from {CHAT_PATH})"
            )),
        }
    }

    /// Stores a memory document owned by the caller; its `mem_id`.
    pub async fn remember(
        &self,
        auth: &Caller,
        kind: &str,
        content: Value,
    ) -> Result<String, String> {
        const WHO: &str = "the memory service";
        let body = json!({"kind": kind, "content": content});
        let reply = self
            .call(self.post(MEMORY_PATH, &body), auth, self.deadline())
            .await
            .map_err(|e| self.explain(e, WHO, MEMORY_PATH))?;
        match reply.get("mem_id").and_then(Value::as_str) {
            Some(id) if !id.is_empty() => Ok(id.to_string()),
            _ => Err(format!("{WHO} answered without a mem_id ({MEMORY_PATH})")),
        }
    }

    /// One of the caller's memory documents; `None` when the gateway says
    /// there is no such document for this caller.
    pub async fn recall(
        &self,
        auth: &Caller,
        mem_id: &uuid::Uuid,
    ) -> Result<Option<Value>, String> {
        let path = format!("{MEMORY_PATH}/{mem_id}");
        let request = self.client.get(format!("{}{path}", self.base));
        match self.call(request, auth, self.deadline()).await {
            Ok(document) => Ok(Some(document)),
            Err(CallError::Status { code: 404, .. }) => Ok(None),
            Err(e) => Err(self.explain(e, "the memory service", &path)),
        }
    }

    /// Sends `message` to the agent registered at the gateway as `agent`,
    /// blocking, and polls the task while it is still active; the task once
    /// it has completed. The whole hand-off, polls included, is one call
    /// for the timeout. Any other end is an error that quotes the agent's
    /// status message.
    pub async fn hand_off(
        &self,
        auth: &Caller,
        agent: &str,
        message: Value,
    ) -> Result<Value, String> {
        let path = format!("/a2a/agents/{agent}");
        let who = format!("the {agent} agent");
        let deadline = self.deadline();
        let auth = &self.for_hand_off(auth, deadline).await?;
        let params = json!({"message": message, "configuration": {"returnImmediately": false}});
        let mut task = self
            .rpc(auth, &path, &who, a2a::SEND, params, deadline)
            .await?;
        // A message instead of a task is a finished answer without an id.
        if let Some(message) = task.get("message").cloned() {
            task = json!({"status": {"state": "TASK_STATE_COMPLETED", "message": message}});
        } else if let Some(inner) = task.get("task").cloned() {
            task = inner;
        }
        loop {
            let state = task
                .pointer("/status/state")
                .and_then(Value::as_str)
                .unwrap_or("no state");
            let id = task.get("id").and_then(Value::as_str).unwrap_or_default();
            let said = a2a::message_text(task.pointer("/status/message"))
                .map(|t| format!(": {t}"))
                .unwrap_or_default();
            match state {
                "TASK_STATE_COMPLETED" => return Ok(task),
                "TASK_STATE_SUBMITTED" | "TASK_STATE_WORKING" if !id.is_empty() => {
                    let id = id.to_string();
                    tokio::time::sleep_until((Instant::now() + POLL_INTERVAL).min(deadline)).await;
                    task = self
                        .rpc(auth, &path, &who, a2a::GET, json!({"id": id}), deadline)
                        .await?;
                }
                "TASK_STATE_FAILED" => return Err(format!("the {agent} failed{said}")),
                "TASK_STATE_REJECTED" => return Err(format!("the {agent} refused the task{said}")),
                "TASK_STATE_CANCELED" => {
                    return Err(format!("the {agent}'s task was canceled{said}"));
                }
                "TASK_STATE_INPUT_REQUIRED" | "TASK_STATE_AUTH_REQUIRED" => {
                    return Err(format!(
                        "the {agent} asked for more than this agent can give{said}"
                    ));
                }
                "TASK_STATE_SUBMITTED" | "TASK_STATE_WORKING" => {
                    return Err(format!(
                        "the {agent} left its task unfinished without an id to follow ({path})"
                    ));
                }
                other => {
                    return Err(format!(
                        "the {agent} replied with a task in an unknown state ({}, from {path})",
                        one_line(other)
                    ));
                }
            }
        }
    }

    /// One A2A 1.0 JSON-RPC call through the gateway; its `result`.
    async fn rpc(
        &self,
        auth: &Caller,
        path: &str,
        who: &str,
        method: &str,
        params: Value,
        deadline: Instant,
    ) -> Result<Value, String> {
        let body = json!({
            "jsonrpc": "2.0",
            "id": uuid::Uuid::new_v4().to_string(),
            "method": method,
            "params": params,
        });
        let request = self.post(path, &body).header(a2a::VERSION_HEADER, "1.0");
        let reply = self
            .call(request, auth, deadline)
            .await
            .map_err(|e| self.explain(e, who, path))?;
        if let Some(error) = reply.get("error") {
            let code = error.get("code").and_then(Value::as_i64).unwrap_or(0);
            let message = error
                .get("message")
                .and_then(Value::as_str)
                .map(one_line)
                .unwrap_or_else(|| "no message".into());
            return Err(format!(
                "{who} refused {method} (JSON-RPC error {code} from {path}: {message})"
            ));
        }
        match reply.get("result") {
            Some(result @ Value::Object(_)) => Ok(result.clone()),
            _ => Err(format!(
                "{who} replied to {method} without a result ({path})"
            )),
        }
    }
}

/// A transport failure in words, without the request's URL.
pub fn transport_reason(e: &reqwest::Error) -> String {
    if e.is_connect() {
        return "connection failed".into();
    }
    let mut text = String::from("transport error");
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    one_line(&text)
}

/// What an error reply says, if it says it in JSON: the companion service's
/// `message`, or Ollama's `error`.
fn error_detail(body: &[u8]) -> Option<String> {
    let value: Value = serde_json::from_slice(body).ok()?;
    let text = ["/message", "/error/message", "/error"]
        .iter()
        .find_map(|p| value.pointer(p).and_then(Value::as_str))?;
    let text = one_line(text);
    (!text.is_empty()).then_some(text)
}

async fn read_capped(mut response: reqwest::Response) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| format!("reply cut off: {}", transport_reason(&e)))?
    {
        if body.len() + chunk.len() > MAX_REPLY_BYTES {
            return Err(format!("reply larger than {MAX_REPLY_BYTES} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_details() {
        assert_eq!(
            error_detail(br#"{"error": "unknown_agent", "message": "no agent named \"coder\""}"#)
                .as_deref(),
            Some("no agent named \"coder\"")
        );
        assert_eq!(
            error_detail(br#"{"error": "model 'x' not found"}"#).as_deref(),
            Some("model 'x' not found")
        );
        assert_eq!(error_detail(b"<html>bad gateway</html>"), None);
    }

    #[test]
    fn explanations_name_the_party_and_the_path() {
        let g = Gateway::new(
            client().unwrap(),
            "http://127.0.0.1:9",
            "m",
            Duration::from_secs(120),
            None,
        );
        let e = CallError::Status {
            code: 503,
            detail: None,
        };
        assert_eq!(
            g.explain(e, "the model engine", CHAT_PATH),
            "the model engine is not answering (the gateway returned 503 for /api/chat)"
        );
        assert_eq!(
            g.explain(CallError::Timeout, "the model engine", CHAT_PATH),
            "the model engine did not answer within 120 s (/api/chat)"
        );
        let e = CallError::Status {
            code: 401,
            detail: Some("token expired".into()),
        };
        assert_eq!(
            g.explain(e, "the memory service", MEMORY_PATH),
            "the gateway refused the credentials for the user (it returned 401 for /mem/events): token expired"
        );
    }
}
