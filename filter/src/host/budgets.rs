//! What one VM keeps for the token budgets: the runtime overrides the
//! companion service last handed it, the users it served lately (whose
//! other gateways' spending it asks for), the usage records waiting for the
//! next sync, the gateway's id and the counters in Envoy's stats.

use super::abi;
use super::bounded_queue::{BoundedQueue, Pushed};
use super::log::log;
use crate::budget::config::Budget;
use attach_contract::budget::{Limit, Override};
use attach_contract::usage::{Record, TotalKey};
use proxy_wasm::types::LogLevel;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;

const QUEUE_NAME: &str = "attach.budget.records";
const DEPTH_KEY: &str = "attach.budget.records.depth";
/// The Envoy's id towards the service, the same for all its workers.
const GATEWAY_KEY: &str = "attach.budget.gateway";
/// Records waiting for a sync, across workers; past it the oldest go.
const QUEUE_MAX: usize = 100_000;
/// Users whose totals one VM follows; past it the stalest is forgotten.
const RECENT_MAX: usize = 4_096;
/// Models a VM counts by name in its stats; later ones count as `other`
/// (a caller names the model: the stats must stay bounded).
const MODELS_MAX: usize = 64;

/// Counters in Envoy's stats (`wasmcustom.attach_budget.*`), per route.
struct RouteCounters {
    admitted: u32,
    refused: u32,
    tokens_in: u32,
    tokens_out: u32,
}

/// When a user was last served, and the limits (scope name, window
/// seconds) their requests were checked against.
type Served = (u64, Vec<(String, u64)>);

pub struct Budgets {
    routes: Vec<Option<RouteCounters>>,
    sync_failed: Option<u32>,
    records_dropped: Option<u32>,
    /// The runtime overrides, as of the last sync.
    pub overrides: RefCell<Vec<Override>>,
    /// Makes this VM's record ids its own.
    nonce: (u64, u64),
    sequence: Cell<u64>,
    /// Per user: when this VM last served them, and the limits it checked.
    recent: RefCell<HashMap<String, Served>>,
    pub queue: Option<BoundedQueue>,
    pub sync: RefCell<SyncState>,
    /// Counters per model (and per user with `user_stats`), defined when
    /// first counted.
    named: RefCell<HashMap<String, Option<u32>>>,
    models: RefCell<Vec<String>>,
    user_stats: bool,
}

/// Whose call is counted: the user and the model it asked for.
#[derive(Clone, Copy)]
pub struct Who<'a> {
    pub user: &'a str,
    pub model: Option<&'a str>,
}

/// This VM's side of the sync: the batch it sent or must send again, and
/// when the next one is due.
#[derive(Default)]
pub struct SyncState {
    /// Records taken off the queue, as JSON, until the service took them.
    pub pending: Vec<Vec<u8>>,
    pub next_ms: u64,
    pub in_flight: bool,
}

/// A stat name's segment for a route path: `/api/chat` → `api_chat`.
fn stat_segment(path: &str) -> String {
    let segment: String = path
        .trim_matches('/')
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    if segment.is_empty() {
        "root".into()
    } else {
        segment
    }
}

fn counter(name: &str) -> Option<u32> {
    abi::define_counter(name).ok()
}

/// A count the host refuses is lost: counters are for watching.
fn add(metric: Option<u32>, n: u64) {
    if let (Some(id), true) = (metric, n > 0) {
        let _ = abi::increment_metric(id, i64::try_from(n).unwrap_or(i64::MAX));
    }
}

impl Budgets {
    pub fn start(budget: Option<&Budget>) -> Option<Self> {
        let budget = budget?;
        let routes = budget
            .routes
            .iter()
            .map(|r| {
                let at = |what: &str| format!("attach_budget.{}.{what}", stat_segment(&r.path));
                Some(RouteCounters {
                    admitted: counter(&at("admitted"))?,
                    refused: counter(&at("refused"))?,
                    tokens_in: counter(&at("tokens_in"))?,
                    tokens_out: counter(&at("tokens_out"))?,
                })
            })
            .collect();
        let random = RandomState::new();
        let queue = budget
            .sync
            .as_ref()
            .and_then(|_| BoundedQueue::register(QUEUE_NAME, DEPTH_KEY));
        Some(Budgets {
            routes,
            sync_failed: counter("attach_budget.sync_failed"),
            records_dropped: counter("attach_budget.records_dropped"),
            overrides: RefCell::default(),
            nonce: (
                random.hash_one(super::clock::now_ms()),
                RandomState::new().hash_one(0x9e37_79b9_7f4a_7c15_u64),
            ),
            sequence: Cell::new(0),
            recent: RefCell::default(),
            queue,
            sync: RefCell::default(),
            named: RefCell::default(),
            models: RefCell::default(),
            user_stats: budget.user_stats,
        })
    }

    /// A record id no other request of any gateway has.
    pub fn record_id(&self) -> String {
        let n = self.sequence.get().wrapping_add(1);
        self.sequence.set(n);
        format!("{:016x}{:016x}.{n}", self.nonce.0, self.nonce.1)
    }

    pub fn admitted(&self, route: usize, who: Who<'_>) {
        add(self.route(route).map(|c| c.admitted), 1);
        self.add_for(who, "admitted", 1);
    }

    /// A refusal; `who` is unknown for a body refused before its token
    /// was read.
    pub fn refused(&self, route: usize, who: Option<Who<'_>>) {
        add(self.route(route).map(|c| c.refused), 1);
        if let Some(who) = who {
            self.add_for(who, "refused", 1);
        }
    }

    pub fn tokens(&self, route: usize, who: Who<'_>, tokens_in: u64, tokens_out: u64) {
        let counters = self.route(route);
        add(counters.map(|c| c.tokens_in), tokens_in);
        add(counters.map(|c| c.tokens_out), tokens_out);
        self.add_for(who, "tokens_in", tokens_in);
        self.add_for(who, "tokens_out", tokens_out);
    }

    fn route(&self, route: usize) -> Option<&RouteCounters> {
        self.routes.get(route).and_then(|c| c.as_ref())
    }

    /// `attach_budget.model.{model}.{what}`, and with `user_stats`
    /// `attach_budget.user.{user}.{what}`.
    fn add_for(&self, who: Who<'_>, what: &str, n: u64) {
        let model = self.model_segment(who.model.unwrap_or(""));
        self.add_named(format!("attach_budget.model.{model}.{what}"), n);
        if self.user_stats {
            let user = stat_segment(who.user);
            self.add_named(format!("attach_budget.user.{user}.{what}"), n);
        }
    }

    /// A model's stat segment: its name while fewer than [`MODELS_MAX`]
    /// were counted, else `other`; `none` when the request named none.
    fn model_segment(&self, model: &str) -> String {
        if model.is_empty() {
            return "none".into();
        }
        let segment = stat_segment(model);
        let mut models = self.models.borrow_mut();
        if models.contains(&segment) {
            return segment;
        }
        if models.len() < MODELS_MAX {
            models.push(segment.clone());
            return segment;
        }
        "other".into()
    }

    fn add_named(&self, name: String, n: u64) {
        if n == 0 {
            return;
        }
        let id = *self
            .named
            .borrow_mut()
            .entry(name)
            .or_insert_with_key(|name| counter(name));
        add(id, n);
    }

    pub fn sync_failed(&self) {
        add(self.sync_failed, 1);
    }

    /// Remembers that `user` was served now under `limits`, so the next
    /// syncs ask what the other gateways spent for them.
    pub fn served(&self, user: &str, limits: &[Limit], now_ms: u64) {
        let mut recent = self.recent.borrow_mut();
        let keys = recent
            .entry(user.to_string())
            .or_insert_with(|| (now_ms, Vec::new()));
        keys.0 = now_ms;
        for limit in limits {
            let key = (limit.scope.name().to_string(), limit.window.seconds);
            if !keys.1.contains(&key) {
                keys.1.push(key);
            }
        }
        if recent.len() > RECENT_MAX {
            let stalest = recent
                .iter()
                .min_by_key(|(_, (seen, _))| *seen)
                .map(|(user, _)| user.clone());
            if let Some(user) = stalest {
                recent.remove(&user);
            }
        }
    }

    /// The totals to ask for: every limit of every user served within
    /// its window (older ones are forgotten).
    pub fn totals_for(&self, now_ms: u64, most: usize) -> Vec<TotalKey> {
        let mut recent = self.recent.borrow_mut();
        recent.retain(|_, (seen, keys)| {
            keys.retain(|(_, seconds)| {
                now_ms.saturating_sub(*seen) < seconds.saturating_mul(1_000)
            });
            !keys.is_empty()
        });
        recent
            .iter()
            .flat_map(|(user, (_, keys))| {
                keys.iter().map(|(scope, seconds)| TotalKey {
                    user: user.clone(),
                    scope: scope.clone(),
                    seconds: *seconds,
                })
            })
            .take(most)
            .collect()
    }

    /// Queues a finished call's usage for the next sync (no sync: nothing
    /// to do).
    pub fn record(&self, record: &Record) {
        let Some(queue) = &self.queue else { return };
        let Ok(bytes) = serde_json::to_vec(record) else {
            return;
        };
        match queue.push(&bytes, QUEUE_MAX) {
            Pushed::Queued => {}
            Pushed::QueuedDroppingOldest | Pushed::Dropped => {
                add(self.records_dropped, 1);
                log(
                    LogLevel::Debug,
                    "attach: a usage record was dropped (the service is not taking them)",
                );
            }
        }
    }
}

/// The Envoy's id towards the service, the same for all its workers: the
/// first VM to find none chooses it. Two VMs choosing at the same instant
/// both write theirs; every later read agrees on the last one written, and
/// each sync reads it again.
pub fn gateway_id() -> String {
    if let Ok((Some(bytes), _)) = abi::shared_data(GATEWAY_KEY) {
        if let Ok(id) = String::from_utf8(bytes) {
            return id;
        }
    }
    let id = format!(
        "g-{:016x}",
        RandomState::new().hash_one(super::clock::now_ms())
    );
    let _ = abi::set_shared_data(GATEWAY_KEY, id.as_bytes(), None);
    id
}
