//! Attach Gateway's companion service: A2A task state, forwarding to
//! registered agents, and memory documents, behind the gateway's identity
//! assertion.

pub mod a2a;
pub mod auth;
pub mod config;
pub mod error;
pub mod metrics;
pub mod routes;
pub mod state;
pub mod store;
pub mod tasks;

pub use routes::router;
pub use state::AppState;
