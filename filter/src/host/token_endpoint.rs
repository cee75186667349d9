//! The token endpoint's host side: the form body is buffered whole, then
//! [`crate::token_exchange`] answers it, from the request's callback or,
//! after a wait for a token issuer's keys, from [`super::wake`].

use super::clock::now_ms;
use super::decide::Step;
use super::request::RequestState;
use super::stream;
use super::vm::Vm;
use crate::token_exchange::{self, Context, Exchange, KeyWait};
use std::cell::RefCell;

/// Answers the buffered token request in `state`. `waited`: the request
/// already waited once for keys, so a second wait is answered with a 503.
pub fn answer(vm: &Vm, state: &RefCell<RequestState>, waited: bool) -> Step {
    let Some(signing) = &vm.config.signing else {
        return Step::Replied;
    };
    let outcome = {
        let st = state.borrow();
        token_exchange::exchange(
            Context {
                cfg: &vm.config,
                signing,
                keys: &*vm.keys.borrow(),
                cache: &mut vm.cache.borrow_mut(),
                tokens: &mut vm.identity_tokens.borrow_mut(),
                user_agent: &st.head.user_agent,
                refetched: st.refetched,
                now: now_ms() / 1_000,
            },
            st.token_request.as_deref().unwrap_or_default(),
        )
    };
    match outcome {
        Exchange::Reply(reply) => stream::send(&reply),
        Exchange::Wait(KeyWait::Keys(issuer)) if !waited => {
            return Step::Wait { issuer };
        }
        Exchange::Wait(KeyWait::Kid(issuer))
            if !state.borrow().refetched && vm.request_refetch(issuer) =>
        {
            state.borrow_mut().refetched = true;
            return Step::Wait { issuer };
        }
        Exchange::Wait(wait) => stream::send(&token_exchange::unresolved(wait)),
    }
    Step::Replied
}
