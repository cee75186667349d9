//! One user's token ledger: what the user spent in each window of each
//! limit, including the reservations of requests still in flight, and what
//! the other gateways report they spent.
//!
//! The ledger lives in Envoy's shared data, one record per user, which
//! every worker reads, changes and writes back by compare-and-swap; so it
//! decodes whatever bytes it finds (another version may have written them)
//! and encodes to a small, bounded record.
//!
//! A window of `S` seconds is made of `min(S, 60)` slots of `S * 1000 /
//! slots` milliseconds. Tokens go into the slot of the time they are
//! counted at, and a slot counts for as long as its end lies within the
//! last `S` seconds: a token counts for at least the whole window and at
//! most one slot longer, so the budget is never overspent by the
//! granularity. A reservation that outlives its window (a reply longer
//! than the window) stops counting with its slot, so that a worker that
//! never settles leaks nothing for long.

use attach_contract::budget::{Limit, MAX_WINDOW_SECONDS};

/// The record's format; another one decodes as an empty ledger.
pub const VERSION: u8 = 1;
/// The most limit keys a record keeps: a user's request has far fewer
/// limits (see `MAX_WINDOWS` in [`super::config`]); the stalest go first.
pub const MAX_KEYS: usize = 32;
/// The most slots a record may give one key: pruned against the latest
/// time, a window holds at most 62 (its own 60 or fewer, the one it is in,
/// and one for the rounding of long slots).
pub const MAX_SLOTS: usize = 64;
/// The most bytes [`Ledger::encode`] writes, whatever the ledger holds.
pub const MAX_ENCODED_BYTES: usize = 1 + 2 * 10 + MAX_KEYS * (8 + 3 * 10 + 1 + MAX_SLOTS * 20);
/// The most slots a window is made of.
const SLOTS_PER_WINDOW: u64 = 60;

/// One user's record (see the module documentation).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ledger {
    /// The latest time the ledger was changed at: what it is pruned against.
    latest_ms: u64,
    keys: Vec<Key>,
}

/// The usage of one limit key: a scope and a window length.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Key {
    /// [`scope_id`] of the scope's name.
    scope: u64,
    seconds: u64,
    /// `(slot index, tokens)`, by index. Signed: settling takes a
    /// reservation back out of its slot.
    slots: Vec<(u64, i64)>,
    /// The other gateways' tokens in this window at their last sync.
    remote: u64,
    remote_at_ms: u64,
}

/// What a limit looks like now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Report {
    pub limit: u64,
    pub remaining: u64,
    /// How long until the window holds none of this gateway's tokens
    /// (OpenAI's meaning of the reset header).
    pub reset_ms: u64,
}

/// Tokens held for a request until [`Ledger::settle`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reservation {
    pub at_ms: u64,
    pub tokens: u64,
    /// The most constraining limit after the reservation (least remaining);
    /// `None` without limits.
    pub report: Option<Report>,
}

/// Why a reservation was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// The limit that refused (of several, the one that frees up last).
    pub limit: Limit,
    /// How long until the reservation fits, counting the other gateways'
    /// tokens as they are; `None` when it never can (it asks for more than
    /// the whole window allows).
    pub retry_after_ms: Option<u64>,
    /// The refusing limit as it is.
    pub report: Report,
}

/// A scope's name as a key: the records stay small whatever the
/// configuration calls its model rules (64-bit FNV-1a).
fn scope_id(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn slot_ms(seconds: u64) -> u64 {
    seconds.saturating_mul(1_000) / seconds.clamp(1, SLOTS_PER_WINDOW)
}

/// The first moment slot `index` of a window of `seconds` no longer
/// counts: its end is then a whole window ago.
fn leaves_at(seconds: u64, index: u64) -> u64 {
    index
        .saturating_add(1)
        .saturating_mul(slot_ms(seconds))
        .saturating_add(seconds.saturating_mul(1_000))
}

impl Key {
    fn new(scope: u64, seconds: u64) -> Key {
        Key {
            scope,
            seconds,
            slots: Vec::new(),
            remote: 0,
            remote_at_ms: 0,
        }
    }

    fn span_ms(&self) -> u64 {
        self.seconds.saturating_mul(1_000)
    }

    fn slot_of(&self, at_ms: u64) -> u64 {
        at_ms / slot_ms(self.seconds).max(1)
    }

    fn leaves_at(&self, index: u64) -> u64 {
        leaves_at(self.seconds, index)
    }

    /// The first moment the remote figure is older than the window.
    fn remote_leaves_at(&self) -> u64 {
        self.remote_at_ms.saturating_add(self.span_ms())
    }

    fn local(&self, now_ms: u64) -> u64 {
        let sum: i64 = self
            .slots
            .iter()
            .filter(|(i, _)| now_ms < self.leaves_at(*i))
            .fold(0i64, |s, (_, t)| s.saturating_add(*t));
        sum.max(0) as u64
    }

    fn remote(&self, now_ms: u64) -> u64 {
        if now_ms < self.remote_leaves_at() {
            self.remote
        } else {
            0
        }
    }

    fn usage(&self, now_ms: u64) -> u64 {
        self.local(now_ms).saturating_add(self.remote(now_ms))
    }

    fn add(&mut self, at_ms: u64, tokens: i64) {
        let index = self.slot_of(at_ms);
        match self.slots.binary_search_by_key(&index, |(i, _)| *i) {
            Ok(found) => {
                if let Some((_, t)) = self.slots.get_mut(found) {
                    *t = t.saturating_add(tokens);
                }
            }
            Err(at) => self.slots.insert(at, (index, tokens)),
        }
    }

    /// Drops the slots that no longer count (and the empty ones).
    fn prune(&mut self, now_ms: u64) {
        let seconds = self.seconds;
        self.slots
            .retain(|(i, t)| *t != 0 && now_ms < leaves_at(seconds, *i));
    }

    fn is_empty(&self, now_ms: u64) -> bool {
        self.slots.is_empty() && self.remote(now_ms) == 0
    }

    /// When the key last saw anything: the staleness order of [`MAX_KEYS`].
    fn last_ms(&self) -> u64 {
        let last_slot = self
            .slots
            .last()
            .map_or(0, |(i, _)| i.saturating_mul(slot_ms(self.seconds)));
        last_slot.max(self.remote_at_ms)
    }

    /// The moment the last of this gateway's tokens leaves the window.
    fn reset_at(&self, now_ms: u64) -> u64 {
        self.slots
            .iter()
            .filter(|(_, t)| *t > 0)
            .map(|(i, _)| self.leaves_at(*i))
            .filter(|l| now_ms < *l)
            .max()
            .unwrap_or(now_ms)
    }

    /// How long until `tokens` fit under `limit`, or `None` if they never
    /// can. Exact to the millisecond: the usage falls only when a slot or
    /// the remote figure leaves the window.
    fn retry_after(&self, limit: u64, now_ms: u64, tokens: u64) -> Option<u64> {
        if tokens > limit {
            return None;
        }
        // The moments the usage falls, earliest first (a window holds at
        // most `MAX_SLOTS` slots: taking each next one by a scan costs less
        // code than a sort).
        let leaves = || {
            self.slots
                .iter()
                .map(|(i, _)| self.leaves_at(*i))
                .chain(std::iter::once(self.remote_leaves_at()))
        };
        let mut moment = now_ms;
        loop {
            if self.usage(moment).saturating_add(tokens) <= limit {
                return Some(moment - now_ms);
            }
            moment = leaves().filter(|m| *m > moment).min()?;
        }
    }
}

impl Ledger {
    /// Reads a record; anything but a whole record of this version (none
    /// yet, another version's, a torn or hostile one) is an empty ledger.
    pub fn decode(bytes: &[u8]) -> Ledger {
        decode(bytes).unwrap_or_default()
    }

    /// The record: versioned, without the slots that no longer count, at
    /// most [`MAX_KEYS`] keys (the stalest dropped), at most
    /// [`MAX_ENCODED_BYTES`].
    pub fn encode(&self) -> Vec<u8> {
        let mut ledger = self.clone();
        ledger.prune();
        let mut out = vec![VERSION];
        varint(&mut out, ledger.latest_ms);
        varint(&mut out, ledger.keys.len() as u64);
        for key in &ledger.keys {
            out.extend_from_slice(&key.scope.to_le_bytes());
            varint(&mut out, key.seconds);
            varint(&mut out, key.remote);
            varint(&mut out, key.remote_at_ms);
            varint(&mut out, key.slots.len() as u64);
            let mut previous = 0;
            for (i, (index, tokens)) in key.slots.iter().enumerate() {
                varint(&mut out, if i == 0 { *index } else { index - previous });
                varint(&mut out, zigzag(*tokens));
                previous = *index;
            }
        }
        out
    }

    /// Reserves `tokens` in every limit at once, or in none: refused when
    /// one of them cannot take them now.
    pub fn reserve(
        &mut self,
        limits: &[Limit],
        now_ms: u64,
        tokens: u64,
    ) -> Result<Reservation, Refusal> {
        self.advance(now_ms);
        let mut refusal: Option<Refusal> = None;
        for limit in limits {
            let key = self.find(limit);
            let used = key.map_or(0, |k| k.usage(now_ms));
            if used.saturating_add(tokens) <= limit.window.tokens {
                continue;
            }
            let retry_after_ms = match key {
                Some(k) => k.retry_after(limit.window.tokens, now_ms, tokens),
                None => None,
            };
            let later = match (&refusal, retry_after_ms) {
                (None, _) => true,
                (Some(r), Some(ms)) => r.retry_after_ms.is_some_and(|other| ms > other),
                (Some(r), None) => r.retry_after_ms.is_some(),
            };
            if later {
                refusal = Some(Refusal {
                    limit: limit.clone(),
                    retry_after_ms,
                    report: self.report_one(limit, now_ms),
                });
            }
        }
        if let Some(refusal) = refusal {
            return Err(refusal);
        }
        let signed = i64::try_from(tokens).unwrap_or(i64::MAX);
        for limit in limits {
            if let Some(key) = self.key_mut(limit) {
                key.add(now_ms, signed);
            }
        }
        self.prune();
        Ok(Reservation {
            at_ms: now_ms,
            tokens,
            report: self.report(limits, now_ms),
        })
    }

    /// Replaces a reservation with what the request really cost: the
    /// reservation leaves the slot it went into (unless that slot has left
    /// the window already) and `tokens` are counted at `now_ms`.
    pub fn settle(
        &mut self,
        limits: &[Limit],
        reservation: &Reservation,
        now_ms: u64,
        tokens: u64,
    ) {
        self.advance(now_ms);
        let held = i64::try_from(reservation.tokens).unwrap_or(i64::MAX);
        let signed = i64::try_from(tokens).unwrap_or(i64::MAX);
        for limit in limits {
            let Some(key) = self.key_mut(limit) else {
                continue;
            };
            let index = key.slot_of(reservation.at_ms);
            let counts = now_ms < key.leaves_at(index);
            if let Some((_, t)) = key.slots.iter_mut().find(|(i, _)| *i == index) {
                if counts {
                    *t = t.saturating_sub(held);
                }
            }
            key.add(now_ms, signed);
        }
        self.prune();
    }

    /// Counts `tokens` at `now_ms` in every limit, with no reservation
    /// (usage metered after the fact).
    pub fn charge(&mut self, limits: &[Limit], now_ms: u64, tokens: u64) {
        self.advance(now_ms);
        let signed = i64::try_from(tokens).unwrap_or(i64::MAX);
        for limit in limits {
            if let Some(key) = self.key_mut(limit) {
                key.add(now_ms, signed);
            }
        }
        self.prune();
    }

    /// What the other gateways spent in the window of `seconds` of `scope`
    /// (its name: `*` or a model rule's pattern), as the last sync said.
    pub fn set_remote(&mut self, scope: &str, seconds: u64, tokens: u64, now_ms: u64) {
        self.advance(now_ms);
        if let Some(key) = self.key_by(scope_id(scope), seconds) {
            key.remote = tokens;
            key.remote_at_ms = now_ms;
        }
        self.prune();
    }

    /// The most constraining of `limits` now (least remaining, then the
    /// longest reset); `None` without limits.
    pub fn report(&self, limits: &[Limit], now_ms: u64) -> Option<Report> {
        limits
            .iter()
            .map(|l| self.report_one(l, now_ms))
            .min_by_key(|r| (r.remaining, std::cmp::Reverse(r.reset_ms)))
    }

    /// The tokens counted in `limit`'s window now, this gateway's and the
    /// others'.
    pub fn usage(&self, limit: &Limit, now_ms: u64) -> u64 {
        self.find(limit).map_or(0, |k| k.usage(now_ms))
    }

    fn report_one(&self, limit: &Limit, now_ms: u64) -> Report {
        let key = self.find(limit);
        let used = key.map_or(0, |k| k.usage(now_ms));
        Report {
            limit: limit.window.tokens,
            remaining: limit.window.tokens.saturating_sub(used),
            reset_ms: key.map_or(0, |k| k.reset_at(now_ms) - now_ms),
        }
    }

    fn advance(&mut self, now_ms: u64) {
        self.latest_ms = self.latest_ms.max(now_ms);
    }

    fn find(&self, limit: &Limit) -> Option<&Key> {
        let scope = scope_id(limit.scope.name());
        self.keys
            .iter()
            .find(|k| k.scope == scope && k.seconds == limit.window.seconds)
    }

    fn key_mut(&mut self, limit: &Limit) -> Option<&mut Key> {
        self.key_by(scope_id(limit.scope.name()), limit.window.seconds)
    }

    /// The key, added when missing (always `Some`).
    fn key_by(&mut self, scope: u64, seconds: u64) -> Option<&mut Key> {
        let found = self
            .keys
            .iter()
            .position(|k| k.scope == scope && k.seconds == seconds);
        match found {
            Some(at) => self.keys.get_mut(at),
            None => {
                self.keys.push(Key::new(scope, seconds));
                self.keys.last_mut()
            }
        }
    }

    /// Prunes every key against the latest time, drops the empty ones and
    /// the stalest past [`MAX_KEYS`].
    fn prune(&mut self) {
        let now = self.latest_ms;
        for key in &mut self.keys {
            key.prune(now);
        }
        self.keys.retain(|k| !k.is_empty(now));
        while self.keys.len() > MAX_KEYS {
            let stalest = (0..self.keys.len()).min_by_key(|&i| self.keys.get(i).map(Key::last_ms));
            match stalest {
                Some(i) => {
                    self.keys.swap_remove(i);
                }
                None => break,
            }
        }
    }
}

fn varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn zigzag(n: i64) -> u64 {
    ((n << 1) ^ (n >> 63)) as u64
}

fn unzigzag(n: u64) -> i64 {
    ((n >> 1) as i64) ^ -((n & 1) as i64)
}

/// Reads what [`Ledger::encode`] writes, refusing anything else.
struct Reader<'a> {
    bytes: std::slice::Iter<'a, u8>,
}

impl Reader<'_> {
    fn byte(&mut self) -> Option<u8> {
        self.bytes.next().copied()
    }

    fn varint(&mut self) -> Option<u64> {
        let mut n = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            let part = u64::from(b & 0x7f);
            if shift == 63 && part > 1 {
                return None;
            }
            n |= part << shift;
            if b & 0x80 == 0 {
                return Some(n);
            }
        }
        None
    }

    fn fixed(&mut self) -> Option<u64> {
        let mut word = [0u8; 8];
        for b in &mut word {
            *b = self.byte()?;
        }
        Some(u64::from_le_bytes(word))
    }
}

fn decode(bytes: &[u8]) -> Option<Ledger> {
    let mut r = Reader {
        bytes: bytes.iter(),
    };
    if r.byte()? != VERSION {
        return None;
    }
    let latest_ms = r.varint()?;
    let count = r.varint()?;
    if count > MAX_KEYS as u64 {
        return None;
    }
    let mut keys: Vec<Key> = Vec::new();
    for _ in 0..count {
        let scope = r.fixed()?;
        let seconds = r.varint()?;
        if !(1..=MAX_WINDOW_SECONDS).contains(&seconds)
            || keys
                .iter()
                .any(|k| k.scope == scope && k.seconds == seconds)
        {
            return None;
        }
        let mut key = Key::new(scope, seconds);
        key.remote = r.varint()?;
        key.remote_at_ms = r.varint()?;
        let slots = r.varint()?;
        if slots > MAX_SLOTS as u64 {
            return None;
        }
        let mut index = 0u64;
        for i in 0..slots {
            let step = r.varint()?;
            if i > 0 && step == 0 {
                return None;
            }
            index = index.checked_add(step)?;
            key.slots.push((index, unzigzag(r.varint()?)));
        }
        keys.push(key);
    }
    if r.byte().is_some() {
        return None;
    }
    Some(Ledger { latest_ms, keys })
}

#[cfg(test)]
mod tests {
    use super::*;
    use attach_contract::budget::{Scope, Window};
    use proptest::prelude::*;

    /// A moment on a whole second (and on no coarser slot boundary).
    const T0: u64 = 1_765_000_000_000;

    fn limit(scope: &str, seconds: u64, tokens: u64) -> Limit {
        Limit {
            scope: Scope::from_name(scope),
            window: Window {
                seconds,
                tokens,
                status: 429,
            },
        }
    }

    /// Admitted exactly `ms` after `now`, refused a millisecond before.
    fn fits_after(ledger: &Ledger, limits: &[Limit], now: u64, tokens: u64, ms: u64) {
        assert!(ledger.clone().reserve(limits, now + ms, tokens).is_ok());
        if ms > 0 {
            assert!(
                ledger
                    .clone()
                    .reserve(limits, now + ms - 1, tokens)
                    .is_err()
            );
        }
    }

    #[test]
    fn a_minute_window_rolls_over_time() {
        let minute = [limit("*", 60, 100)];
        let mut l = Ledger::default();
        let r = l.reserve(&minute, T0 + 400, 60).unwrap();
        assert_eq!(
            r.report,
            Some(Report {
                limit: 100,
                remaining: 40,
                // The slot [T0, T0 + 1 s) counts until its end is a minute ago.
                reset_ms: 61_000 - 400,
            })
        );
        let now = T0 + 30_000;
        let refused = l.clone().reserve(&minute, now, 50).unwrap_err();
        assert_eq!(refused.limit, minute[0]);
        assert_eq!(refused.retry_after_ms, Some(31_000));
        assert_eq!(
            refused.report,
            Report {
                limit: 100,
                remaining: 40,
                reset_ms: 31_000
            }
        );
        fits_after(&l, &minute, now, 50, 31_000);
        assert!(
            l.clone().reserve(&minute, now, 40).is_ok(),
            "what is left fits"
        );
        assert_eq!(l.usage(&minute[0], T0 + 60_999), 60);
        assert_eq!(l.usage(&minute[0], T0 + 61_000), 0);
        assert_eq!(
            l.report(&minute, T0 + 61_000),
            Some(Report {
                limit: 100,
                remaining: 100,
                reset_ms: 0
            })
        );
    }

    #[test]
    fn retry_after_waits_for_just_enough_slots_to_leave() {
        let minute = [limit("*", 60, 100)];
        let mut l = Ledger::default();
        for (at, tokens) in [(0, 30), (10_500, 30), (20_999, 30)] {
            l.reserve(&minute, T0 + at, tokens).unwrap();
        }
        let now = T0 + 25_000;
        // 90 used; 50 fit once the first two slots have left: the second
        // one, [T0 + 10 s, T0 + 11 s), at T0 + 71 s.
        let refused = l.clone().reserve(&minute, now, 50).unwrap_err();
        assert_eq!(refused.retry_after_ms, Some(46_000));
        fits_after(&l, &minute, now, 50, 46_000);
        // 20 fit after the first slot alone.
        let refused = l.clone().reserve(&minute, now, 20).unwrap_err();
        assert_eq!(refused.retry_after_ms, Some(36_000));
        fits_after(&l, &minute, now, 20, 36_000);
        // Reset: when the last slot has left.
        assert_eq!(l.report(&minute, now).unwrap().reset_ms, 81_000 - 25_000);
    }

    #[test]
    fn a_request_larger_than_the_window_never_fits() {
        let minute = [limit("*", 60, 100)];
        for mut l in [Ledger::default(), {
            let mut l = Ledger::default();
            l.charge(&minute, T0, 99);
            l
        }] {
            let refused = l.reserve(&minute, T0, 101).unwrap_err();
            assert_eq!(refused.retry_after_ms, None);
        }
        assert!(Ledger::default().reserve(&minute, T0, 100).is_ok());
    }

    #[test]
    fn several_windows_at_once_all_or_none() {
        let limits = [limit("*", 60, 100), limit("*", 86_400, 150)];
        let mut l = Ledger::default();
        l.reserve(&limits, T0, 90).unwrap();
        // The minute has room again after 61 s; the day has not.
        let now = T0 + 61_000;
        let refused = l.clone().reserve(&limits, now, 90).unwrap_err();
        assert_eq!(refused.limit, limits[1]);
        // The day's slots are 1440 s long: T0's slot ends at the next
        // multiple of 1,440,000 ms, and counts for a day after that.
        let day_slot_end = (T0 / 1_440_000 + 1) * 1_440_000;
        let retry = day_slot_end + 86_400_000 - now;
        assert_eq!(refused.retry_after_ms, Some(retry));
        fits_after(&l, &limits, now, 90, retry);
        // Refused means nothing was reserved, in either window.
        assert_eq!(l.usage(&limits[0], now), 0);
        assert_eq!(l.usage(&limits[1], now), 90);
        // Both refuse: the one that frees up last is named.
        let mut l = Ledger::default();
        l.reserve(&limits, T0, 100).unwrap();
        let refused = l.clone().reserve(&limits, T0 + 1_000, 60).unwrap_err();
        assert_eq!(refused.limit, limits[1]);
        // The report names the most constraining limit: least remaining.
        let r = l.reserve(&limits, T0 + 61_000, 40).unwrap();
        assert_eq!(r.report.unwrap().remaining, 10);
        assert_eq!(r.report.unwrap().limit, 150);
    }

    #[test]
    fn model_scopes_count_only_their_requests() {
        let all = limit("*", 60, 100);
        let llama = limit("llama3*", 60, 30);
        let for_llama = [all.clone(), llama.clone()];
        let for_other = [all.clone()];
        let mut l = Ledger::default();
        l.reserve(&for_llama, T0, 25).unwrap();
        let refused = l.clone().reserve(&for_llama, T0, 10).unwrap_err();
        assert_eq!(refused.limit, llama);
        assert_eq!(refused.report.remaining, 5);
        l.reserve(&for_other, T0, 70).unwrap();
        assert_eq!(l.usage(&all, T0), 95);
        assert_eq!(l.usage(&llama, T0), 25);
        // The same window length in another scope is another key.
        assert_eq!(l.usage(&limit("qwen*", 60, 30), T0), 0);
    }

    #[test]
    fn settling_replaces_the_reservation_with_the_real_cost() {
        let minute = [limit("*", 60, 100)];
        for (real, after) in [(20, 20), (80, 80), (0, 0), (150, 150)] {
            let mut l = Ledger::default();
            let r = l.reserve(&minute, T0, 50).unwrap();
            l.settle(&minute, &r, T0 + 5_000, real);
            assert_eq!(l.usage(&minute[0], T0 + 5_000), after, "{real}");
            // The charge counts from when it was made.
            assert_eq!(l.usage(&minute[0], T0 + 61_000), after);
            assert_eq!(l.usage(&minute[0], T0 + 66_000), 0);
        }
        // In the reservation's own slot.
        let mut l = Ledger::default();
        let r = l.reserve(&minute, T0, 50).unwrap();
        l.settle(&minute, &r, T0 + 10, 7);
        assert_eq!(l.usage(&minute[0], T0 + 10), 7);
        // A reply longer than the window: its reservation had left already.
        let mut l = Ledger::default();
        let r = l.reserve(&minute, T0, 50).unwrap();
        l.reserve(&minute, T0 + 61_000, 10).unwrap();
        l.settle(&minute, &r, T0 + 62_000, 30);
        assert_eq!(l.usage(&minute[0], T0 + 62_000), 40);
        // Another request's reservation stays.
        let mut l = Ledger::default();
        let a = l.reserve(&minute, T0, 40).unwrap();
        l.reserve(&minute, T0, 40).unwrap();
        l.settle(&minute, &a, T0 + 1_000, 10);
        assert_eq!(l.usage(&minute[0], T0 + 1_000), 50);
    }

    #[test]
    fn other_gateways_totals_count_until_they_are_a_window_old() {
        let minute = [limit("*", 60, 100)];
        let mut l = Ledger::default();
        l.set_remote("*", 60, 70, T0);
        assert_eq!(l.usage(&minute[0], T0), 70);
        let refused = l.clone().reserve(&minute, T0 + 1_000, 40).unwrap_err();
        assert_eq!(refused.retry_after_ms, Some(59_000));
        assert_eq!(
            refused.report.reset_ms, 0,
            "none of this gateway's tokens to wait for"
        );
        fits_after(&l, &minute, T0 + 1_000, 40, 59_000);
        l.reserve(&minute, T0 + 1_000, 30).unwrap();
        assert_eq!(l.usage(&minute[0], T0 + 1_000), 100);
        // A newer sync replaces the figure.
        l.set_remote("*", 60, 10, T0 + 2_000);
        assert_eq!(l.usage(&minute[0], T0 + 2_000), 40);
        assert_eq!(l.usage(&minute[0], T0 + 61_999), 40);
        assert_eq!(l.usage(&minute[0], T0 + 62_000), 0);
        // Local tokens that stay longer than the remote figure.
        let mut l = Ledger::default();
        l.set_remote("*", 60, 50, T0);
        l.charge(&minute, T0 + 30_000, 40);
        let refused = l.clone().reserve(&minute, T0 + 30_000, 20).unwrap_err();
        assert_eq!(refused.retry_after_ms, Some(30_000));
        // Model scopes have remote figures of their own.
        let llama = limit("llama3*", 60, 30);
        let mut l = Ledger::default();
        l.set_remote("llama3*", 60, 30, T0);
        assert_eq!(l.usage(&llama, T0), 30);
        assert_eq!(l.usage(&minute[0], T0), 0);
    }

    #[test]
    fn windows_of_other_lengths_have_their_own_slots() {
        // 90 s: 60 slots of 1.5 s; 7 s: 7 slots of 1 s.
        let long = [limit("*", 90, 10)];
        let mut l = Ledger::default();
        l.charge(&long, T0 + 100, 10);
        let slot_end = (T0 + 100) / 1_500 * 1_500 + 1_500;
        let refused = l.clone().reserve(&long, T0 + 100, 1).unwrap_err();
        assert_eq!(refused.retry_after_ms, Some(slot_end + 90_000 - (T0 + 100)));
        let short = [limit("*", 7, 10)];
        let mut l = Ledger::default();
        l.charge(&short, T0 + 999, 10);
        assert_eq!(l.usage(&short[0], T0 + 7_999), 10);
        assert_eq!(l.usage(&short[0], T0 + 8_000), 0);
        let one = [limit("*", 1, 10)];
        let mut l = Ledger::default();
        l.charge(&one, T0 + 500, 10);
        fits_after(&l, &one, T0 + 500, 1, 1_500);
    }

    #[test]
    fn records_read_back_and_anything_else_is_empty() {
        let limits = [limit("*", 60, 1_000), limit("llama3*", 86_400, 5_000)];
        let mut l = Ledger::default();
        let r = l.reserve(&limits, T0, 300).unwrap();
        l.charge(&limits, T0 + 2_500, 7);
        l.settle(&limits, &r, T0 + 3_000, 100);
        l.set_remote("*", 60, 55, T0 + 3_000);
        let bytes = l.encode();
        assert!(bytes.len() < 80, "{} bytes", bytes.len());
        let back = Ledger::decode(&bytes);
        assert_eq!(back, l);
        assert_eq!(back.encode(), bytes);
        for limit in &limits {
            assert_eq!(back.usage(limit, T0 + 3_000), l.usage(limit, T0 + 3_000));
        }
        // Every cut of a record, another version, garbage: empty.
        for cut in 0..bytes.len() {
            assert_eq!(Ledger::decode(&bytes[..cut]), Ledger::default(), "{cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(Ledger::decode(&longer), Ledger::default());
        let mut other = bytes.clone();
        other[0] = VERSION + 1;
        assert_eq!(Ledger::decode(&other), Ledger::default());
        for garbage in [
            &b""[..],
            b"\x01",
            b"\x01\xff\xff",
            b"{\"json\":1}",
            &[0xff; 64],
        ] {
            assert_eq!(Ledger::decode(garbage), Ledger::default());
        }
        // Slots out of every window are not written.
        let mut old = Ledger::default();
        old.charge(&limits[..1], T0, 5);
        old.charge(&limits[1..], T0 + 61_000, 1);
        let back = Ledger::decode(&old.encode());
        assert_eq!(back.keys.len(), 1);
        assert_eq!(Ledger::default().encode(), [VERSION, 0, 0]);
    }

    #[test]
    fn a_record_stays_bounded_whatever_happens() {
        let mut l = Ledger::default();
        // Forty model scopes, each a slot after the one before, each with
        // more than a day of slots, of the most tokens a slot can hold.
        let slot = 1_440_000;
        for n in 0..40u64 {
            let limits = [limit(&format!("model-{n}*"), 86_400, u64::MAX)];
            for s in 0..70u64 {
                l.charge(&limits, T0 + (n + s) * slot, u64::MAX / 4);
            }
        }
        // A minute of slots whose times go back and forth.
        let minute = [limit("*", 60, 10)];
        for s in 0..200u64 {
            let jitter = if s % 2 == 0 { 0 } else { 30_000 };
            l.charge(&minute, T0 + 108 * slot - 100_000 + s * 500 - jitter, 1);
        }
        let bytes = l.encode();
        assert!(bytes.len() <= MAX_ENCODED_BYTES, "{}", bytes.len());
        let back = Ledger::decode(&bytes);
        assert_eq!(back.keys.len(), MAX_KEYS);
        assert!(back.keys.iter().all(|k| k.slots.len() <= 62));
        // The stalest went: the first scopes, never the latest one.
        let latest = limit("model-39*", 86_400, u64::MAX);
        assert!(back.usage(&latest, T0 + 108 * slot) > 0);
        assert_eq!(back.usage(&limit("model-0*", 86_400, 1), T0), 0);
    }

    /// One step of a random run: time passes, then a request asks for
    /// `estimate` tokens, or the oldest request in flight ends having
    /// cost `real`.
    #[derive(Clone, Debug)]
    enum Step {
        Reserve { after_ms: u64, estimate: u64 },
        Settle { after_ms: u64, real: u64 },
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            (0u64..4_000, 0u64..120)
                .prop_map(|(after_ms, estimate)| Step::Reserve { after_ms, estimate }),
            (0u64..4_000, 0u64..160).prop_map(|(after_ms, real)| Step::Settle { after_ms, real }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Whatever requests arrive and however wrong their estimates, the
        /// tokens counted in any window (the charged ones at the moment
        /// they were charged, the reservations in flight at theirs) never
        /// exceed the limit by more than what settling added beyond what
        /// was held; and a request that fits is admitted.
        #[test]
        fn usage_never_passes_the_limit_by_more_than_the_settle_errors(
            steps in proptest::collection::vec(step(), 1..120),
        ) {
            let limits = [limit("*", 10, 300), limit("*", 60, 1_000)];
            let mut ledger = Ledger::default();
            let mut now = T0;
            // (at, tokens) of what the exact window sees.
            let mut charged: Vec<(u64, u64)> = Vec::new();
            let mut in_flight: Vec<Reservation> = Vec::new();
            let mut errors = 0u64;
            for s in steps {
                match s {
                    Step::Reserve { after_ms, estimate } => {
                        now += after_ms;
                        let fits = limits.iter().all(|l| {
                            ledger.usage(l, now) + estimate <= l.window.tokens
                        });
                        match ledger.reserve(&limits, now, estimate) {
                            Ok(r) => {
                                prop_assert!(fits);
                                in_flight.push(r);
                            }
                            Err(refusal) => {
                                prop_assert!(!fits);
                                if let Some(ms) = refusal.retry_after_ms {
                                    prop_assert!(ledger.clone().reserve(&limits, now + ms, estimate).is_ok());
                                }
                            }
                        }
                    }
                    Step::Settle { after_ms, real } => {
                        now += after_ms;
                        if in_flight.is_empty() {
                            continue;
                        }
                        let r = in_flight.remove(0);
                        // What the reservation still held in the tightest window.
                        let held_until = leaves_at(10, r.at_ms / 1_000);
                        let held = if now < held_until { r.tokens } else { 0 };
                        errors += real.saturating_sub(held);
                        ledger.settle(&limits, &r, now, real);
                        charged.push((now, real));
                    }
                }
                ledger = Ledger::decode(&ledger.encode());
                for l in &limits {
                    let start = now.saturating_sub(l.window.seconds * 1_000);
                    let exact: u64 = charged
                        .iter()
                        .map(|(at, t)| (*at, *t))
                        .chain(in_flight.iter().map(|r| (r.at_ms, r.tokens)))
                        .filter(|(at, _)| *at > start)
                        .map(|(_, t)| t)
                        .sum();
                    prop_assert!(exact <= ledger.usage(l, now), "the ledger never counts less");
                    prop_assert!(exact <= l.window.tokens + errors);
                }
            }
        }

        /// Arbitrary bytes decode without a panic, and what decodes
        /// encodes back to itself.
        #[test]
        fn any_bytes_decode(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let l = Ledger::decode(&bytes);
            let again = Ledger::decode(&l.encode());
            prop_assert_eq!(again.encode(), l.encode());
        }
    }
}
