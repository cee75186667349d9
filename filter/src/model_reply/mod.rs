//! A model engine's reply, read as it streams past: how its body is cut
//! into frames ([`framing`]) and what each frame says ([`frame`]).
//!
//! The memory mirror copies the reply's text out of these frames, the
//! budget meters its tokens from them; both read the same bytes the same
//! way, so they live here, apart from either.

pub mod frame;
pub mod framing;
