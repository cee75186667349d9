//! Attach Gateway's companion service: A2A task state, forwarding to
//! registered agents, memory documents (read back from Weaviate too when
//! the gateway mirrors model exchanges there), and token usage shared by
//! the gateways' budgets, behind the gateway's identity assertion.

pub mod a2a;
pub mod auth;
pub mod config;
pub mod error;
pub mod memory;
pub mod metrics;
pub mod push;
pub mod routes;
pub mod state;
pub mod store;
pub mod task_events;
pub mod task_streams;
pub mod tasks;
pub mod usage;
pub mod weaviate;

pub use routes::router;
pub use state::AppState;
