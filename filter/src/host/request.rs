//! What one request remembers between its callbacks (and across a wait for
//! keys), shared by its context and the root context that resumes it.

use crate::memory::capture::Capture;
use crate::request_head::RequestHead;

#[derive(Default)]
pub struct RequestState {
    pub head: RequestHead,
    /// The identity stamped upstream, echoed on the response.
    pub stamped: Option<(String, String)>,
    /// An unknown-kid refetch was already granted for this request.
    pub refetched: bool,
    /// A model exchange being mirrored to memory.
    pub capture: Option<Capture>,
}
