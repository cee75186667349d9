//! Prometheus text exposition, by hand. Labels are task states, agent names
//! (from configuration) and outcomes; never user ids, except on the usage
//! series when asked for ([`crate::usage::metrics`]).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::a2a::model::TaskState;
use crate::usage::metrics::UsageMeter;

const BUCKETS: [f64; 11] = [0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0];

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

#[derive(Default)]
struct Inner {
    transitions: [AtomicU64; TaskState::ALL.len()],
    store_errors: AtomicU64,
    memory_backend_errors: AtomicU64,
    auth_rejected: AtomicU64,
    handler_panics: AtomicU64,
    push_delivered: AtomicU64,
    push_retried: AtomicU64,
    push_failed: AtomicU64,
    push_dropped: AtomicU64,
    forward: Mutex<BTreeMap<(String, &'static str), Histogram>>,
    /// `None` with `USAGE_METERING=off`.
    usage: Option<UsageMeter>,
}

#[derive(Clone, Default)]
pub struct Metrics(Arc<Inner>);

impl Metrics {
    /// The service's metrics, with the usage series or without.
    pub fn new(usage: bool) -> Self {
        Metrics(Arc::new(Inner {
            usage: usage.then(UsageMeter::default),
            ..Inner::default()
        }))
    }

    pub fn usage(&self) -> Option<&UsageMeter> {
        self.0.usage.as_ref()
    }

    pub fn transition(&self, state: TaskState) {
        if let Some(i) = TaskState::ALL.iter().position(|s| *s == state) {
            self.0.transitions[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn store_error(&self) {
        self.0.store_errors.fetch_add(1, Ordering::Relaxed);
    }

    pub fn memory_backend_error(&self) {
        self.0.memory_backend_errors.fetch_add(1, Ordering::Relaxed);
    }

    pub fn auth_rejected(&self) {
        self.0.auth_rejected.fetch_add(1, Ordering::Relaxed);
    }

    pub fn handler_panic(&self) {
        self.0.handler_panics.fetch_add(1, Ordering::Relaxed);
    }

    pub fn push_delivered(&self) {
        self.0.push_delivered.fetch_add(1, Ordering::Relaxed);
    }

    pub fn push_retried(&self) {
        self.0.push_retried.fetch_add(1, Ordering::Relaxed);
    }

    pub fn push_failed(&self) {
        self.0.push_failed.fetch_add(1, Ordering::Relaxed);
    }

    pub fn push_dropped(&self) {
        self.0.push_dropped.fetch_add(1, Ordering::Relaxed);
    }

    pub fn forward_observed(&self, agent: &str, outcome: &'static str, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        if let Ok(mut map) = self.0.forward.lock() {
            let h = map.entry((agent.to_string(), outcome)).or_default();
            for (i, bound) in BUCKETS.iter().enumerate() {
                if secs <= *bound {
                    h.counts[i] += 1;
                }
            }
            h.count += 1;
            h.sum += secs;
        }
    }

    /// The exposition; `tasks_by_state` comes from the store (shared by all
    /// replicas), `None` when the store could not be read;
    /// `stream_subscriptions` is how many streams follow a task now.
    pub fn render(
        &self,
        tasks_by_state: Option<&[(String, i64)]>,
        stream_subscriptions: u64,
    ) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP attach_a2a_stream_subscriptions Streams following a task now."
        );
        let _ = writeln!(out, "# TYPE attach_a2a_stream_subscriptions gauge");
        let _ = writeln!(
            out,
            "attach_a2a_stream_subscriptions {stream_subscriptions}"
        );
        let _ = writeln!(out, "# HELP attach_a2a_tasks Tasks in the store by state.");
        let _ = writeln!(out, "# TYPE attach_a2a_tasks gauge");
        if let Some(counts) = tasks_by_state {
            for state in TaskState::ALL {
                let n = counts
                    .iter()
                    .find(|(s, _)| s == state.as_str())
                    .map_or(0, |(_, n)| *n);
                let _ = writeln!(out, "attach_a2a_tasks{{state=\"{}\"}} {n}", state.as_str());
            }
        }
        let _ = writeln!(
            out,
            "# HELP attach_a2a_task_transitions_total Task state changes made by this process."
        );
        let _ = writeln!(out, "# TYPE attach_a2a_task_transitions_total counter");
        for (i, state) in TaskState::ALL.iter().enumerate() {
            let n = self.0.transitions[i].load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "attach_a2a_task_transitions_total{{state=\"{}\"}} {n}",
                state.as_str()
            );
        }
        let counters = [
            (
                "attach_a2a_store_errors_total",
                "Failed store operations.",
                &self.0.store_errors,
            ),
            (
                "attach_a2a_memory_backend_errors_total",
                "Failed memory reads from Weaviate (MEM_BACKEND=weaviate).",
                &self.0.memory_backend_errors,
            ),
            (
                "attach_a2a_auth_rejected_total",
                "Requests refused for a missing or invalid gateway assertion.",
                &self.0.auth_rejected,
            ),
            (
                "attach_a2a_handler_panics_total",
                "Requests whose handler panicked, answered 500.",
                &self.0.handler_panics,
            ),
            (
                "attach_a2a_push_delivered_total",
                "Push notifications a webhook acknowledged.",
                &self.0.push_delivered,
            ),
            (
                "attach_a2a_push_retries_total",
                "Push notification attempts retried after a failure.",
                &self.0.push_retried,
            ),
            (
                "attach_a2a_push_failed_total",
                "Push notifications given up on (refused target, error answer, attempts spent).",
                &self.0.push_failed,
            ),
            (
                "attach_a2a_push_dropped_total",
                "Task state changes not pushed because the push queue was full.",
                &self.0.push_dropped,
            ),
        ];
        for (name, help, value) in counters {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} counter");
            let _ = writeln!(out, "{name} {}", value.load(Ordering::Relaxed));
        }
        let _ = writeln!(
            out,
            "# HELP attach_a2a_forward_seconds Time spent on an agent exchange."
        );
        let _ = writeln!(out, "# TYPE attach_a2a_forward_seconds histogram");
        if let Ok(map) = self.0.forward.lock() {
            for ((agent, outcome), h) in map.iter() {
                let labels = format!("agent=\"{}\",outcome=\"{outcome}\"", escape(agent));
                for (i, bound) in BUCKETS.iter().enumerate() {
                    let _ = writeln!(
                        out,
                        "attach_a2a_forward_seconds_bucket{{{labels},le=\"{bound}\"}} {}",
                        h.counts[i]
                    );
                }
                let _ = writeln!(
                    out,
                    "attach_a2a_forward_seconds_bucket{{{labels},le=\"+Inf\"}} {}",
                    h.count
                );
                let _ = writeln!(out, "attach_a2a_forward_seconds_sum{{{labels}}} {}", h.sum);
                let _ = writeln!(
                    out,
                    "attach_a2a_forward_seconds_count{{{labels}}} {}",
                    h.count
                );
            }
        }
        if let Some(usage) = &self.0.usage {
            usage.render(&mut out);
        }
        out
    }
}

pub(crate) fn escape(label: &str) -> String {
    label
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_histogram() {
        let m = Metrics::default();
        m.transition(TaskState::Completed);
        m.handler_panic();
        m.forward_observed("planner", "ok", Duration::from_millis(300));
        let text = m.render(Some(&[("completed".into(), 2)]), 3);
        assert!(text.contains("\nattach_a2a_stream_subscriptions 3\n"));
        assert!(text.contains("attach_a2a_tasks{state=\"completed\"} 2"));
        assert!(text.contains("attach_a2a_task_transitions_total{state=\"completed\"} 1"));
        assert!(text.contains("\nattach_a2a_handler_panics_total 1\n"));
        assert!(text.contains(
            "attach_a2a_forward_seconds_bucket{agent=\"planner\",outcome=\"ok\",le=\"0.25\"} 0"
        ));
        assert!(text.contains(
            "attach_a2a_forward_seconds_bucket{agent=\"planner\",outcome=\"ok\",le=\"0.5\"} 1"
        ));
        assert!(
            text.contains("attach_a2a_forward_seconds_count{agent=\"planner\",outcome=\"ok\"} 1")
        );
        assert!(!text.contains("attach_usage_"));
        assert!(
            Metrics::new(true)
                .render(None, 0)
                .contains("\nattach_usage_sync_batches_total 0\n")
        );
    }
}
