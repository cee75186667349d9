//! A model call under the token budgets, from the request's callbacks: its
//! body held until whole (and asked for the engine's usage when the client
//! did not ask), its estimate reserved in the user's shared ledger before
//! anything goes upstream, its reply metered (and given back the stream
//! the client asked for, or ended at the hard stop), and the reservation
//! replaced by the real usage when the request ends.

use super::abi::{self, Status};
use super::budgets::{Budgets, Who};
use super::ledger_shared;
use super::log::log;
use super::request::{Admitted, RequestState};
use super::stream;
use super::vm::Vm;
use crate::budget::config::Budget;
use crate::budget::estimate::estimate;
use crate::budget::hard_stop::{closing_frame, frames};
use crate::budget::include_usage::ask_for_usage;
use crate::budget::meter::Meter;
use crate::budget::refusal;
use crate::budget::settle::{self, Charge, Ending};
use crate::budget::usage_strip::UsageStrip;
use crate::identity::Identity;
use crate::memory::routes::{ModelRoute, WireFormat};
use crate::reply;
use attach_contract::usage::{Outcome, Record};
use proxy_wasm::types::{BufferType, LogLevel};

/// The request's body, as far as the budget is concerned.
pub enum BodyStep {
    /// More is coming: keep holding it.
    Wait,
    /// Answered (too large, or unreadable).
    Answered,
    /// Whole: decide on it.
    Whole,
}

fn parts(vm: &Vm, route: usize) -> Option<(&Budget, &ModelRoute, &Budgets)> {
    let budget = vm.config.budget.as_ref()?;
    Some((budget, budget.routes.get(route)?, vm.budgets.as_ref()?))
}

/// The body so far (the host hands each callback all of it): too large,
/// refused; whole, kept for the estimate, and rewritten to ask the engine
/// for its usage when the client streams from OpenAI's API without.
pub fn body(vm: &Vm, st: &mut RequestState, size: usize, end_of_stream: bool) -> BodyStep {
    let Some(m) = st.metered.as_mut() else {
        return BodyStep::Whole;
    };
    let Some((budget, route, budgets)) = parts(vm, m.route) else {
        return BodyStep::Whole;
    };
    if size > budget.max_request_bytes {
        budgets.refused(m.route, None);
        stream::send(&refusal::too_large(budget.max_request_bytes));
        return BodyStep::Answered;
    }
    if !end_of_stream {
        return BodyStep::Wait;
    }
    let body = match stream::body_chunk(BufferType::HttpRequestBody, size) {
        Ok(body) => body,
        Err(status) => {
            stream::fail_closed("reading a model request", status);
            return BodyStep::Answered;
        }
    };
    if route.format == WireFormat::OpenAi {
        if let Some(asking) = ask_for_usage(&body) {
            if let Err((what, status)) = send_instead(size, &asking) {
                stream::fail_closed(what, status);
                return BodyStep::Answered;
            }
            m.asked_for_usage = true;
        }
    }
    m.body = Some(body);
    BodyStep::Whole
}

/// Sends `body` upstream instead of the client's `size` bytes; its length
/// header goes (Envoy frames the new body itself).
fn send_instead(size: usize, body: &[u8]) -> Result<(), (&'static str, Status)> {
    abi::set_buffer(BufferType::HttpRequestBody, 0, size, body)
        .map_err(|s| ("asking the engine for its usage", s))?;
    stream::remove_request_header("content-length").map_err(|s| ("resizing a model request", s))
}

/// Reserves the request's estimate for `identity`, or refuses it with
/// the budget's answer. `false`: the request was answered.
pub fn admit(vm: &Vm, st: &mut RequestState, identity: &Identity, now_ms: u64) -> bool {
    let accepts_encoding = st.head.accepts_encoding;
    let Some(m) = st.metered.as_mut() else {
        return true;
    };
    let Some((budget, route, budgets)) = parts(vm, m.route) else {
        return true;
    };
    // The reply is metered as it passes: it must come uncompressed. (Done
    // before the reservation, which nothing may fail after: it would stay
    // held until its window passed.)
    if accepts_encoding {
        if let Err(status) = stream::remove_request_header("accept-encoding") {
            stream::fail_closed("removing accept-encoding", status);
            return false;
        }
    }
    let ask = estimate(
        route,
        m.body.as_deref().unwrap_or_default(),
        budget.default_max_tokens,
    );
    let limits = budget.policy.limits(
        &budgets.overrides.borrow(),
        &identity.user,
        ask.model.as_deref(),
    );
    let reservation = if limits.is_empty() {
        None
    } else {
        let reserved = ledger_shared::update(&identity.user, |ledger| {
            match ledger.reserve(&limits, now_ms, ask.tokens()) {
                Ok(reservation) => (Ok(reservation), true),
                Err(refused) => (Err(refused), false),
            }
        });
        match reserved {
            Some(Ok(reservation)) => Some(reservation),
            Some(Err(refused)) => {
                let who = Who {
                    user: &identity.user,
                    model: ask.model.as_deref(),
                };
                budgets.refused(m.route, Some(who));
                budgets.served(&identity.user, &limits, now_ms);
                let nothing = Charge {
                    tokens_in: 0,
                    tokens_out: 0,
                    estimated: false,
                };
                record(budgets, who, route, now_ms, nothing, Outcome::Refused);
                stream::send(&refusal::refused(&refused));
                return false;
            }
            None => {
                log(
                    LogLevel::Warn,
                    "attach: a user's token ledger cannot be read or written: request refused",
                );
                stream::send(&reply::unavailable());
                return false;
            }
        }
    };
    let who = Who {
        user: &identity.user,
        model: ask.model.as_deref(),
    };
    budgets.admitted(m.route, who);
    budgets.served(&identity.user, &limits, now_ms);
    m.admitted = Some(Admitted {
        user: identity.user.clone(),
        ask,
        limits,
        reservation,
        meter: None,
        strip: None,
        status: None,
        ended: false,
        stopped: false,
    });
    true
}

/// The reply's head: its status and framing for the meter, the budget's
/// headers for the client, and a stream to give back as it was asked for
/// loses its length.
pub fn response_head(
    st: &mut RequestState,
    status: Option<u16>,
    content_type: Option<&str>,
    encoding: Option<&str>,
) {
    let Some(m) = st.metered.as_mut() else { return };
    let asked_for_usage = m.asked_for_usage;
    let Some(a) = m.admitted.as_mut() else { return };
    a.status = status;
    let readable = encoding.is_none_or(|e| e.eq_ignore_ascii_case("identity"));
    if readable {
        a.meter = Some(Meter::new(a.ask.format, a.ask.stream, content_type));
    }
    let event_stream = content_type.is_some_and(|t| t.starts_with("text/event-stream"));
    if asked_for_usage && event_stream && readable {
        match stream::remove_response_header("content-length") {
            Ok(()) => a.strip = Some(UsageStrip::new()),
            Err(status) => log(
                LogLevel::Warn,
                &format!("attach: cannot resize a model reply ({status:?}): its usage event stays"),
            ),
        }
    }
    if let Some(report) = a.reservation.as_ref().and_then(|r| r.report.as_ref()) {
        for (name, value) in refusal::headers(report) {
            if let Err(status) = stream::set_response_header(name, &value) {
                log(
                    LogLevel::Debug,
                    &format!("attach: cannot set {name} on a model reply: {status:?}"),
                );
            }
        }
    }
}

/// A reply chunk the host could not hand over: the meter has a gap, so
/// the call is charged its estimate.
pub fn unreadable(st: &mut RequestState) {
    if let Some(a) = st.metered.as_mut().and_then(|m| m.admitted.as_mut()) {
        a.meter = None;
    }
}

/// A reply chunk: metered, then passed as it is, without the usage the
/// client did not ask for, or cut at the hard stop. With the hard stop on,
/// the chunk is taken a frame at a time, so the stop falls right after
/// the frame that passed the margin (Envoy hands several frames at once).
pub fn response_chunk(
    vm: &Vm,
    st: &mut RequestState,
    chunk: &[u8],
    end_of_stream: bool,
    now_ms: u64,
) {
    let Some(m) = st.metered.as_mut() else { return };
    let Some((budget, route, _)) = parts(vm, m.route) else {
        return;
    };
    let Some(a) = m.admitted.as_mut() else { return };
    a.ended |= end_of_stream;
    if a.stopped {
        replace(chunk.len(), &[]);
        return;
    }
    let stops = a.ask.stream && a.reservation.is_some() && a.meter.is_some();
    let margin = budget.hard_stop_margin.filter(|_| stops);
    let Some(margin) = margin else {
        if let Some(meter) = a.meter.as_mut() {
            meter.feed(chunk);
        }
        if let Some(out) = a.strip.as_mut().map(|s| s.chunk(chunk, end_of_stream)) {
            if out != chunk {
                replace(chunk.len(), &out);
            }
        }
        return;
    };
    let most = a.ask.tokens_out.saturating_add(margin);
    let pieces = frames(chunk, a.ask.format);
    let last = pieces.len().saturating_sub(1);
    let mut out = Vec::with_capacity(chunk.len());
    for (i, piece) in pieces.into_iter().enumerate() {
        let Some(meter) = a.meter.as_mut() else { break };
        meter.feed(piece);
        match a.strip.as_mut() {
            Some(strip) => out.extend(strip.chunk(piece, end_of_stream && i == last)),
            None => out.extend_from_slice(piece),
        }
        if meter.tokens_so_far() > most {
            let model = meter.model().or(a.ask.model.as_deref());
            out.extend(closing_frame(
                a.ask.format,
                route.kind,
                model,
                meter.id(),
                now_ms,
            ));
            a.stopped = true;
            break;
        }
    }
    if out != chunk {
        replace(chunk.len(), &out);
    }
}

fn replace(size: usize, with: &[u8]) {
    if let Err(status) = stream::replace_response_body(size, with) {
        log(
            LogLevel::Warn,
            &format!("attach: cannot rewrite a model reply ({status:?}): resetting it"),
        );
        stream::reset_response();
    }
}

/// The request is over: its reservation is replaced by what it used, and
/// its usage counted and recorded.
pub fn finish(vm: &Vm, st: &mut RequestState, now_ms: u64) {
    let Some(m) = st.metered.take() else { return };
    let (Some(a), Some((_, route, budgets))) = (m.admitted, parts(vm, m.route)) else {
        return;
    };
    let ending = Ending {
        status: a.status,
        ended: a.ended,
        stopped: a.stopped,
    };
    let charge = match a.meter {
        Some(meter) => settle::charge(&a.ask, &meter.finish(), ending),
        // An unreadable reply is charged its estimate.
        None => Charge {
            tokens_in: a.ask.tokens_in,
            tokens_out: a.ask.tokens_out,
            estimated: true,
        },
    };
    if let Some(reservation) = &a.reservation {
        let settled = ledger_shared::update(&a.user, |ledger| {
            ledger.settle(&a.limits, reservation, now_ms, charge.tokens());
            ((), true)
        });
        if settled.is_none() {
            log(
                LogLevel::Warn,
                "attach: a model call's usage could not replace its reservation",
            );
        }
    }
    let who = Who {
        user: &a.user,
        model: a.ask.model.as_deref(),
    };
    budgets.tokens(m.route, who, charge.tokens_in, charge.tokens_out);
    record(budgets, who, route, now_ms, charge, settle::outcome(ending));
}

/// Queues the usage record of `who`'s call on `route`.
fn record(
    budgets: &Budgets,
    who: Who<'_>,
    route: &ModelRoute,
    now_ms: u64,
    charge: Charge,
    outcome: Outcome,
) {
    budgets.record(&Record {
        id: budgets.record_id(),
        user: who.user.to_string(),
        model: who.model.unwrap_or_default().to_string(),
        route: route.path.clone(),
        at_ms: now_ms,
        tokens_in: charge.tokens_in,
        tokens_out: charge.tokens_out,
        estimated: charge.estimated,
        outcome,
    });
}
