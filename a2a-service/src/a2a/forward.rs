//! Calling registered agents.
//!
//! `a2a` agents get a blocking `SendMessage` (1.0) or `message/send` (0.3);
//! a reply still in progress is polled with `GetTask` / `tasks/get` until it
//! settles. Agents that stream get `SendStreamingMessage` /
//! `message/stream` instead, and what they stream before their task ends
//! is reported as it comes. `http` agents get the task input as a JSON POST and their JSON
//! reply is the result. The whole exchange is bounded by the agent's
//! timeout; any failure (transport error, non-2xx, timeout, a reply that is
//! not what the protocol promises) ends the task `failed` with the reason.
//!
//! Agents registered with a DID get the identity and delegated tokens of
//! their hand-off ([`super::handoff`]) and, in A2A messages, the chain in
//! `metadata.actorChain`; the others get the identity headers with an
//! assertion for their audience, and the caller's `Authorization` only
//! with the legacy `forward_bearer`. A chain a caller wrote into the
//! message's metadata is never passed on.

use std::time::{Duration, Instant};

use attach_contract::delegation::A2A_METADATA_MEMBER;
use attach_contract::headers::{ASSERTION_HEADER, SESSION_HEADER, USER_HEADER};
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::ProtocolVersion;
use super::handoff::Handoff;
use super::model::{Artifact, Message, Part, TaskState, parts_from_value, plain_value};
use super::reply::{AgentReply, StreamItem, merge_artifact};
use super::sse::EventReader;
use super::{v0_3, v1};
use crate::auth::{AssertionKey, Caller, unix_now};
use crate::config::{AgentConfig, AgentKind};
use crate::error::one_line;
use crate::metrics::Metrics;
use crate::store::Completion;

/// Largest reply accepted from an agent.
pub const MAX_REPLY_BYTES: usize = 16 * 1024 * 1024;
const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// A finished exchange: how it ends the task, and whether the agent
/// answered with a direct message instead of a task of its own (A2A 1.0
/// section 3.1.1 lets it), which a waiting caller gets as it is.
#[derive(Debug)]
pub struct Exchange {
    pub completion: Completion,
    pub direct_message: bool,
}

/// What a streaming agent reported before its task ended.
#[derive(Debug)]
pub enum Progress {
    /// Still working, with a status message when the agent sent one.
    Status(Option<Message>),
    /// An artifact, or a chunk of one (`append`).
    Artifact {
        artifact: Artifact,
        append: bool,
        last_chunk: bool,
    },
}

type ReplyParser = fn(&Value) -> Result<AgentReply, String>;
type StreamParser = fn(&Value) -> Result<StreamItem, String>;

#[derive(Clone)]
pub struct Forwarder {
    client: reqwest::Client,
    key: AssertionKey,
    metrics: Metrics,
}

/// The identity a forwarded request carries.
pub struct OnBehalfOf<'a> {
    pub caller: &'a Caller,
    pub context_id: &'a str,
    pub task_id: &'a str,
    /// The agent's id for the task when this message continues it.
    pub agent_task_id: Option<&'a str>,
    /// For an agent with a DID: the task's hand-off to it.
    pub handoff: Option<&'a Handoff>,
}

impl Forwarder {
    pub fn new(key: AssertionKey, metrics: Metrics) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            // Identity headers must not follow a redirect to another host.
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Self {
            client,
            key,
            metrics,
        })
    }

    fn headers(&self, agent: &AgentConfig, who: &OnBehalfOf<'_>) -> HeaderMap {
        let mut h = match who.handoff {
            Some(handoff) => handoff.headers(who.caller, unix_now()),
            None => self.asserted_headers(agent, who.caller),
        };
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if agent.kind == AgentKind::A2a && agent.protocol == ProtocolVersion::V1_0 {
            h.insert("a2a-version", HeaderValue::from_static("1.0"));
        }
        h
    }

    /// The identity headers of an agent without a DID: the caller's user
    /// and session with an assertion for the agents' audience, and the
    /// caller's own `Authorization` with `forward_bearer`.
    fn asserted_headers(&self, agent: &AgentConfig, caller: &Caller) -> HeaderMap {
        let mut h = HeaderMap::new();
        let assertion = self.key.sign_for_agent(&caller.user, &caller.session);
        for (name, value) in [
            (USER_HEADER, caller.user.as_str()),
            (SESSION_HEADER, caller.session.as_str()),
            (ASSERTION_HEADER, assertion.as_str()),
        ] {
            if let Ok(v) = HeaderValue::from_str(value) {
                h.insert(name, v);
            }
        }
        if agent.forward_bearer {
            if let Some(v) = caller
                .authorization
                .as_deref()
                .and_then(|a| HeaderValue::from_str(a).ok())
            {
                h.insert(AUTHORIZATION, v);
            }
        }
        h
    }

    /// Runs the task's exchange with `agent` to an end state; with
    /// `progress`, the agent is asked for a stream and what it streams
    /// before the end goes there.
    pub async fn run(
        &self,
        agent: &AgentConfig,
        who: &OnBehalfOf<'_>,
        message: &Message,
        input: &Value,
        progress: Option<mpsc::Sender<Progress>>,
    ) -> Exchange {
        let started = Instant::now();
        let exchange = async {
            match (agent.kind, progress) {
                (AgentKind::Http, _) => self.call_http(agent, who, input).await.map(|c| (c, false)),
                (AgentKind::A2a, None) => self.call_a2a(agent, who, message).await,
                (AgentKind::A2a, Some(progress)) => {
                    self.stream_a2a(agent, who, message, progress).await
                }
            }
        };
        let ((completion, direct_message), outcome) =
            match tokio::time::timeout(agent.timeout, exchange).await {
                Ok(Ok(c)) => (c, "ok"),
                Ok(Err(reason)) => ((failed(reason), false), "error"),
                Err(_) => (
                    (
                        failed(format!(
                            "agent {:?} did not answer within {} s",
                            agent.name,
                            agent.timeout.as_secs_f64()
                        )),
                        false,
                    ),
                    "timeout",
                ),
            };
        self.metrics
            .forward_observed(&agent.name, outcome, started.elapsed());
        let mut completion = completion;
        if let Some(reply) = &mut completion.reply {
            reply.context_id = Some(who.context_id.to_string());
            reply.task_id = Some(who.task_id.to_string());
        }
        Exchange {
            completion,
            direct_message,
        }
    }

    async fn post(
        &self,
        agent: &AgentConfig,
        who: &OnBehalfOf<'_>,
        url: &str,
        body: &Value,
    ) -> Result<Value, String> {
        let name = &agent.name;
        let response = self
            .client
            .post(url)
            .headers(self.headers(agent, who))
            .json(body)
            .send()
            .await
            .map_err(|e| format!("agent {name:?} unreachable: {}", one_line(&error_chain(&e))))?;
        let status = response.status();
        let bytes = read_capped(response)
            .await
            .map_err(|e| format!("agent {name:?} reply unreadable: {e}"))?;
        if !status.is_success() {
            return Err(format!("agent {name:?} answered HTTP {}", status.as_u16()));
        }
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&bytes)
            .map_err(|_| format!("agent {name:?} replied with something other than JSON"))
    }

    async fn call_http(
        &self,
        agent: &AgentConfig,
        who: &OnBehalfOf<'_>,
        input: &Value,
    ) -> Result<Completion, String> {
        let reply = self.post(agent, who, &agent.url, input).await?;
        let parts = parts_from_value(&reply);
        Ok(Completion {
            state: TaskState::Completed,
            reply: Some(Message::agent(parts.clone(), who.context_id, who.task_id)),
            artifacts: vec![Artifact {
                artifact_id: uuid::Uuid::new_v4().to_string(),
                name: Some("result".into()),
                description: None,
                parts,
                metadata: None,
            }],
            result: Some(reply),
            error: None,
            agent_task_id: None,
        })
    }

    async fn rpc(
        &self,
        agent: &AgentConfig,
        who: &OnBehalfOf<'_>,
        method: &str,
        params: Value,
    ) -> Result<Value, String> {
        let request = json!({
            "jsonrpc": "2.0",
            "id": uuid::Uuid::new_v4().to_string(),
            "method": method,
            "params": params,
        });
        let reply = self.post(agent, who, &agent.url, &request).await?;
        if reply.get("error").is_some() {
            return Err(rpc_error(&agent.name, &reply));
        }
        reply
            .get("result")
            .cloned()
            .ok_or_else(|| format!("agent {:?} replied without a result", agent.name))
    }

    async fn call_a2a(
        &self,
        agent: &AgentConfig,
        who: &OnBehalfOf<'_>,
        message: &Message,
    ) -> Result<(Completion, bool), String> {
        let outgoing = outgoing(message, who);
        let (send, get, params, parse): (_, _, _, ReplyParser) = match agent.protocol {
            ProtocolVersion::V1_0 => (
                v1::SEND,
                v1::GET,
                json!({"message": v1::message_json(&outgoing), "configuration": {"returnImmediately": false}}),
                v1::parse_reply,
            ),
            ProtocolVersion::V0_3 => (
                v0_3::SEND,
                v0_3::GET,
                json!({"message": v0_3::message_json(&outgoing), "configuration": {"blocking": true}}),
                v0_3::parse_reply,
            ),
        };
        let mut reply = parse(&self.rpc(agent, who, send, params).await?)?;
        loop {
            match reply {
                AgentReply::Task { ref id, state, .. } if state.is_active() && !id.is_empty() => {
                    tokio::time::sleep(POLL_INTERVAL).await;
                    let id = id.clone();
                    reply = parse(&self.rpc(agent, who, get, json!({"id": id})).await?)?;
                }
                AgentReply::Task { state, .. } if state.is_active() => {
                    return Err(format!(
                        "agent {:?} left its task unfinished without an id",
                        agent.name
                    ));
                }
                other => {
                    let direct = matches!(other, AgentReply::Message(_));
                    return Ok((completion_of(other, &agent.name), direct));
                }
            }
        }
    }

    /// A streamed exchange: the agent's events are read as they come; the
    /// first that ends its task (or a direct message) ends the exchange.
    async fn stream_a2a(
        &self,
        agent: &AgentConfig,
        who: &OnBehalfOf<'_>,
        message: &Message,
        progress: mpsc::Sender<Progress>,
    ) -> Result<(Completion, bool), String> {
        let name = &agent.name;
        let outgoing = outgoing(message, who);
        let (method, params, parse): (_, _, StreamParser) = match agent.protocol {
            ProtocolVersion::V1_0 => (
                v1::STREAMING[0],
                json!({"message": v1::message_json(&outgoing)}),
                v1::parse_stream_event,
            ),
            ProtocolVersion::V0_3 => (
                v0_3::STREAMING[0],
                json!({"message": v0_3::message_json(&outgoing)}),
                v0_3::parse_stream_event,
            ),
        };
        let request = json!({
            "jsonrpc": "2.0",
            "id": uuid::Uuid::new_v4().to_string(),
            "method": method,
            "params": params,
        });
        let mut response = self
            .client
            .post(&agent.url)
            .headers(self.headers(agent, who))
            .header(ACCEPT, "text/event-stream")
            .json(&request)
            .send()
            .await
            .map_err(|e| format!("agent {name:?} unreachable: {}", one_line(&error_chain(&e))))?;
        let status = response.status();
        if !status.is_success() {
            return Err(format!("agent {name:?} answered HTTP {}", status.as_u16()));
        }
        let is_stream = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim_start().starts_with("text/event-stream"));
        if !is_stream {
            // A JSON-RPC error comes back as a plain JSON answer.
            let bytes = read_capped(response)
                .await
                .map_err(|e| format!("agent {name:?} reply unreadable: {e}"))?;
            return Err(match serde_json::from_slice::<Value>(&bytes) {
                Ok(reply) if reply.get("error").is_some() => rpc_error(name, &reply),
                _ => format!("agent {name:?} answered a stream request without a stream"),
            });
        }
        let mut reader = EventReader::new(MAX_REPLY_BYTES);
        let mut run = StreamRun::default();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| format!("agent {name:?} stream broke: {}", one_line(&e.to_string())))?
        {
            for data in reader.feed(&chunk)? {
                let envelope: Value = serde_json::from_str(&data)
                    .map_err(|_| format!("agent {name:?} streamed something other than JSON"))?;
                if envelope.get("error").is_some() {
                    return Err(rpc_error(name, &envelope));
                }
                let result = envelope
                    .get("result")
                    .ok_or_else(|| format!("agent {name:?} streamed an event without a result"))?;
                let item = parse(result).map_err(|e| format!("agent {name:?}: {e}"))?;
                if let Some(end) = run.take(item, &progress, name).await {
                    return Ok(end);
                }
            }
        }
        Err(format!(
            "agent {name:?} ended its stream before its task ended"
        ))
    }
}

/// `message` as the agent gets it: under the agent's own task id (ours
/// stay with us), with the hand-off's chain in `metadata.actorChain` and
/// no chain of the caller's writing.
fn outgoing(message: &Message, who: &OnBehalfOf<'_>) -> Message {
    let mut outgoing = message.clone();
    outgoing.task_id = who.agent_task_id.map(str::to_string);
    if let Some(metadata) = &mut outgoing.metadata {
        metadata.remove(A2A_METADATA_MEMBER);
    }
    if let Some(handoff) = who.handoff {
        outgoing
            .metadata
            .get_or_insert_with(Default::default)
            .insert(A2A_METADATA_MEMBER.into(), json!(handoff.chain().actors()));
    }
    if outgoing.metadata.as_ref().is_some_and(|m| m.is_empty()) {
        outgoing.metadata = None;
    }
    outgoing
}

/// What a streamed exchange has seen so far.
#[derive(Default)]
struct StreamRun {
    agent_task_id: String,
    artifacts: Vec<Artifact>,
}

impl StreamRun {
    /// Takes one streamed event: the exchange's end when the event ends
    /// the agent's task, else `None` after reporting it.
    async fn take(
        &mut self,
        item: StreamItem,
        progress: &mpsc::Sender<Progress>,
        agent: &str,
    ) -> Option<(Completion, bool)> {
        // A closed channel means nobody records reports any more; the
        // exchange still runs to its end.
        let report = |p: Progress| async move {
            let _ = progress.send(p).await;
        };
        match item {
            StreamItem::Reply(AgentReply::Message(m)) => {
                Some((completion_of(AgentReply::Message(m), agent), true))
            }
            StreamItem::Reply(AgentReply::Task {
                id,
                state,
                status_message,
                artifacts,
                history,
            }) => {
                if !id.is_empty() {
                    self.agent_task_id = id;
                }
                for artifact in artifacts {
                    merge_artifact(&mut self.artifacts, artifact, false);
                }
                if state.is_active() {
                    report(Progress::Status(status_message)).await;
                    return None;
                }
                Some(self.end(state, status_message, history, agent))
            }
            StreamItem::Status { state, message } if state.is_active() => {
                report(Progress::Status(message)).await;
                None
            }
            StreamItem::Status { state, message } => {
                Some(self.end(state, message, Vec::new(), agent))
            }
            StreamItem::Artifact {
                artifact,
                append,
                last_chunk,
            } => {
                merge_artifact(&mut self.artifacts, artifact.clone(), append);
                report(Progress::Artifact {
                    artifact,
                    append,
                    last_chunk,
                })
                .await;
                None
            }
        }
    }

    fn end(
        &mut self,
        state: TaskState,
        status_message: Option<Message>,
        history: Vec<Message>,
        agent: &str,
    ) -> (Completion, bool) {
        let reply = AgentReply::Task {
            id: std::mem::take(&mut self.agent_task_id),
            state,
            status_message,
            artifacts: std::mem::take(&mut self.artifacts),
            history,
        };
        (completion_of(reply, agent), false)
    }
}

/// A JSON-RPC error answer as the task's failure reason.
fn rpc_error(agent: &str, reply: &Value) -> String {
    let error = &reply["error"];
    let code = error.get("code").and_then(Value::as_i64).unwrap_or(0);
    let message = error
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or("no message");
    format!(
        "agent {agent:?} returned error {code}: {}",
        one_line(message)
    )
}

fn failed(reason: String) -> Completion {
    Completion {
        state: TaskState::Failed,
        reply: None,
        artifacts: Vec::new(),
        result: None,
        error: Some(reason),
        agent_task_id: None,
    }
}

fn text_of(message: &Message) -> Option<String> {
    let texts: Vec<&str> = message
        .parts
        .iter()
        .filter_map(|p| match p {
            Part::Text { text, .. } => Some(text.as_str()),
            _ => None,
        })
        .collect();
    (!texts.is_empty()).then(|| texts.join(" "))
}

/// Maps an agent's final answer onto our task.
fn completion_of(reply: AgentReply, agent: &str) -> Completion {
    match reply {
        AgentReply::Message(m) => {
            let artifacts = vec![Artifact {
                artifact_id: uuid::Uuid::new_v4().to_string(),
                name: Some("response".into()),
                description: None,
                parts: m.parts.clone(),
                metadata: None,
            }];
            Completion {
                state: TaskState::Completed,
                result: Some(m.plain_value()),
                reply: Some(m),
                artifacts,
                error: None,
                agent_task_id: None,
            }
        }
        AgentReply::Task {
            id,
            state,
            status_message,
            artifacts,
            history,
            ..
        } => {
            let reply = status_message.or_else(|| {
                history
                    .into_iter()
                    .rev()
                    .find(|m| m.role == super::model::Role::Agent)
            });
            let result_parts: Vec<Part> = if artifacts.is_empty() {
                reply.as_ref().map(|m| m.parts.clone()).unwrap_or_default()
            } else {
                artifacts.iter().flat_map(|a| a.parts.clone()).collect()
            };
            let error = match state {
                TaskState::Failed | TaskState::Rejected => Some(
                    reply
                        .as_ref()
                        .and_then(text_of)
                        .map(|t| {
                            format!(
                                "agent {agent:?} reported {}: {}",
                                state.as_str(),
                                one_line(&t)
                            )
                        })
                        .unwrap_or_else(|| format!("agent {agent:?} reported {}", state.as_str())),
                ),
                _ => None,
            };
            Completion {
                state,
                result: (!result_parts.is_empty()).then(|| plain_value(&result_parts)),
                reply,
                artifacts,
                error,
                agent_task_id: (!id.is_empty()).then_some(id),
            }
        }
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

async fn read_capped(mut response: reqwest::Response) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| one_line(&e.to_string()))?
    {
        if body.len() + chunk.len() > MAX_REPLY_BYTES {
            return Err(format!("larger than {MAX_REPLY_BYTES} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
