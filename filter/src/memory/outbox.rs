//! One worker's delivery state: the batch it took from the shared queue,
//! whether it is on the wire, and when to try again.
//!
//! A batch stays here until the sink accepted it, so a sink that is down
//! only makes the shared queue grow (where the bound drops the oldest); the
//! ids are deterministic, so a batch delivered twice (a reply lost after a
//! write) is an upsert, not a duplicate. Events the sink refuses for good
//! are dropped alone: the rest of their batch (other users' events) stands.

/// Objects the sink keeps refusing one by one are dropped after this many
/// deliveries: a malformed event must not block the ones behind it.
pub const MAX_OBJECT_ATTEMPTS: u32 = 5;

#[derive(Debug, Default)]
pub struct Outbox {
    held: Vec<Vec<u8>>,
    in_flight: bool,
    /// Consecutive failed deliveries (transport errors, non-2xx).
    failures: u32,
    /// Deliveries of the current batch that left some objects refused.
    partial: u32,
    next_attempt_ms: u64,
}

/// How the sink's answer to a delivery is taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// 2xx: the body says which objects (if any) were refused.
    Accepted,
    /// A 4xx that says the batch itself is wrong (400, 413, 422, ...; the
    /// service also answers 400 when it refused every event): sending it
    /// again cannot help, and retrying it forever would block every event
    /// behind it, so it is dropped and counted.
    Rejected,
    /// No answer, 5xx, or a 4xx that may pass later (401/403 while keys
    /// roll, 408, 429): retried with backoff.
    Retry,
}

impl Verdict {
    pub fn of(status: Option<u16>) -> Verdict {
        match status {
            Some(200..=299) => Verdict::Accepted,
            Some(401 | 403 | 408 | 429) => Verdict::Retry,
            Some(400..=499) => Verdict::Rejected,
            _ => Verdict::Retry,
        }
    }
}

/// What a finished delivery changed, for the counters.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    pub sent: usize,
    pub retried: usize,
    pub dropped: usize,
}

impl Outbox {
    /// Nothing on the wire and no backoff pending.
    pub fn idle(&self, now_ms: u64) -> bool {
        !self.in_flight && now_ms >= self.next_attempt_ms
    }

    /// Takes a new batch from `pop` within the limits; returns how many
    /// items were taken. An item larger than `max_bytes` still goes, alone.
    /// A batch being retried is never topped up: during an outage each
    /// worker holds one batch and everything newer waits on the bounded
    /// queue (where the oldest make way), and refused objects keep their
    /// own attempt count.
    pub fn fill(
        &mut self,
        max_events: usize,
        max_bytes: usize,
        mut pop: impl FnMut() -> Option<Vec<u8>>,
    ) -> usize {
        if !self.held.is_empty() {
            return 0;
        }
        let mut bytes: usize = 0;
        let mut taken = 0;
        while self.held.len() < max_events && (self.held.is_empty() || bytes < max_bytes) {
            let Some(item) = pop() else { break };
            bytes = bytes.saturating_add(item.len());
            self.held.push(item);
            taken += 1;
        }
        taken
    }

    pub fn batch(&self) -> &[Vec<u8>] {
        &self.held
    }

    pub fn sending(&mut self) {
        self.in_flight = true;
    }

    /// The sink took the batch except `retry` (a subset of it, to send
    /// again) and `refused` more items it refused for good (dropped).
    pub fn delivered(
        &mut self,
        retry: Vec<Vec<u8>>,
        refused: usize,
        now_ms: u64,
        initial_ms: u64,
        max_ms: u64,
    ) -> Outcome {
        self.in_flight = false;
        self.failures = 0;
        let sent = self
            .held
            .len()
            .saturating_sub(retry.len())
            .saturating_sub(refused);
        if retry.is_empty() {
            self.held.clear();
            self.partial = 0;
            return Outcome {
                sent,
                retried: 0,
                dropped: refused,
            };
        }
        self.partial += 1;
        if self.partial >= MAX_OBJECT_ATTEMPTS {
            self.held.clear();
            self.partial = 0;
            return Outcome {
                sent,
                retried: 0,
                dropped: refused.saturating_add(retry.len()),
            };
        }
        let retried = retry.len();
        self.held = retry;
        self.next_attempt_ms = now_ms.saturating_add(backoff(self.partial, initial_ms, max_ms));
        Outcome {
            sent,
            retried,
            dropped: refused,
        }
    }

    /// The sink refused the batch for good: it is dropped.
    pub fn rejected(&mut self) -> Outcome {
        self.in_flight = false;
        self.failures = 0;
        self.partial = 0;
        let dropped = self.held.len();
        self.held.clear();
        Outcome {
            dropped,
            ..Outcome::default()
        }
    }

    /// The delivery failed as a whole; the batch waits for the next attempt.
    pub fn failed(&mut self, now_ms: u64, initial_ms: u64, max_ms: u64) -> Outcome {
        self.in_flight = false;
        self.failures = self.failures.saturating_add(1);
        self.next_attempt_ms = now_ms.saturating_add(backoff(self.failures, initial_ms, max_ms));
        Outcome {
            retried: self.held.len(),
            ..Outcome::default()
        }
    }
}

/// `initial · 2^(n-1)`, capped at `max`.
fn backoff(n: u32, initial_ms: u64, max_ms: u64) -> u64 {
    let shift = n.saturating_sub(1).min(30);
    initial_ms.saturating_mul(1 << shift).min(max_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(n: usize, size: usize) -> impl FnMut() -> Option<Vec<u8>> {
        let mut left = n;
        move || {
            (left > 0).then(|| {
                left -= 1;
                vec![b'x'; size]
            })
        }
    }

    #[test]
    fn batches_respect_count_and_bytes() {
        let mut o = Outbox::default();
        assert_eq!(o.fill(3, 1_000, source(10, 10)), 3);
        let mut o = Outbox::default();
        assert_eq!(
            o.fill(100, 25, source(10, 10)),
            3,
            "stops once the bytes are reached"
        );
        let mut o = Outbox::default();
        assert_eq!(
            o.fill(100, 25, source(10, 500)),
            1,
            "a large item goes alone"
        );
        let mut o = Outbox::default();
        assert_eq!(o.fill(100, 1_000, source(0, 1)), 0);
        assert!(o.batch().is_empty());
    }

    #[test]
    fn failures_back_off_and_keep_the_batch() {
        let mut o = Outbox::default();
        o.fill(10, 1_000, source(4, 1));
        o.sending();
        assert!(!o.idle(0), "one delivery at a time");
        assert_eq!(o.failed(1_000, 100, 350).retried, 4);
        assert!(!o.idle(1_099) && o.idle(1_100));
        o.sending();
        o.failed(2_000, 100, 350);
        assert!(!o.idle(2_199) && o.idle(2_200), "the delay doubles");
        o.sending();
        o.failed(3_000, 100, 350);
        assert!(o.idle(3_350), "capped at the maximum");
        assert_eq!(
            o.fill(10, 1_000, source(2, 1)),
            0,
            "a held batch is not topped up"
        );
        o.sending();
        let done = o.delivered(Vec::new(), 0, 4_000, 100, 350);
        assert_eq!(
            done,
            Outcome {
                sent: 4,
                retried: 0,
                dropped: 0
            }
        );
        assert!(
            o.batch().is_empty() && o.idle(4_000),
            "success resets the backoff"
        );
    }

    #[test]
    fn answers_are_sorted_into_accepted_rejected_and_retry() {
        assert_eq!(Verdict::of(Some(200)), Verdict::Accepted);
        assert_eq!(Verdict::of(Some(204)), Verdict::Accepted);
        for status in [400, 404, 413, 422] {
            assert_eq!(Verdict::of(Some(status)), Verdict::Rejected, "{status}");
        }
        for status in [
            Some(401),
            Some(403),
            Some(408),
            Some(429),
            Some(500),
            Some(503),
            None,
        ] {
            assert_eq!(Verdict::of(status), Verdict::Retry, "{status:?}");
        }
        let mut o = Outbox::default();
        o.fill(10, 1_000, source(3, 1));
        o.sending();
        assert_eq!(o.rejected().dropped, 3);
        assert!(
            o.batch().is_empty() && o.idle(0),
            "the next batch goes at once"
        );
    }

    #[test]
    fn refused_objects_are_retried_then_dropped() {
        let mut o = Outbox::default();
        o.fill(10, 1_000, source(3, 1));
        let refused = vec![b"bad".to_vec()];
        for attempt in 1..MAX_OBJECT_ATTEMPTS {
            o.sending();
            let out = o.delivered(refused.clone(), 0, 0, 10, 1_000);
            let sent = if attempt == 1 { 2 } else { 0 };
            assert_eq!(
                out,
                Outcome {
                    sent,
                    retried: 1,
                    dropped: 0
                }
            );
            assert_eq!(o.batch(), refused.as_slice());
            assert_eq!(o.fill(10, 1_000, source(5, 1)), 0, "retried alone");
        }
        o.sending();
        let out = o.delivered(refused, 0, 0, 10, 1_000);
        assert_eq!(out.dropped, 1);
        assert!(o.batch().is_empty());
    }

    #[test]
    fn events_refused_for_good_are_dropped_and_the_rest_delivered() {
        let mut o = Outbox::default();
        o.fill(10, 1_000, source(5, 1));
        o.sending();
        let out = o.delivered(Vec::new(), 2, 0, 10, 1_000);
        assert_eq!(
            out,
            Outcome {
                sent: 3,
                retried: 0,
                dropped: 2
            }
        );
        assert!(o.batch().is_empty() && o.idle(0), "nothing waits");

        // Both at once: the retried part stays, the refused part goes.
        o.fill(10, 1_000, source(5, 1));
        o.sending();
        let out = o.delivered(vec![b"x".to_vec()], 1, 0, 10, 1_000);
        assert_eq!(
            out,
            Outcome {
                sent: 3,
                retried: 1,
                dropped: 1
            }
        );
        assert_eq!(o.batch().len(), 1);
    }
}
