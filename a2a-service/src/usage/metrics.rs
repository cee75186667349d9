//! The usage series of `/metrics`: tokens and requests per model and
//! route (and per user only when `ATTACH_USAGE_USER_LABELS=true`), each
//! record counted once, when it is first stored; the syncs; the export
//! outbox.
//!
//! Model names come from requests, so the label is bounded: the first
//! [`MAX_MODEL_LABELS`] distinct models keep their name, later ones are
//! counted as `other`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use attach_contract::usage::{Outcome, Record};

use crate::metrics::escape;

pub const MAX_MODEL_LABELS: usize = 64;
/// The model label of models past [`MAX_MODEL_LABELS`].
pub const OTHER_MODEL: &str = "other";

/// model, route, user (when labelled).
type Series = (String, String, Option<String>);

#[derive(Default)]
struct Counts {
    models: BTreeSet<String>,
    tokens_in: BTreeMap<Series, u64>,
    tokens_out: BTreeMap<Series, u64>,
    requests: BTreeMap<(Series, &'static str), u64>,
}

impl Counts {
    fn model_label(&mut self, model: &str) -> String {
        if self.models.contains(model) {
            return model.to_string();
        }
        if self.models.len() < MAX_MODEL_LABELS {
            self.models.insert(model.to_string());
            return model.to_string();
        }
        OTHER_MODEL.to_string()
    }
}

#[derive(Default)]
pub struct UsageMeter {
    counts: Mutex<Counts>,
    sync_batches: AtomicU64,
    outbox_pending: AtomicU64,
    outbox_delivered: AtomicU64,
    outbox_failures: AtomicU64,
    outbox_dropped: AtomicU64,
}

impl UsageMeter {
    /// Counts a record the store took for the first time.
    pub fn record(&self, r: &Record, user_label: bool) {
        let Ok(mut counts) = self.counts.lock() else {
            return;
        };
        let series = (
            counts.model_label(&r.model),
            r.route.clone(),
            user_label.then(|| r.user.clone()),
        );
        if r.outcome != Outcome::Refused {
            *counts.tokens_in.entry(series.clone()).or_default() += r.tokens_in;
            *counts.tokens_out.entry(series.clone()).or_default() += r.tokens_out;
        }
        *counts
            .requests
            .entry((series, r.outcome.as_str()))
            .or_default() += 1;
    }

    pub fn sync_batch(&self) {
        self.sync_batches.fetch_add(1, Ordering::Relaxed);
    }

    /// How many events wait in the outbox (the store's count).
    pub fn outbox_pending(&self, n: u64) {
        self.outbox_pending.store(n, Ordering::Relaxed);
    }

    pub fn outbox_delivered(&self, n: u64) {
        self.outbox_delivered.fetch_add(n, Ordering::Relaxed);
    }

    pub fn outbox_failure(&self) {
        self.outbox_failures.fetch_add(1, Ordering::Relaxed);
    }

    pub fn outbox_dropped(&self, n: u64) {
        self.outbox_dropped.fetch_add(n, Ordering::Relaxed);
    }

    pub fn render(&self, out: &mut String) {
        let labels = |(model, route, user): &Series| {
            let mut text = format!("model=\"{}\",route=\"{}\"", escape(model), escape(route));
            if let Some(user) = user {
                let _ = write!(text, ",user=\"{}\"", escape(user));
            }
            text
        };
        let _ = writeln!(
            out,
            "# HELP attach_usage_tokens_total Model tokens the gateways reported, by direction."
        );
        let _ = writeln!(out, "# TYPE attach_usage_tokens_total counter");
        if let Ok(counts) = self.counts.lock() {
            for (direction, map) in [("in", &counts.tokens_in), ("out", &counts.tokens_out)] {
                for (series, n) in map {
                    let _ = writeln!(
                        out,
                        "attach_usage_tokens_total{{direction=\"{direction}\",{}}} {n}",
                        labels(series)
                    );
                }
            }
            let _ = writeln!(
                out,
                "# HELP attach_usage_requests_total Model calls the gateways reported, by outcome (refused: the budget refused them)."
            );
            let _ = writeln!(out, "# TYPE attach_usage_requests_total counter");
            for ((series, outcome), n) in &counts.requests {
                let _ = writeln!(
                    out,
                    "attach_usage_requests_total{{{},outcome=\"{outcome}\"}} {n}",
                    labels(series)
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP attach_usage_outbox_events Usage events waiting for export."
        );
        let _ = writeln!(out, "# TYPE attach_usage_outbox_events gauge");
        let _ = writeln!(
            out,
            "attach_usage_outbox_events {}",
            self.outbox_pending.load(Ordering::Relaxed)
        );
        let counters = [
            (
                "attach_usage_sync_batches_total",
                "Usage batches the gateways synced.",
                &self.sync_batches,
            ),
            (
                "attach_usage_outbox_delivered_total",
                "Usage events the collector accepted.",
                &self.outbox_delivered,
            ),
            (
                "attach_usage_outbox_failures_total",
                "Usage export deliveries that failed and are retried.",
                &self.outbox_failures,
            ),
            (
                "attach_usage_outbox_dropped_total",
                "Usage events dropped unexported, the oldest past USAGE_OUTBOX_MAX.",
                &self.outbox_dropped,
            ),
        ];
        for (name, help, value) in counters {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} counter");
            let _ = writeln!(out, "{name} {}", value.load(Ordering::Relaxed));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(model: &str, outcome: Outcome) -> Record {
        Record {
            id: "r".into(),
            user: "alice".into(),
            model: model.into(),
            route: "/api/chat".into(),
            at_ms: 1,
            tokens_in: 2,
            tokens_out: 3,
            estimated: false,
            outcome,
        }
    }

    fn rendered(m: &UsageMeter) -> String {
        let mut out = String::new();
        m.render(&mut out);
        out
    }

    #[test]
    fn tokens_and_requests_per_model_and_route() {
        let m = UsageMeter::default();
        m.record(&record("llama3", Outcome::Complete), false);
        m.record(&record("llama3", Outcome::Complete), false);
        m.record(&record("llama3", Outcome::Refused), false);
        let text = rendered(&m);
        assert!(text.contains(
            "attach_usage_tokens_total{direction=\"in\",model=\"llama3\",route=\"/api/chat\"} 4\n"
        ));
        assert!(text.contains(
            "attach_usage_tokens_total{direction=\"out\",model=\"llama3\",route=\"/api/chat\"} 6\n"
        ));
        assert!(text.contains(
            "attach_usage_requests_total{model=\"llama3\",route=\"/api/chat\",outcome=\"refused\"} 1\n"
        ));
        assert!(!text.contains("user="));
        m.record(&record("llama3", Outcome::Stopped), true);
        assert!(rendered(&m).contains(
            "attach_usage_requests_total{model=\"llama3\",route=\"/api/chat\",user=\"alice\",outcome=\"stopped\"} 1\n"
        ));
    }

    #[test]
    fn model_labels_are_capped() {
        let m = UsageMeter::default();
        for i in 0..MAX_MODEL_LABELS + 3 {
            m.record(&record(&format!("m{i}"), Outcome::Complete), false);
        }
        // A model seen before the cap keeps its name.
        m.record(&record("m0", Outcome::Complete), false);
        let text = rendered(&m);
        assert!(text.contains(
            "attach_usage_requests_total{model=\"other\",route=\"/api/chat\",outcome=\"complete\"} 3\n"
        ));
        assert!(text.contains(
            "attach_usage_requests_total{model=\"m0\",route=\"/api/chat\",outcome=\"complete\"} 2\n"
        ));
        assert!(!text.contains(&format!("model=\"m{MAX_MODEL_LABELS}\"")));
    }
}
