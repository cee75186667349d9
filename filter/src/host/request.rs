//! What one request remembers between its callbacks (and across a wait for
//! keys), shared by its context and the root context that resumes it.

use crate::budget::estimate::Ask;
use crate::budget::ledger::Reservation;
use crate::budget::meter::Meter;
use crate::budget::usage_strip::UsageStrip;
use crate::identity::Identity;
use crate::mcp;
use crate::memory::capture::Capture;
use crate::memory::tool_capture::ToolCapture;
use crate::request_head::RequestHead;
use attach_contract::budget::Limit;

/// A request to an MCP route.
pub struct McpExchange {
    /// The server's index in the configuration.
    pub server: usize,
    /// The request as read; `None` while its body is still arriving.
    pub request: Option<mcp::Request>,
    /// The tool call it makes, once let through (until its capture starts).
    pub call: Option<mcp::ToolCall>,
    /// A `tools/list` whose answer is cut to what this caller may call.
    pub list_for: Option<Identity>,
    /// That answer is an event stream.
    pub list_is_stream: bool,
    /// That answer cannot be cut (its length header stayed).
    pub list_unreadable: bool,
}

/// A request to a budgeted model route.
pub struct Metered {
    /// The route's index in the budget's routes.
    pub route: usize,
    /// The client's body once whole (the estimate reads it); `None` while
    /// it is still arriving.
    pub body: Option<Vec<u8>>,
    /// The body sent upstream asks the engine for its usage, which the
    /// client did not: the reply is rewritten to the stream it asked for.
    pub asked_for_usage: bool,
    /// Set once the request is admitted.
    pub admitted: Option<Admitted>,
}

/// What an admitted budgeted request carries to its end.
pub struct Admitted {
    pub user: String,
    pub ask: Ask,
    pub limits: Vec<Limit>,
    /// `None` when no limit applies (metering only).
    pub reservation: Option<Reservation>,
    pub meter: Option<Meter>,
    pub strip: Option<UsageStrip>,
    pub status: Option<u16>,
    /// The reply's body ended (else the client went away first).
    pub ended: bool,
    /// The hard stop ended the reply: nothing more passes.
    pub stopped: bool,
}

#[derive(Default)]
pub struct RequestState {
    pub head: RequestHead,
    /// The identity stamped upstream, echoed on the response.
    pub stamped: Option<(String, String)>,
    /// An unknown-kid refetch was already granted for this request.
    pub refetched: bool,
    /// A request to the token endpoint: its form body (empty until the
    /// body is whole).
    pub token_request: Option<Vec<u8>>,
    /// The filter let the request's headers go on (a public path, or a
    /// caller stamped); until then its body is held here, never passed on.
    pub let_through: bool,
    /// The body that arrived while the request was held (all of it so far,
    /// and whether it is complete), for the memory capture once let through.
    pub held_body: Option<(Vec<u8>, bool)>,
    /// A model exchange being mirrored to memory.
    pub capture: Option<Capture>,
    /// A request to an MCP server.
    pub mcp: Option<McpExchange>,
    /// An MCP tool call being mirrored to memory.
    pub tool_capture: Option<ToolCapture>,
    /// A model call under the token budgets.
    pub metered: Option<Metered>,
}
