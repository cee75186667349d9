//! The root context: it sets the VM up and routes its callbacks — the tick,
//! the queue's signal and the callouts' answers — to the module each is for
//! (key sets, the memory mirror, the budgets' sync).

use super::abi::{self, Status};
use super::budget_pump;
use super::callout::Response;
use super::clock::now_ms;
use super::gate::Gate;
use super::jwks_fetch::{self, Next};
use super::jwks_shared;
use super::log::log;
use super::mirror_pump;
use super::vm::Vm;
use super::wake::wake;
use crate::config::Config;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{BufferType, ContextType, LogLevel};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

const TICK: Duration = Duration::from_millis(100);

/// A callout in flight, by the module it answers to.
enum Call {
    Jwks(jwks_fetch::Pending),
    Mirror(mirror_pump::Pending),
    Budget(budget_pump::Pending),
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

    fn pump_mirror(&mut self, vm: &Vm) {
        self.track_mirror(mirror_pump::pump(vm));
    }

    fn track_mirror(&mut self, next: Option<(u32, mirror_pump::Pending)>) {
        if let Some((token, pending)) = next {
            self.calls.insert(token, Call::Mirror(pending));
        }
    }

    fn track_jwks(&mut self, next: Option<(u32, jwks_fetch::Pending)>) {
        if let Some((token, pending)) = next {
            self.calls.insert(token, Call::Jwks(pending));
        }
    }

    fn configure(&mut self, raw: &[u8]) -> Result<(), String> {
        let config = Config::from_json(raw)
            .map_err(|e| format!("attach: invalid plugin configuration: {e}"))?;
        for p in &config.providers {
            jwks_shared::ensure_state(&p.issuer);
            let fetched = p.jwks_uri.as_ref().unwrap_or(&p.discovery);
            if !fetched.https && !fetched.is_loopback() {
                log(
                    LogLevel::Warn,
                    &format!("issuer {} is plain http: keys travel unprotected", p.issuer),
                );
            }
        }
        // Without a tick no key set is ever fetched: refuse to run.
        abi::set_tick_period(TICK)
            .map_err(|status| format!("attach: the host refused the tick: {status:?}"))?;
        self.vm = Some(Rc::new(Vm::new(config)));
        Ok(())
    }
}

impl Context for Root {
    fn on_http_call_response(&mut self, token: u32, headers: usize, body_size: usize, _: usize) {
        let Some(call) = self.calls.remove(&token) else {
            return;
        };
        let Some(vm) = self.vm.clone() else {
            return;
        };
        let response = Response::read(headers, body_size);
        match call {
            Call::Jwks(pending) => match jwks_fetch::on_response(&vm, pending, &response) {
                Next::Call(token, pending) => {
                    self.calls.insert(token, Call::Jwks(pending));
                }
                Next::Loaded => wake(&vm, self.context_id),
                Next::Done => {}
            },
            Call::Mirror(pending) => {
                self.track_mirror(mirror_pump::on_response(&vm, pending, &response));
            }
            Call::Budget(pending) => budget_pump::on_response(&vm, pending, &response),
        }
    }
}

impl RootContext for Root {
    fn on_configure(&mut self, _: usize) -> bool {
        let configured = abi::buffer(BufferType::PluginConfiguration, 0, usize::MAX)
            .map_err(|status: Status| {
                format!("attach: cannot read the plugin configuration: {status:?}")
            })
            .and_then(|raw| self.configure(&raw));
        match configured {
            Ok(()) => true,
            Err(why) => {
                log(LogLevel::Critical, &why);
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
                jwks_shared::update_state(&p.issuer, |s| s.try_claim(now, &vm.config.jwks))
            {
                self.track_jwks(jwks_fetch::start(&vm, i, &state));
            }
        }
        wake(&vm, self.context_id);
        self.pump_mirror(&vm);
        if let Some((token, pending)) = budget_pump::pump(&vm) {
            self.calls.insert(token, Call::Budget(pending));
        }
    }

    fn on_queue_ready(&mut self, _: u32) {
        let Some(vm) = self.vm.clone() else { return };
        if vm
            .mirror
            .as_ref()
            .is_some_and(|m| m.full_batch_waiting(&vm.config))
        {
            self.pump_mirror(&vm);
        }
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Gate::new(self.vm.clone(), context_id)))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
