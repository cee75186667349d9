//! Everything one VM shares between its root context and its requests: the
//! configuration, the parsed key sets, the token cache, the identity
//! tokens it signed, the requests waiting for keys, the memory mirror and
//! the token budgets' runtime.

use super::budgets::Budgets;
use super::clock::now_ms;
use super::jwks_shared;
use super::log::log;
use super::mcp_counters::McpCounters;
use super::mirror::Mirror;
use super::request::RequestState;
use crate::config::Config;
use crate::identity_tokens::IdentityTokens;
use crate::jwks::key_ring::KeyRing;
use crate::jwks::schedule::FetchState;
use crate::token_cache::TokenCache;
use crate::verify::{KeyState, KeyStore};
use proxy_wasm::types::LogLevel;
use std::cell::RefCell;
use std::rc::Rc;

/// A request paused until its issuer's next fetch finishes (or a deadline).
pub struct Waiter {
    pub context_id: u32,
    pub issuer: usize,
    /// The issuer's fetch count when the wait began.
    pub completed_before: u64,
    pub deadline_ms: u64,
    pub state: Rc<RefCell<RequestState>>,
}

pub struct Vm {
    pub config: Config,
    pub keys: RefCell<KeyRing>,
    pub cache: RefCell<TokenCache>,
    pub identity_tokens: RefCell<IdentityTokens>,
    /// Each issuer's fetch schedule as last read from shared data.
    seen: RefCell<Vec<FetchState>>,
    waiters: RefCell<Vec<Waiter>>,
    /// The memory mirror, when configured.
    pub mirror: Option<Mirror>,
    pub mcp_counters: McpCounters,
    /// The token budgets' runtime, when configured.
    pub budgets: Option<Budgets>,
}

impl Vm {
    pub fn new(config: Config) -> Self {
        let n = config.providers.len();
        Vm {
            keys: RefCell::new(KeyRing::new(n)),
            cache: RefCell::new(TokenCache::new(config.cache_entries)),
            identity_tokens: RefCell::new(IdentityTokens::new(config.cache_entries)),
            seen: RefCell::new(vec![FetchState::default(); n]),
            waiters: RefCell::default(),
            mirror: Mirror::start(&config),
            mcp_counters: McpCounters::define(config.mcp.as_ref()),
            budgets: Budgets::start(config.budget.as_ref()),
            config,
        }
    }

    pub fn completed(&self, issuer: usize) -> u64 {
        self.seen.borrow().get(issuer).map_or(0, |s| s.completed)
    }

    /// Parks a request until its issuer's next fetch, or `wait_ms` at most.
    pub fn wait(&self, context_id: u32, issuer: usize, state: Rc<RefCell<RequestState>>) {
        self.waiters.borrow_mut().push(Waiter {
            context_id,
            issuer,
            completed_before: self.completed(issuer),
            deadline_ms: now_ms().saturating_add(self.config.jwks.wait_ms),
            state,
        });
    }

    /// Parks a woken request again, keeping its deadline.
    pub fn wait_again(&self, waiter: Waiter, issuer: usize) {
        self.waiters.borrow_mut().push(Waiter {
            issuer,
            completed_before: self.completed(issuer),
            ..waiter
        });
    }

    pub fn forget(&self, context_id: u32) {
        self.waiters
            .borrow_mut()
            .retain(|w| w.context_id != context_id);
    }

    /// Takes the waiting requests whose fetch finished or whose time is up.
    pub fn take_ready(&self) -> Vec<Waiter> {
        let now = now_ms();
        let mut waiters = self.waiters.borrow_mut();
        let (ready, still): (Vec<_>, Vec<_>) = waiters
            .drain(..)
            .partition(|w| now >= w.deadline_ms || self.completed(w.issuer) > w.completed_before);
        *waiters = still;
        ready
    }

    /// Asks every VM's shared schedule for an early refetch (rate limited).
    pub fn request_refetch(&self, issuer: usize) -> bool {
        let Some(p) = self.config.providers.get(issuer) else {
            return false;
        };
        let now = now_ms();
        let granted =
            jwks_shared::update_state(&p.issuer, |s| s.request_refetch(now, &self.config.jwks));
        if granted.is_none() {
            log(
                LogLevel::Debug,
                &format!("unknown kid for {}: refetch rate limited", p.issuer),
            );
        }
        granted.is_some()
    }

    /// Reads each issuer's schedule and, when it changed, its key set.
    pub fn sync(&self) {
        for (i, p) in self.config.providers.iter().enumerate() {
            let state = jwks_shared::read_state(&p.issuer);
            let changed = self.seen.borrow().get(i) != Some(&state);
            if changed || !self.has_keys(i) {
                self.load_keys(i);
            }
            self.keys
                .borrow_mut()
                .set_unreachable(i, state.failures > 0 && !state.has_keys);
            if let Some(slot) = self.seen.borrow_mut().get_mut(i) {
                *slot = state;
            }
        }
    }

    fn has_keys(&self, issuer: usize) -> bool {
        matches!(self.keys.borrow().keys(issuer), KeyState::Ready { .. })
    }

    fn load_keys(&self, issuer: usize) {
        let Some(p) = self.config.providers.get(issuer) else {
            return;
        };
        let Some((raw, cas)) = jwks_shared::read_keys(&p.issuer) else {
            return;
        };
        if !self.keys.borrow().is_stale(issuer, cas) {
            return;
        }
        if let Err(e) = self.keys.borrow_mut().load(issuer, cas, &raw) {
            log(
                LogLevel::Warn,
                &format!("key set of {} unusable: {e}", p.issuer),
            );
        }
    }
}
