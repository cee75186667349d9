//! Task, memory-document and usage storage over SQLite or PostgreSQL.
//!
//! Both backends run the same SQL (numbered `$n` parameters, `ON CONFLICT`,
//! TEXT for JSON, BIGINT unix milliseconds) through sqlx's Any driver;
//! `sqlite.rs` and `postgres.rs` only open the pool and carry their embedded
//! migrations. Every read goes to the database and every state change is a
//! conditional `UPDATE`, so replicas sharing one PostgreSQL agree.
//!
//! `pool.rs` holds the handle and what spans both tables, `sql.rs` the
//! query builder and JSON columns they share; `tasks.rs` and `memory.rs`
//! each own one table, as `push.rs` does push configs and `usage.rs` the
//! usage records, runtime overrides and export outbox. Callers use the
//! types re-exported here.

mod memory;
mod pool;
mod postgres;
mod push;
mod sql;
mod sqlite;
mod tasks;
mod usage;

pub use memory::{
    Cutoffs, ExchangeMeta, MemoryEvent, MemoryFilter, MemorySelector, Scored, search_text,
};
pub use pool::{Backend, Store};
pub use push::PushConfig;
pub use sql::StoreResult;
pub use tasks::{CancelOutcome, Completion, TaskFilter};
pub use usage::{ModelUsage, OutboxEvent, OutboxItem, StoredOverride, UsageQuery};
