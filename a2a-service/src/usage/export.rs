//! Usage export as CloudEvents (`USAGE_METERING=cloudevents`): each new
//! record but a refusal becomes two events, its input and its output
//! tokens, written to the outbox in the sync's own transaction; a
//! background task posts them to `USAGE_URL` in batches
//! (`application/cloudevents-batch+json`, which OpenMeter's ingest takes),
//! so no request ever waits on the collector.
//!
//! A batch the collector accepts (2xx) leaves the outbox; any other
//! answer, or none, makes it due again after a backoff that doubles up to
//! [`MAX_BACKOFF`]. An event's id is its record's (`{id}/input`), so a
//! collector that deduplicates by `source` and `id` counts a retried
//! batch once. The outbox keeps at most `USAGE_OUTBOX_MAX` events: past
//! it the oldest are dropped, and counted. Rows are leased while a
//! delivery holds them, so replicas sharing the store each send their own.

use std::time::Duration;

use attach_contract::timestamp::rfc3339_millis;
use attach_contract::usage::{Outcome, Record};
use serde_json::json;

use crate::a2a::model::now_ms;
use crate::config::ExportConfig;
use crate::error::one_line;
use crate::metrics::Metrics;
use crate::state::AppState;
use crate::store::{OutboxEvent, Store};

/// The `source` of every event.
pub const SOURCE: &str = "attach-gateway";
/// The `type` of every event.
pub const EVENT_TYPE: &str = "tokens";
pub const CONTENT_TYPE: &str = "application/cloudevents-batch+json";
/// The most events one delivery posts.
pub const BATCH_EVENTS: i64 = 100;
pub const FIRST_BACKOFF: Duration = Duration::from_secs(1);
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// How long one delivery may take.
const TIMEOUT: Duration = Duration::from_secs(10);
/// How long a delivery holds its events: longer than it may take.
const LEASE: Duration = Duration::from_secs(30);
/// How often the task looks for events when it found none.
const IDLE: Duration = Duration::from_secs(1);

/// The events of a record: none for a refusal, else its input and its
/// output tokens.
pub fn events(r: &Record) -> Vec<OutboxEvent> {
    if r.outcome == Outcome::Refused {
        return Vec::new();
    }
    [("input", r.tokens_in), ("output", r.tokens_out)]
        .into_iter()
        .map(|(kind, tokens)| {
            let id = format!("{}/{kind}", r.id);
            let event = json!({
                "specversion": "1.0",
                "id": id,
                "source": SOURCE,
                "type": EVENT_TYPE,
                "subject": r.user,
                "time": rfc3339_millis(r.at_ms),
                "data": {"tokens": tokens, "model": r.model, "type": kind, "route": r.route},
            });
            OutboxEvent {
                id,
                body: event.to_string(),
            }
        })
        .collect()
}

/// What one delivery did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// No event was due.
    Idle,
    /// The collector accepted this many.
    Delivered(usize),
    /// The collector refused them, or could not be reached: they are due
    /// again after the backoff.
    Failed,
}

/// Posts the outbox's events to the collector.
pub struct Exporter {
    client: reqwest::Client,
    config: ExportConfig,
}

impl Exporter {
    pub fn new(config: &ExportConfig) -> Result<Self, String> {
        // The URL is the operator's, yet an answer must not send the
        // events, or the key, anywhere else.
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(TIMEOUT)
            .build()
            .map_err(|e| format!("cannot build the usage export client: {e}"))?;
        Ok(Exporter {
            client,
            config: config.clone(),
        })
    }

    /// Drops the oldest events past `USAGE_OUTBOX_MAX`, and reports how
    /// many wait.
    pub async fn trim(&self, store: &Store, metrics: &Metrics) {
        let trimmed = store.trim_outbox(self.config.outbox_max).await;
        let pending = store.outbox_len().await;
        match trimmed.and_then(|dropped| pending.map(|n| (dropped, n))) {
            Ok((dropped, pending)) => {
                if let Some(meter) = metrics.usage() {
                    meter.outbox_dropped(dropped);
                    meter.outbox_pending(pending);
                }
                if dropped > 0 {
                    eprintln!(
                        "attach-a2a: usage export: dropped the {dropped} oldest event(s) past USAGE_OUTBOX_MAX"
                    );
                }
            }
            Err(e) => {
                metrics.store_error();
                eprintln!("attach-a2a: usage outbox: {}", one_line(&e.to_string()));
            }
        }
    }

    /// Posts the oldest events due at `now_ms` (at most [`BATCH_EVENTS`]);
    /// those that fail are due again `retry_in` later.
    pub async fn deliver_once(
        &self,
        store: &Store,
        metrics: &Metrics,
        now_ms: i64,
        retry_in: Duration,
    ) -> Delivery {
        let lease_until = now_ms.saturating_add(millis(LEASE));
        let items = match store.claim_outbox(now_ms, lease_until, BATCH_EVENTS).await {
            Ok(items) => items,
            Err(e) => {
                metrics.store_error();
                eprintln!("attach-a2a: usage outbox: {}", one_line(&e.to_string()));
                return Delivery::Failed;
            }
        };
        if items.is_empty() {
            return Delivery::Idle;
        }
        let seqs: Vec<i64> = items.iter().map(|i| i.seq).collect();
        let body = format!(
            "[{}]",
            items
                .iter()
                .map(|i| i.body.as_str())
                .collect::<Vec<_>>()
                .join(",")
        );
        let mut request = self
            .client
            .post(&self.config.url)
            .header(reqwest::header::CONTENT_TYPE, CONTENT_TYPE)
            .body(body);
        if let Some(key) = &self.config.api_key {
            request = request.bearer_auth(key);
        }
        let refused = match request.send().await {
            Ok(answer) if answer.status().is_success() => None,
            Ok(answer) => Some(format!("the collector answered {}", answer.status())),
            Err(e) => Some(format!(
                "cannot reach the collector: {}",
                one_line(&e.to_string())
            )),
        };
        let meter = metrics.usage();
        let stored = match &refused {
            None => store.delete_outbox(&seqs).await,
            Some(_) => {
                store
                    .release_outbox(&seqs, now_ms.saturating_add(millis(retry_in)))
                    .await
            }
        };
        if let Err(e) = stored {
            // The lease runs out and the events are sent again.
            metrics.store_error();
            eprintln!("attach-a2a: usage outbox: {}", one_line(&e.to_string()));
        }
        match refused {
            None => {
                if let Some(meter) = meter {
                    meter.outbox_delivered(seqs.len() as u64);
                }
                Delivery::Delivered(seqs.len())
            }
            Some(reason) => {
                if let Some(meter) = meter {
                    meter.outbox_failure();
                }
                eprintln!(
                    "attach-a2a: usage export of {} event(s) failed, retried in {}s: {reason}",
                    seqs.len(),
                    retry_in.as_secs()
                );
                Delivery::Failed
            }
        }
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The next backoff after a failure.
pub fn next_backoff(current: Duration) -> Duration {
    current.saturating_mul(2).min(MAX_BACKOFF)
}

/// Runs the export for as long as the service does, when it exports.
pub fn spawn(state: &AppState) -> Result<Option<tokio::task::JoinHandle<()>>, String> {
    let crate::config::Metering::CloudEvents(config) = &state.config.usage.metering else {
        return Ok(None);
    };
    let exporter = Exporter::new(config)?;
    let state = state.clone();
    Ok(Some(tokio::spawn(async move {
        let mut backoff = FIRST_BACKOFF;
        loop {
            exporter.trim(&state.store, &state.metrics).await;
            let pause = match exporter
                .deliver_once(&state.store, &state.metrics, now_ms(), backoff)
                .await
            {
                Delivery::Delivered(n) => {
                    backoff = FIRST_BACKOFF;
                    if n as i64 == BATCH_EVENTS {
                        continue;
                    }
                    IDLE
                }
                Delivery::Idle => IDLE,
                Delivery::Failed => {
                    let pause = backoff;
                    backoff = next_backoff(backoff);
                    pause
                }
            };
            tokio::time::sleep(pause).await;
        }
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_makes_an_input_and_an_output_event() {
        let r = Record {
            id: "req-1".into(),
            user: "alice".into(),
            model: "llama3".into(),
            route: "/api/chat".into(),
            at_ms: 1_765_000_000_123,
            tokens_in: 12,
            tokens_out: 40,
            estimated: false,
            outcome: Outcome::Complete,
        };
        let events = events(&r);
        let values: Vec<serde_json::Value> = events
            .iter()
            .map(|e| serde_json::from_str(&e.body).unwrap())
            .collect();
        assert_eq!(
            values[0],
            json!({"specversion": "1.0", "id": "req-1/input", "source": "attach-gateway",
                   "type": "tokens", "subject": "alice", "time": "2025-12-06T05:46:40.123Z",
                   "data": {"tokens": 12, "model": "llama3", "type": "input", "route": "/api/chat"}})
        );
        assert_eq!(values[1]["id"], "req-1/output");
        assert_eq!(values[1]["data"]["tokens"], 40);
        assert_eq!(events[1].id, "req-1/output");
        let refused = Record {
            outcome: Outcome::Refused,
            ..r
        };
        assert!(super::events(&refused).is_empty());
    }

    #[test]
    fn backoff_doubles_to_a_minute() {
        assert_eq!(next_backoff(FIRST_BACKOFF), Duration::from_secs(2));
        assert_eq!(next_backoff(Duration::from_secs(40)), MAX_BACKOFF);
        assert_eq!(next_backoff(MAX_BACKOFF), MAX_BACKOFF);
    }
}
