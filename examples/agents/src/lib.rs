//! Two example A2A agents that act for the user who called them.
//!
//! One binary, `attach-agent`, is either the planner or the coder
//! (`AGENT_ROLE`). Behind Attach Gateway, a user's message reaches the
//! planner through the companion service; the planner asks the model for a
//! plan, stores the plan as the user's memory document, and hands the
//! request to the coder, which reads the plan back and asks the model for
//! the code. Every one of those calls goes through the gateway with the
//! user's own `Authorization` header (forwarded to the planner by the
//! service with `forward_bearer=true`), so each hop is verified and
//! recorded as that user and no agent holds a credential of its own.

mod a2a;
mod coder;
pub mod config;
mod gateway;
mod planner;
mod server;
mod tasks;

pub use config::{Role, SettingError, Settings};
pub use server::{Agent, router};
