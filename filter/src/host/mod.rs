//! The only code that talks to the proxy-wasm host (Envoy).
//!
//! Every host call goes through [`abi`]: our own declarations of the ABI
//! functions, whose wrappers return each status instead of panicking (a
//! panic would abort the VM, and with it every request on the worker).
//! Above it, each module has one job, and imports only modules below it:
//!
//! - [`root`] is the root context; it only sets the VM up and routes its
//!   callbacks: the tick and key-set answers to [`jwks_fetch`], waking the
//!   requests parked for keys to [`wake`], the memory mirror's callouts and
//!   their answers to [`mirror_pump`], the budgets' to [`budget_pump`].
//! - [`gate`] is the per-request context: it strips spoofed identity
//!   headers, serves the resource metadata and feeds the memory capture;
//!   [`decide`] verifies the token and applies [`crate::stamp`]'s plan, from
//!   the request's callback or, after a wait, from [`wake`];
//!   [`token_endpoint`] buffers a token request and has
//!   [`crate::token_exchange`] answer it, the same two ways.
//! - [`vm`] holds what one VM shares between its root and its requests
//!   (configuration, key ring, token cache, waiting requests, mirror), and
//!   [`request`] what one request keeps across its callbacks.
//! - [`mcp_counters`] counts the MCP servers' decisions in Envoy's stats.
//! - [`metering`] holds a budgeted model call's body, reserves its estimate
//!   in the user's ledger ([`ledger_shared`]), meters its reply and settles
//!   it; [`budgets`] is what a VM keeps for the budgets (overrides, users
//!   served, the records queue, counters) and [`budget_pump`] syncs them
//!   with the companion service on the tick. [`bounded_queue`] is the
//!   shared queue with a bound that the records and the mirror use.
//! - [`jwks_shared`] reads and writes the key sets' records in shared data,
//!   [`mirror`] is the memory mirror's shared queue and batches,
//!   [`callout`] sends callouts and reads their answers, [`stream`] acts on
//!   the current request, [`clock`] and [`log`] are the host's time and log.

mod abi;
mod bounded_queue;
mod budget_pump;
mod budgets;
mod callout;
mod clock;
mod decide;
mod gate;
mod jwks_fetch;
mod jwks_shared;
mod ledger_shared;
mod log;
mod mcp_counters;
mod metering;
mod mirror;
mod mirror_pump;
mod request;
mod root;
mod stream;
mod token_endpoint;
mod vm;
mod wake;

proxy_wasm::main! {{
    // A panic aborts the VM; its message at least reaches Envoy's log.
    std::panic::set_hook(Box::new(|info| {
        log::log(proxy_wasm::types::LogLevel::Critical, &info.to_string());
    }));
    proxy_wasm::set_root_context(|context_id| Box::new(root::Root::new(context_id)));
}}
