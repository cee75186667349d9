//! Resuming the requests parked for keys, from the root context: after a
//! key set arrived, and on every tick for the deadlines.

use super::abi;
use super::decide::{Step, decide};
use super::log::log;
use super::request::RequestState;
use super::stream;
use super::token_endpoint;
use super::vm::Vm;
use proxy_wasm::types::LogLevel;
use std::cell::RefCell;

/// Marks a request let through after its wait, and hands the capture the
/// body that arrived meanwhile (held, so it never went on unverified).
pub fn let_through(state: &RefCell<RequestState>) {
    let mut st = state.borrow_mut();
    st.let_through = true;
    if let (Some((body, end)), Some(capture)) = (st.held_body.take(), &mut st.capture) {
        capture.request_chunk(&body, end);
    }
}

/// Decides again on every waiting request whose fetch finished or whose
/// time is up, each in its own context; then returns to the root's.
pub fn wake(vm: &Vm, root_id: u32) {
    for waiter in vm.take_ready() {
        if abi::set_effective_context(waiter.context_id).is_err() {
            continue; // the client went away
        }
        let step = if waiter.state.borrow().token_request.is_some() {
            token_endpoint::answer(vm, &waiter.state, true)
        } else {
            decide(vm, &waiter.state, true)
        };
        match step {
            Step::Continue => {
                let_through(&waiter.state);
                stream::resume();
            }
            Step::Replied => {}
            Step::Wait { issuer } => vm.wait_again(waiter, issuer),
        }
    }
    if let Err(status) = abi::set_effective_context(root_id) {
        log(
            LogLevel::Warn,
            &format!("attach: cannot return to the root context: {status:?}"),
        );
    }
}
