//! A2A push notifications: webhooks a caller registers for its tasks, told
//! of every state change. Off unless `A2A_PUSH=on` (`settings.rs`); webhook
//! URLs pass the guard in `ssrf.rs` when they are registered and again
//! when a delivery connects.

pub mod deliver;
pub mod resolve;
pub mod rpc;
pub mod settings;
pub mod ssrf;
pub mod wire;

pub use deliver::Pusher;
pub use settings::PushSettings;
pub use wire::NewConfig;
