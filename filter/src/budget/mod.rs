//! Token budgets and usage metering.
//!
//! [`meter`] counts a reply's tokens as it streams past; [`include_usage`]
//! asks an OpenAI engine to report a stream's usage, and [`usage_strip`]
//! takes that report back out, so that the client gets the stream it asked
//! for; [`hard_stop`] writes the frame that ends a stream cut short.

pub mod hard_stop;
pub mod include_usage;
mod json_text;
pub mod meter;
pub mod usage_strip;
