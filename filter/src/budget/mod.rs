//! Token budgets and usage metering: how many tokens each user may spend
//! in sliding windows, held before a model request goes upstream and
//! settled when its reply ends.
//!
//! Plain Rust like the rest outside [`crate::host`]: [`config`] reads the
//! plugin configuration's `budget` section, [`estimate`] what a request
//! body will cost, [`ledger`] one user's record in shared data (windows,
//! reservations, the other gateways' totals, retry-after and reset), and
//! [`refusal`] the answers and the rate-limit headers a client reads.
//! [`meter`] counts a reply's tokens as it streams past and [`settle`]
//! turns that into the call's charge; [`include_usage`] asks an OpenAI
//! engine to report a stream's usage, and [`usage_strip`] takes that
//! report back out, so that the client gets the stream it asked for;
//! [`hard_stop`] writes the frame that ends a stream cut short.

pub mod config;
pub mod estimate;
pub mod hard_stop;
pub mod include_usage;
mod json_text;
pub mod ledger;
pub mod meter;
pub mod refusal;
pub mod settle;
pub mod usage_strip;
