//! Two example A2A agents that act for the user who called them.
//!
//! One binary, `attach-agent`, is either the planner or the coder
//! (`AGENT_ROLE`). Behind Attach Gateway, a user's message reaches the
//! planner through the companion service; the planner asks the model for a
//! plan, stores the plan as the user's memory document, and hands the
//! request to the coder, which reads the plan back and asks the model for
//! the code. Every one of those calls goes through the gateway for that
//! user, so each hop is verified and recorded as theirs.
//!
//! Registered with a DID (`AGENT_IDENTITY`, as the local demo does), an
//! agent takes tasks only with the gateway's identity token for its DID,
//! acts with the short-lived token the gateway delegated to it (never the
//! user's own), and hands work on with a token it exchanged for that one
//! with its DID-JWT (RFC 8693), so the model engine sees the user and the
//! chain of agents acting for them. Registered without one, it uses the
//! user's bearer token the service forwards (`forward_bearer=true`).

mod a2a;
mod coder;
pub mod config;
mod exchange;
mod gateway;
mod gateway_keys;
mod identity;
mod planner;
mod server;
mod tasks;

pub use config::{Role, SettingError, Settings};
pub use server::{Agent, router};
