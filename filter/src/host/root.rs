//! The root context: per-VM state, the tick that keeps key sets fresh, and
//! every callout (callouts made from a request's context die with it).

use super::gate::{self, Gate, RequestState, Step};
use super::mirror::{self, Mirror, Schema};
use super::{log, now_ms, shared, stream};
use crate::config::Config;
use crate::jwks::key_ring::KeyRing;
use crate::jwks::key_set::JwkSet;
use crate::jwks::schedule::{FetchState, discovered_jwks_uri};
use crate::token_cache::TokenCache;
use crate::url::Url;
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{BufferType, ContextType, LogLevel, MapType};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

/// Key sets and discovery documents larger than this are refused.
const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;
const TICK: Duration = Duration::from_millis(100);

/// A request paused until its issuer's next fetch finishes (or a deadline).
pub struct Waiter {
    context_id: u32,
    issuer: usize,
    /// The issuer's fetch count when the wait began.
    completed_before: u64,
    deadline_ms: u64,
    state: Rc<RefCell<RequestState>>,
}

impl Waiter {
    pub fn new(
        context_id: u32,
        issuer: usize,
        completed_before: u64,
        deadline_ms: u64,
        state: Rc<RefCell<RequestState>>,
    ) -> Self {
        Waiter {
            context_id,
            issuer,
            completed_before,
            deadline_ms,
            state,
        }
    }
}

/// Everything one VM shares between its root context and its requests.
pub struct Vm {
    pub config: Config,
    pub keys: RefCell<KeyRing>,
    pub cache: RefCell<TokenCache>,
    /// Each issuer's fetch schedule as last read from shared data.
    seen: RefCell<Vec<FetchState>>,
    waiters: RefCell<Vec<Waiter>>,
    /// The memory mirror, when configured.
    pub mirror: Option<Mirror>,
}

impl Vm {
    fn new(config: Config) -> Self {
        let n = config.providers.len();
        Vm {
            keys: RefCell::new(KeyRing::new(n)),
            cache: RefCell::new(TokenCache::new(config.cache_entries)),
            seen: RefCell::new(vec![FetchState::default(); n]),
            waiters: RefCell::default(),
            mirror: Mirror::start(&config),
            config,
        }
    }

    pub fn completed(&self, issuer: usize) -> u64 {
        self.seen.borrow().get(issuer).map_or(0, |s| s.completed)
    }

    pub fn wait(&self, waiter: Waiter) {
        self.waiters.borrow_mut().push(waiter);
    }

    pub fn forget(&self, context_id: u32) {
        self.waiters
            .borrow_mut()
            .retain(|w| w.context_id != context_id);
    }

    /// Asks every VM's shared schedule for an early refetch (rate limited).
    pub fn request_refetch(&self, issuer: usize) -> bool {
        let Some(p) = self.config.providers.get(issuer) else {
            return false;
        };
        let now = now_ms();
        let granted =
            shared::update_state(&p.issuer, |s| s.request_refetch(now, &self.config.jwks));
        if granted.is_none() {
            log(
                LogLevel::Debug,
                &format!("unknown kid for {}: refetch rate limited", p.issuer),
            );
        }
        granted.is_some()
    }

    /// Reads each issuer's schedule and, when it changed, its key set.
    fn sync(&self) {
        for (i, p) in self.config.providers.iter().enumerate() {
            let (state, _) = shared::read_state(&p.issuer);
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
        matches!(
            crate::verify::KeyStore::keys(&*self.keys.borrow(), issuer),
            crate::verify::KeyState::Ready { .. }
        )
    }

    fn load_keys(&self, issuer: usize) {
        let Some(p) = self.config.providers.get(issuer) else {
            return;
        };
        let Some((raw, cas)) = shared::read_keys(&p.issuer) else {
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

    /// Resumes every waiting request whose fetch finished or whose time is up.
    fn wake(&self, root_id: u32) {
        let now = now_ms();
        let ready: Vec<Waiter> = {
            let mut waiters = self.waiters.borrow_mut();
            let (ready, still): (Vec<_>, Vec<_>) = waiters.drain(..).partition(|w| {
                now >= w.deadline_ms || self.completed(w.issuer) > w.completed_before
            });
            *waiters = still;
            ready
        };
        for w in ready {
            if hostcalls::set_effective_context(w.context_id).is_err() {
                continue; // the client went away
            }
            match gate::decide(self, &w.state, true) {
                Step::Continue => {
                    stream::resume();
                }
                Step::Replied => {}
                Step::Wait { issuer } => self.wait(Waiter {
                    issuer,
                    completed_before: self.completed(issuer),
                    ..w
                }),
            }
        }
        let _ = hostcalls::set_effective_context(root_id);
    }
}

enum Stage {
    Discovery,
    Keys,
}

enum Call {
    Jwks { issuer: usize, stage: Stage },
    MemorySchema { creating: bool },
    MemoryBatch,
}

pub struct Root {
    context_id: u32,
    vm: Option<Rc<Vm>>,
    calls: HashMap<u32, Call>,
}

impl Root {
    pub fn new(context_id: u32) -> Self {
        Root {
            context_id,
            vm: None,
            calls: HashMap::new(),
        }
    }

    fn fetch(&mut self, vm: &Vm, issuer: usize, state: &FetchState) {
        let Some(p) = vm.config.providers.get(issuer) else {
            return;
        };
        let known = p
            .jwks_uri
            .clone()
            .or_else(|| state.jwks_uri.as_deref().and_then(|u| Url::parse(u).ok()));
        match known {
            Some(url) => self.call(vm, issuer, Stage::Keys, &url),
            None => self.call(vm, issuer, Stage::Discovery, &p.discovery.clone()),
        }
    }

    fn call(&mut self, vm: &Vm, issuer: usize, stage: Stage, url: &Url) {
        let Some(cluster) = vm.config.cluster_for(url) else {
            self.failed(
                vm,
                issuer,
                &format!(
                    "no Envoy cluster for {} (add it to `clusters`)",
                    url.origin()
                ),
            );
            return;
        };
        let authority = url.authority();
        let scheme = if url.https { "https" } else { "http" };
        let headers = vec![
            (":method", "GET"),
            (":path", url.path.as_str()),
            (":authority", authority.as_str()),
            (":scheme", scheme),
            ("accept", "application/json"),
            ("user-agent", "attach-gateway"),
        ];
        let timeout = Duration::from_millis(vm.config.jwks.fetch_timeout_ms);
        match hostcalls::dispatch_http_call(cluster, headers, None, vec![], timeout) {
            Ok(token) => {
                self.calls.insert(token, Call::Jwks { issuer, stage });
            }
            Err(status) => self.failed(
                vm,
                issuer,
                &format!(
                    "cannot call {} via cluster {cluster}: {status:?}",
                    url.origin()
                ),
            ),
        }
    }

    fn failed(&self, vm: &Vm, issuer: usize, why: &str) {
        let Some(p) = vm.config.providers.get(issuer) else {
            return;
        };
        log(
            LogLevel::Warn,
            &format!("fetching keys of {} failed: {why}", p.issuer),
        );
        let now = now_ms();
        shared::update_state(&p.issuer, |s| {
            s.failed(now, &vm.config.jwks);
            true
        });
    }

    fn on_document(&mut self, vm: &Vm, issuer: usize, stage: Stage, body: &[u8]) {
        let Some(p) = vm.config.providers.get(issuer) else {
            return;
        };
        match stage {
            Stage::Discovery => match discovered_jwks_uri(body, &p.issuer) {
                Ok(url) => {
                    let uri = format!("{}{}", url.origin(), url.path);
                    shared::update_state(&p.issuer, |s| {
                        s.jwks_uri = Some(uri.clone());
                        true
                    });
                    self.call(vm, issuer, Stage::Keys, &url);
                }
                Err(why) => self.failed(vm, issuer, why),
            },
            Stage::Keys => match JwkSet::parse(body) {
                Ok(set) => {
                    let now = now_ms();
                    if !shared::write_keys(&p.issuer, body) {
                        self.failed(vm, issuer, "shared data refused the key set");
                        return;
                    }
                    shared::update_state(&p.issuer, |s| {
                        s.succeeded(now, &vm.config.jwks);
                        true
                    });
                    log(
                        LogLevel::Info,
                        &format!("loaded {} key(s) of {}", set.len(), p.issuer),
                    );
                    // The set just written is the shared entry's current
                    // version (this VM holds the fetch lease): install it
                    // under that CAS instead of parsing it again.
                    if let Some((_, cas)) = shared::read_keys(&p.issuer) {
                        vm.keys.borrow_mut().install(issuer, cas, set);
                    }
                    vm.sync();
                    vm.wake(self.context_id);
                }
                Err(e) => self.failed(vm, issuer, &format!("key set unusable: {e}")),
            },
        }
    }
}

impl Root {
    /// Sends the next memory batch (or Weaviate's schema check) if this
    /// worker has nothing on the wire.
    fn mirror(&mut self, vm: &Vm) {
        let Some(mirror) = &vm.mirror else { return };
        let out = match mirror.schema() {
            Schema::Ready => match mirror.next_batch(&vm.config) {
                Some(out) => out,
                None => return,
            },
            Schema::Unknown { next_ms } if now_ms() >= next_ms => {
                let Some(out) = vm
                    .config
                    .memory
                    .as_ref()
                    .and_then(|m| m.sink.schema_check())
                else {
                    return;
                };
                out
            }
            _ => return,
        };
        let batch = mirror.schema() == Schema::Ready;
        match mirror::dispatch(&vm.config, &out) {
            Ok(token) if batch => {
                mirror.sending();
                self.calls.insert(token, Call::MemoryBatch);
            }
            Ok(token) => {
                mirror.set_schema(Schema::Checking);
                self.calls
                    .insert(token, Call::MemorySchema { creating: false });
            }
            Err(why) if batch => {
                log(LogLevel::Warn, &format!("attach: memory delivery: {why}"));
                mirror.delivered(&vm.config, None, None);
            }
            Err(why) => mirror.schema_failed(&why),
        }
    }

    fn on_schema_reply(&mut self, vm: &Vm, creating: bool, status: &str) {
        let Some(mirror) = &vm.mirror else { return };
        match (creating, status) {
            // 422: created meanwhile by another worker or gateway.
            (false, "200") | (true, "200") | (true, "422") => mirror.set_schema(Schema::Ready),
            (false, "404") => {
                let Some(out) = vm.config.memory.as_ref().map(|m| m.sink.schema_create()) else {
                    return;
                };
                match mirror::dispatch(&vm.config, &out) {
                    Ok(token) => {
                        self.calls
                            .insert(token, Call::MemorySchema { creating: true });
                    }
                    Err(why) => mirror.schema_failed(&why),
                }
            }
            (_, status) => mirror.schema_failed(&format!("HTTP status {status:?}")),
        }
    }
}

fn call_status(headers: usize) -> Option<String> {
    if headers == 0 {
        return None;
    }
    hostcalls::get_map_value(MapType::HttpCallResponseHeaders, ":status")
        .ok()
        .flatten()
}

fn call_body(body_size: usize) -> Vec<u8> {
    hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, body_size)
        .ok()
        .flatten()
        .unwrap_or_default()
}

impl Context for Root {
    fn on_http_call_response(&mut self, token: u32, headers: usize, body_size: usize, _: usize) {
        let Some(call) = self.calls.remove(&token) else {
            return;
        };
        let Some(vm) = self.vm.clone() else {
            return;
        };
        let status = call_status(headers);
        let (issuer, stage) = match call {
            Call::Jwks { issuer, stage } => (issuer, stage),
            Call::MemorySchema { creating } => {
                self.on_schema_reply(&vm, creating, status.as_deref().unwrap_or("none"));
                return;
            }
            Call::MemoryBatch => {
                let code = status.as_deref().and_then(|s| s.parse::<u16>().ok());
                let ok = code.is_some_and(|c| (200..300).contains(&c));
                let body = (ok && body_size <= MAX_DOCUMENT_BYTES).then(|| call_body(body_size));
                if let Some(mirror) = &vm.mirror {
                    mirror.delivered(&vm.config, code, body.as_deref());
                }
                self.mirror(&vm);
                return;
            }
        };
        let Some(status) = status else {
            self.failed(&vm, issuer, "no response (timeout or connection failure)");
            return;
        };
        if status != "200" {
            self.failed(&vm, issuer, &format!("HTTP status {status}"));
            return;
        }
        if body_size > MAX_DOCUMENT_BYTES {
            self.failed(&vm, issuer, "document too large");
            return;
        }
        let body = call_body(body_size);
        self.on_document(&vm, issuer, stage, &body);
    }
}

impl RootContext for Root {
    fn on_configure(&mut self, _: usize) -> bool {
        let raw = hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX)
            .ok()
            .flatten()
            .unwrap_or_default();
        match Config::from_json(&raw) {
            Ok(config) => {
                for p in &config.providers {
                    shared::ensure_state(&p.issuer);
                    let fetched = p.jwks_uri.as_ref().unwrap_or(&p.discovery);
                    if !fetched.https && !fetched.is_loopback() {
                        log(
                            LogLevel::Warn,
                            &format!("issuer {} is plain http: keys travel unprotected", p.issuer),
                        );
                    }
                }
                self.vm = Some(Rc::new(Vm::new(config)));
                let _ = hostcalls::set_tick_period(TICK);
                true
            }
            Err(e) => {
                log(
                    LogLevel::Critical,
                    &format!("attach: invalid plugin configuration: {e}"),
                );
                false
            }
        }
    }

    fn on_tick(&mut self) {
        let Some(vm) = self.vm.clone() else {
            return;
        };
        vm.sync();
        let now = now_ms();
        for (i, p) in vm.config.providers.iter().enumerate() {
            if let Some(state) =
                shared::update_state(&p.issuer, |s| s.try_claim(now, &vm.config.jwks))
            {
                self.fetch(&vm, i, &state);
            }
        }
        vm.wake(self.context_id);
        self.mirror(&vm);
    }

    fn on_queue_ready(&mut self, _: u32) {
        let Some(vm) = self.vm.clone() else { return };
        if vm
            .mirror
            .as_ref()
            .is_some_and(|m| m.full_batch_waiting(&vm.config))
        {
            self.mirror(&vm);
        }
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Gate::new(self.vm.clone(), context_id)))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
