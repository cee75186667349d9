//! The bytes one VM's captures may hold at once. A VM serves every request
//! of its worker, and running out of memory aborts it with all of them, so
//! what the mirror holds stays bounded however many exchanges are in flight.
//!
//! Request bodies and replies each draw from a pool of their own. A body is
//! held only until it can be parsed, but may be large; a reply is held a
//! little at a time for as long as it streams, which may be minutes. One
//! shared pool would let many long streams leave no room to read prompts,
//! or a burst of large uploads cut every reply short; apart, each runs out
//! on its own, and the most the VM holds is the sum of both limits.
//!
//! A pool counts the bytes kept, not their allocations, which growth may
//! round up (at most doubling them).

use std::cell::Cell;
use std::rc::Rc;

#[derive(Debug)]
pub struct Budget {
    requests: Rc<Pool>,
    replies: Rc<Pool>,
}

#[derive(Debug)]
struct Pool {
    used: Cell<usize>,
    limit: usize,
    /// Leases refused room at least once, not yet reported.
    refused: Cell<usize>,
}

impl Budget {
    pub fn new(request_limit: usize, reply_limit: usize) -> Rc<Self> {
        let pool = |limit| {
            Rc::new(Pool {
                used: Cell::new(0),
                limit,
                refused: Cell::new(0),
            })
        };
        Rc::new(Budget {
            requests: pool(request_limit),
            replies: pool(reply_limit),
        })
    }

    /// Room for one request body, empty at first.
    pub(super) fn for_request(&self) -> Lease {
        Lease::new(&self.requests)
    }

    /// Room for one reply, empty at first.
    pub(super) fn for_reply(&self) -> Lease {
        Lease::new(&self.replies)
    }

    /// How many replies were cut short for want of room since the last
    /// call. (A request body refused room gets a placeholder prompt, which
    /// is counted as such.)
    pub fn take_replies_cut(&self) -> usize {
        self.replies.refused.take()
    }
}

/// Bytes held from one pool, all given back when the lease is dropped, so
/// a capture that ends any way at all (finished, reset, abandoned) returns
/// what it held.
#[derive(Debug)]
pub struct Lease {
    pool: Rc<Pool>,
    held: usize,
    refused: bool,
}

impl Lease {
    fn new(pool: &Rc<Pool>) -> Self {
        Lease {
            pool: Rc::clone(pool),
            held: 0,
            refused: false,
        }
    }

    /// Takes `n` more bytes; past the pool's limit takes nothing and says
    /// so (the pool counts each lease it refused once).
    pub(super) fn grow(&mut self, n: usize) -> bool {
        let used = self.pool.used.get().saturating_add(n);
        if used > self.pool.limit {
            if !std::mem::replace(&mut self.refused, true) {
                let refused = &self.pool.refused;
                refused.set(refused.get().saturating_add(1));
            }
            return false;
        }
        self.pool.used.set(used);
        self.held = self.held.saturating_add(n);
        true
    }

    /// Gives back `n` bytes (at most what the lease holds).
    pub(super) fn shrink(&mut self, n: usize) {
        let n = n.min(self.held);
        self.held = self.held.saturating_sub(n);
        self.pool.used.set(self.pool.used.get().saturating_sub(n));
    }

    pub(super) fn release(&mut self) {
        self.shrink(self.held);
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leases_share_their_pool_and_give_back_on_drop() {
        let budget = Budget::new(10, 100);
        let mut a = budget.for_request();
        let mut b = budget.for_request();
        assert!(a.grow(6));
        assert!(!b.grow(5), "past the limit");
        assert!(b.grow(4), "a refusal took nothing");
        assert!(!b.grow(1));
        assert!(budget.for_reply().grow(100), "the other pool is apart");
        a.shrink(100);
        assert!(b.grow(6), "a gave back only what it held");
        drop(b);
        assert!(a.grow(10), "a dropped lease gives back all it held");
        a.release();
        assert!(budget.for_request().grow(10));
    }

    #[test]
    fn each_reply_refused_room_is_counted_once() {
        let budget = Budget::new(1, 1);
        let mut a = budget.for_reply();
        let mut b = budget.for_reply();
        assert!(!a.grow(2) && !a.grow(2) && !b.grow(2));
        assert!(!budget.for_request().grow(2));
        assert_eq!(budget.take_replies_cut(), 2);
        assert_eq!(budget.take_replies_cut(), 0, "reported once");
        assert!(a.grow(1) && !b.grow(1));
        assert_eq!(budget.take_replies_cut(), 0);
    }
}
