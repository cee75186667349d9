//! A shared queue with a bound: every worker's items on one host queue,
//! and its depth beside it in shared data (a host queue has no bound, and
//! no length a worker could read). At the bound the oldest item goes.

use super::abi;

/// What a push did besides queueing the item.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pushed {
    Queued,
    /// Queued, and the oldest item was dropped to make room.
    QueuedDroppingOldest,
    /// Not queued: the depth could not be read or kept (contention, or
    /// the host refused).
    Dropped,
}

pub struct BoundedQueue {
    queue: u32,
    depth_key: &'static str,
}

impl BoundedQueue {
    /// Registers the queue `name` (the same one for every worker), its
    /// depth kept under `depth_key`.
    pub fn register(name: &str, depth_key: &'static str) -> Option<Self> {
        let queue = abi::register_shared_queue(name).ok()?;
        Some(BoundedQueue { queue, depth_key })
    }

    pub fn push(&self, item: &[u8], max: usize) -> Pushed {
        let dropped = match self.make_room(max) {
            None => return Pushed::Dropped,
            Some(dropped) => dropped,
        };
        if abi::enqueue_shared_queue(self.queue, item).is_err() {
            self.taken(1);
            return Pushed::Dropped;
        }
        if dropped {
            Pushed::QueuedDroppingOldest
        } else {
            Pushed::Queued
        }
    }

    /// The oldest item, if any (the caller reports how many it took with
    /// [`BoundedQueue::taken`], once, for a batch).
    pub fn pop(&self) -> Option<Vec<u8>> {
        abi::dequeue_shared_queue(self.queue).ok().flatten()
    }

    /// Items on the queue, as counted.
    pub fn depth(&self) -> u64 {
        self.read_depth().map_or(0, |(depth, _)| depth)
    }

    /// Counts one more item; at the bound the oldest goes (`Some(true)`).
    /// `None` when the count cannot be read or updated: the new item is
    /// dropped rather than let past the bound.
    fn make_room(&self, max: usize) -> Option<bool> {
        for _ in 0..16 {
            let (depth, cas) = self.read_depth()?;
            if depth < max as u64 {
                if self.write_depth(depth + 1, cas) {
                    return Some(false);
                }
                continue;
            }
            match abi::dequeue_shared_queue(self.queue) {
                Ok(Some(_)) => return Some(true),
                // The count ran ahead of the queue (a worker stopped
                // between its take and its count): start it again.
                _ => {
                    self.write_depth(0, cas);
                }
            }
        }
        None
    }

    /// Counts `n` items taken off the queue.
    pub fn taken(&self, n: usize) {
        if n == 0 {
            return;
        }
        for _ in 0..16 {
            let Some((depth, cas)) = self.read_depth() else {
                return;
            };
            if self.write_depth(depth.saturating_sub(n as u64), cas) {
                return;
            }
        }
    }

    /// The count and its CAS; `None` when shared data cannot be read (a
    /// count written without its CAS could overwrite another worker's).
    fn read_depth(&self) -> Option<(u64, Option<u32>)> {
        match abi::shared_data(self.depth_key).ok()? {
            (Some(bytes), cas) => {
                let depth = <[u8; 8]>::try_from(bytes.as_slice()).map_or(0, u64::from_le_bytes);
                Some((depth, cas))
            }
            (None, cas) => Some((0, cas)),
        }
    }

    /// Compare-and-swap; a missing record is created (any CAS is accepted then).
    fn write_depth(&self, depth: u64, cas: Option<u32>) -> bool {
        abi::set_shared_data(self.depth_key, &depth.to_le_bytes(), cas).is_ok()
    }
}
