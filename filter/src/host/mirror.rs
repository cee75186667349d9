//! The memory mirror inside Envoy: a finished exchange's events go on a
//! shared queue (all workers see one queue), and every worker's root
//! context takes batches off it and delivers them with callouts. Nothing
//! here runs on the request's path except the enqueue in `on_log`.

use super::abi;
use super::bounded_queue::{BoundedQueue, Pushed};
use super::clock::now_ms;
use super::log::log;
use crate::config::Config;
use crate::memory::budget::Budget;
use crate::memory::capture::VM_BUDGET_BYTES;
use crate::memory::outbox::{Outbox, Outcome, Verdict};
use crate::memory::sink::Outgoing;
use crate::memory::weaviate_upgrade::Conflict;
use attach_contract::event::Event;
use proxy_wasm::types::LogLevel;
use std::cell::{Cell, RefCell};
use std::rc::Rc;

const QUEUE_NAME: &str = "attach.memory";
/// Events on the queue, kept beside it because a shared queue has no bound.
/// (Each worker also holds at most one batch it took off the queue, until
/// the sink accepts it.)
const DEPTH_KEY: &str = "attach.memory.depth";
/// Weaviate's schema is checked again after this long when it failed.
const SCHEMA_RETRY_MS: u64 = 2_000;

/// Counters in Envoy's stats (`wasmcustom.attach_memory_*`), summed over workers.
struct Counters {
    enqueued: u32,
    sent: u32,
    failed: u32,
    dropped: u32,
    unreadable: u32,
    replies_cut: u32,
}

impl Counters {
    fn define() -> Option<Self> {
        let counter = |name: &str| abi::define_counter(name).ok();
        Some(Counters {
            enqueued: counter("attach_memory_events_enqueued")?,
            sent: counter("attach_memory_events_sent")?,
            failed: counter("attach_memory_events_failed")?,
            dropped: counter("attach_memory_events_dropped")?,
            unreadable: counter("attach_memory_exchanges_unreadable")?,
            replies_cut: counter("attach_memory_replies_truncated")?,
        })
    }
}

/// A count the host refuses is lost: counters are for watching, and a
/// failing stats store has nowhere better to report to.
fn add(metric: u32, n: usize) {
    if n > 0 {
        let _ = abi::increment_metric(metric, i64::try_from(n).unwrap_or(i64::MAX));
    }
}

/// Whether Weaviate's class is known to exist with the contract's
/// properties, as far as they can be added (the service needs nothing).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Schema {
    Ready,
    Unknown { next_ms: u64 },
    Checking,
}

/// One worker's side of the mirror.
pub struct Mirror {
    queue: BoundedQueue,
    counters: Counters,
    outbox: RefCell<Outbox>,
    schema: Cell<Schema>,
    /// Whether the class's conflicts with the contract were logged: they
    /// last, and each check after a failed one finds them again.
    conflicts_logged: Cell<bool>,
    /// Request and reply bytes this VM's captures hold.
    pub budget: Rc<Budget>,
}

impl Mirror {
    /// Registers the queue (the same one for every worker) and the counters.
    pub fn start(config: &Config) -> Option<Self> {
        let memory = config.memory.as_ref()?;
        let queue = BoundedQueue::register(QUEUE_NAME, DEPTH_KEY)?;
        let counters = Counters::define()?;
        let schema = if memory.sink.schema_check().is_some() {
            Schema::Unknown { next_ms: 0 }
        } else {
            Schema::Ready
        };
        Some(Mirror {
            queue,
            counters,
            outbox: RefCell::default(),
            schema: Cell::new(schema),
            conflicts_logged: Cell::new(false),
            budget: Budget::new(VM_BUDGET_BYTES, memory.reply_budget_bytes),
        })
    }

    /// From a request's `on_log`: the exchange's events.
    pub fn enqueue(&self, config: &Config, events: &[Event]) {
        let Some(memory) = &config.memory else { return };
        add(self.counters.replies_cut, self.budget.take_replies_cut());
        for event in events {
            if let Some(why) = &event.unreadable {
                add(self.counters.unreadable, 1);
                log(
                    LogLevel::Debug,
                    &format!("attach: request body not read for memory: {why}"),
                );
            }
            let Ok(bytes) = serde_json::to_vec(event) else {
                continue;
            };
            match self.queue.push(&bytes, memory.queue_max) {
                Pushed::Queued => add(self.counters.enqueued, 1),
                Pushed::QueuedDroppingOldest => {
                    add(self.counters.enqueued, 1);
                    add(self.counters.dropped, 1);
                }
                Pushed::Dropped => add(self.counters.dropped, 1),
            }
        }
    }

    /// Whether a full batch waits: the queue's signal only starts a delivery
    /// then, and the tick takes whatever is there, so that steady traffic
    /// goes out in full batches rather than one callout per exchange.
    pub fn full_batch_waiting(&self, config: &Config) -> bool {
        config
            .memory
            .as_ref()
            .is_some_and(|m| self.queue.depth() >= m.batch_events as u64)
    }

    pub fn schema(&self) -> Schema {
        self.schema.get()
    }

    pub fn set_schema(&self, schema: Schema) {
        self.schema.set(schema);
    }

    pub fn schema_failed(&self, why: &str) {
        log(
            LogLevel::Warn,
            &format!("attach: memory schema not ready: {why}"),
        );
        self.schema.set(Schema::Unknown {
            next_ms: now_ms().saturating_add(SCHEMA_RETRY_MS),
        });
    }

    /// Logs, once, the properties Weaviate's class has in another shape
    /// than the contract's: the writes they refuse are counted as failed.
    pub fn report_conflicts(&self, conflicts: &[Conflict]) {
        if conflicts.is_empty() || self.conflicts_logged.replace(true) {
            return;
        }
        for conflict in conflicts {
            log(
                LogLevel::Warn,
                &format!("attach: memory schema: {conflict}; writes of it may fail"),
            );
        }
    }

    /// The next batch to send, if this worker is free to send one.
    pub fn next_batch(&self, config: &Config) -> Option<Outgoing> {
        let memory = config.memory.as_ref()?;
        let now = now_ms();
        if self.schema.get() != Schema::Ready {
            return None;
        }
        let mut outbox = self.outbox.borrow_mut();
        if !outbox.idle(now) {
            return None;
        }
        let queue = &self.queue;
        let taken = outbox.fill(memory.batch_events, memory.batch_bytes, || queue.pop());
        queue.taken(taken);
        if outbox.batch().is_empty() {
            return None;
        }
        Some(
            memory
                .sink
                .deliver(outbox.batch(), config.assertion_key.as_deref(), now / 1_000),
        )
    }

    pub fn sending(&self) {
        self.outbox.borrow_mut().sending();
    }

    /// A delivery's answer: its status (`None`: no answer) and, for a
    /// 2xx, its body.
    pub fn delivered(&self, config: &Config, status: Option<u16>, reply: Option<&[u8]>) {
        let Some(memory) = &config.memory else { return };
        let now = now_ms();
        let mut outbox = self.outbox.borrow_mut();
        let (initial, max) = (memory.retry_initial_ms, memory.retry_max_ms);
        let outcome = match Verdict::of(status) {
            Verdict::Accepted => {
                match reply.and_then(|body| memory.sink.answer(outbox.batch(), body)) {
                    Some(answer) => {
                        if answer.refused > 0 {
                            log(
                                LogLevel::Warn,
                                &format!(
                                    "attach: memory sink refused {} event(s); dropped: {}",
                                    answer.refused,
                                    answer.reason.as_deref().unwrap_or("no reason given")
                                ),
                            );
                        }
                        outbox.delivered(answer.retry, answer.refused, now, initial, max)
                    }
                    None => outbox.failed(now, initial, max),
                }
            }
            Verdict::Rejected => {
                log(
                    LogLevel::Warn,
                    &format!(
                        "attach: memory sink refused a batch of {} event(s) with HTTP {}; dropped",
                        outbox.batch().len(),
                        status.unwrap_or_default()
                    ),
                );
                outbox.rejected()
            }
            Verdict::Retry => outbox.failed(now, initial, max),
        };
        self.count(&outcome);
    }

    fn count(&self, outcome: &Outcome) {
        add(self.counters.sent, outcome.sent);
        add(self.counters.failed, outcome.retried);
        add(self.counters.dropped, outcome.dropped);
    }
}
