//! Delivery: every state change of a task with webhooks is POSTed to each
//! of them (A2A 1.0 section 4.3.3: a `StreamResponse` holding the task; a
//! 0.3 config gets the 0.3 task), off the request path. A change is queued
//! and the caller goes on at once; a full queue drops the change (counted),
//! never the request. Deliveries for one task go out in the order of its
//! changes; a failed one is retried with exponential backoff, a bounded
//! number of times, each attempt bounded in time (section 13.2 recommends
//! 10-30 s); redirects are not followed, since their target was never
//! checked. Failures are logged (task id and host, never the URL's path or
//! any credential) and counted.

use std::collections::HashMap;
use std::error::Error as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use serde_json::json;
use tokio::sync::{Semaphore, oneshot};

use super::resolve::{GuardRefusal, GuardedResolver};
use super::settings::PushSettings;
use super::ssrf;
use crate::a2a::model::Task;
use crate::a2a::{ProtocolVersion, v0_3, v1};
use crate::metrics::Metrics;
use crate::store::{PushConfig, Store};

/// State changes queued or being delivered, across all tasks.
const QUEUE_MAX: usize = 1024;
/// Deliveries in flight at once.
const CONCURRENCY: usize = 16;
/// Attempts per delivery, the first included.
const ATTEMPTS: u32 = 4;
/// Wait before the first retry; doubled for each next one.
const BACKOFF: Duration = Duration::from_millis(500);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The header that carries a config's `token` (the name A2A SDKs use).
const TOKEN_HEADER: &str = "x-a2a-notification-token";

/// Sends push notifications; does nothing when push is off.
#[derive(Clone)]
pub struct Pusher {
    settings: PushSettings,
    worker: Option<Arc<Worker>>,
}

struct Worker {
    store: Store,
    metrics: Metrics,
    client: reqwest::Client,
    allow: ssrf::AllowList,
    pending: AtomicUsize,
    permits: Semaphore,
    /// Per task, a receiver that resolves when its latest queued change
    /// has been delivered; the next change waits for it.
    chains: Mutex<HashMap<String, oneshot::Receiver<()>>>,
}

enum Failure {
    Retry(String),
    Final(String),
}

impl Pusher {
    pub fn new(settings: PushSettings, store: Store, metrics: Metrics) -> Result<Self, String> {
        let worker = if settings.enabled {
            let client = reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .no_proxy()
                .timeout(REQUEST_TIMEOUT)
                .connect_timeout(CONNECT_TIMEOUT)
                .dns_resolver(Arc::new(GuardedResolver {
                    allow: settings.allow.clone(),
                }))
                .build()
                .map_err(|e| format!("cannot build the push HTTP client: {e}"))?;
            Some(Arc::new(Worker {
                store,
                metrics,
                client,
                allow: settings.allow.clone(),
                pending: AtomicUsize::new(0),
                permits: Semaphore::new(CONCURRENCY),
                chains: Mutex::new(HashMap::new()),
            }))
        } else {
            None
        };
        Ok(Pusher { settings, worker })
    }

    pub fn enabled(&self) -> bool {
        self.settings.enabled
    }

    pub fn allow(&self) -> &ssrf::AllowList {
        &self.settings.allow
    }

    /// Queues `task`, as it is now, for its webhooks. Must be called from
    /// within the runtime.
    pub fn notify(&self, task: &Task) {
        let Some(worker) = &self.worker else {
            return;
        };
        if worker
            .pending
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < QUEUE_MAX).then_some(n + 1)
            })
            .is_err()
        {
            worker.metrics.push_dropped();
            eprintln!(
                "attach-a2a: push queue full; dropped the change of task {} to {}",
                task.id,
                task.state.as_str()
            );
            return;
        }
        let (done, next) = oneshot::channel();
        let previous = match worker.chains.lock() {
            Ok(mut chains) => {
                // Chains whose last change went out are no longer needed.
                if chains.len() >= QUEUE_MAX {
                    chains.retain(|_, rx| {
                        matches!(rx.try_recv(), Err(oneshot::error::TryRecvError::Empty))
                    });
                }
                if task.state.is_terminal() {
                    chains.remove(&task.id)
                } else {
                    chains.insert(task.id.clone(), next)
                }
            }
            Err(_) => None,
        };
        tokio::spawn(worker.clone().run(task.clone(), previous, done));
    }
}

impl Worker {
    async fn run(
        self: Arc<Self>,
        task: Task,
        previous: Option<oneshot::Receiver<()>>,
        done: oneshot::Sender<()>,
    ) {
        if let Some(previous) = previous {
            // An error only means the previous delivery is over.
            let _ = previous.await;
        }
        self.deliver_all(&task).await;
        self.pending.fetch_sub(1, Ordering::AcqRel);
        drop(done);
    }

    async fn deliver_all(self: &Arc<Self>, task: &Task) {
        let configs = match self.store.list_push_configs(&task.owner, &task.id).await {
            Ok(c) => c,
            Err(e) => {
                self.metrics.store_error();
                eprintln!(
                    "attach-a2a: cannot read push configs of task {}: {}",
                    task.id,
                    crate::error::one_line(&e.to_string())
                );
                return;
            }
        };
        let mut deliveries = tokio::task::JoinSet::new();
        for config in configs {
            let worker = self.clone();
            let body = payload(task, &config).to_string();
            deliveries.spawn(async move { worker.deliver(&config, body).await });
        }
        while deliveries.join_next().await.is_some() {}
    }

    async fn deliver(&self, config: &PushConfig, body: String) {
        let Ok(_permit) = self.permits.acquire().await else {
            return;
        };
        let mut reason = String::new();
        for attempt in 1..=ATTEMPTS {
            match self.attempt(config, body.clone()).await {
                Ok(()) => {
                    self.metrics.push_delivered();
                    return;
                }
                Err(Failure::Final(why)) => {
                    reason = why;
                    break;
                }
                Err(Failure::Retry(why)) => {
                    reason = why;
                    if attempt < ATTEMPTS {
                        self.metrics.push_retried();
                        tokio::time::sleep(BACKOFF * 2u32.pow(attempt - 1)).await;
                    }
                }
            }
        }
        self.metrics.push_failed();
        eprintln!(
            "attach-a2a: push for task {} to {} failed: {reason}",
            config.task_id,
            host_of(&config.url)
        );
    }

    async fn attempt(&self, config: &PushConfig, body: String) -> Result<(), Failure> {
        // A name is checked by the resolver as it connects; an address in
        // the URL never reaches a resolver, so it is checked here.
        ssrf::check_url(&config.url, &self.allow).map_err(|r| Failure::Final(r.to_string()))?;
        let mut request = self
            .client
            .post(&config.url)
            .header(header::CONTENT_TYPE, "application/json")
            .body(body);
        if let Some(scheme) = &config.auth_scheme {
            let value = match &config.auth_credentials {
                Some(credentials) => format!("{scheme} {credentials}"),
                None => scheme.clone(),
            };
            let value = HeaderValue::from_str(&value)
                .map_err(|_| Failure::Final("unusable authentication".into()))?;
            request = request.header(header::AUTHORIZATION, value);
        }
        if let Some(token) = &config.token {
            let value = HeaderValue::from_str(token)
                .map_err(|_| Failure::Final("unusable token".into()))?;
            request = request.header(TOKEN_HEADER, value);
        }
        let response = request.send().await.map_err(|e| {
            let mut source = e.source();
            while let Some(s) = source {
                if let Some(refused) = s.downcast_ref::<GuardRefusal>() {
                    return Failure::Final(refused.to_string());
                }
                source = s.source();
            }
            if e.is_timeout() {
                Failure::Retry("no answer in time".into())
            } else {
                Failure::Retry("cannot connect".into())
            }
        })?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else if status.is_server_error()
            || status == StatusCode::REQUEST_TIMEOUT
            || status == StatusCode::TOO_MANY_REQUESTS
        {
            Err(Failure::Retry(format!("answered {}", status.as_u16())))
        } else if status.is_redirection() {
            Err(Failure::Final(format!(
                "answered {} (redirects are not followed)",
                status.as_u16()
            )))
        } else {
            Err(Failure::Final(format!("answered {}", status.as_u16())))
        }
    }
}

/// What a webhook receives for `task`, in the version its config was made with.
fn payload(task: &Task, config: &PushConfig) -> serde_json::Value {
    match ProtocolVersion::parse(&config.protocol) {
        Some(ProtocolVersion::V0_3) => v0_3::task_json(task, None),
        _ => json!({"task": v1::task_json(task, None, true)}),
    }
}

/// The host (and port) of a webhook URL, for logs.
fn host_of(url: &str) -> String {
    reqwest::Url::parse(url)
        .ok()
        .and_then(|u| {
            let host = u.host_str()?.to_string();
            Some(match u.port() {
                Some(p) => format!("{host}:{p}"),
                None => host,
            })
        })
        .unwrap_or_else(|| "an unparsable URL".into())
}
