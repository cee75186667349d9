//! The current HTTP stream: its headers, its body chunks, and answering or
//! resuming it, through [`abi`]'s status-returning calls.

use super::abi::{self, Status};
use super::log::log;
use crate::reply::{self, LocalReply};
use proxy_wasm::types::{BufferType, LogLevel, MapType};

/// Every request header, values as raw bytes (one host call).
pub fn request_headers() -> Result<Vec<(String, Vec<u8>)>, Status> {
    abi::header_pairs(MapType::HttpRequestHeaders)
}

pub fn set_request_header(name: &str, value: &str) -> Result<(), Status> {
    abi::replace_header(MapType::HttpRequestHeaders, name, value)
}

pub fn remove_request_header(name: &str) -> Result<(), Status> {
    abi::remove_header(MapType::HttpRequestHeaders, name)
}

pub fn set_response_header(name: &str, value: &str) -> Result<(), Status> {
    abi::replace_header(MapType::HttpResponseHeaders, name, value)
}

/// Every response header, values as raw bytes (one host call).
pub fn response_headers() -> Result<Vec<(String, Vec<u8>)>, Status> {
    abi::header_pairs(MapType::HttpResponseHeaders)
}

/// The body chunk passing now (the filter never buffers, so it is the chunk).
pub fn body_chunk(buffer: BufferType, size: usize) -> Result<Vec<u8>, Status> {
    abi::buffer(buffer, 0, size)
}

/// Replaces the whole response body buffered so far (`size` bytes).
pub fn replace_response_body(size: usize, body: &[u8]) -> Result<(), Status> {
    abi::set_buffer(BufferType::HttpResponseBody, 0, size, body)
}

pub fn remove_response_header(name: &str) -> Result<(), Status> {
    abi::remove_header(MapType::HttpResponseHeaders, name)
}

/// Answers the request from the filter. When even that fails, the request
/// is reset: it must not reach the upstream, nor hang.
pub fn send(reply: &LocalReply) {
    let headers: Vec<(&str, &str)> = reply
        .headers
        .iter()
        .map(|(k, v)| (*k, v.as_str()))
        .collect();
    if let Err(status) = abi::send_local_response(reply.status, &headers, reply.body.as_bytes()) {
        log(
            LogLevel::Warn,
            &format!("attach: cannot answer a request ({status:?}): resetting it"),
        );
        let _ = abi::reset_request();
    }
}

/// Refuses a request the filter cannot handle safely (a header it could not
/// read, set or remove): a 503, never the upstream.
pub fn fail_closed(what: &str, status: Status) {
    log(
        LogLevel::Warn,
        &format!("attach: {what} failed ({status:?}): request refused"),
    );
    send(&reply::unavailable());
}

/// Ends a response that must not reach the client as it is.
pub fn reset_response() {
    if let Err(status) = abi::reset_response() {
        log(
            LogLevel::Warn,
            &format!("attach: cannot reset a response: {status:?}"),
        );
    }
}

/// Lets a paused request go on; a request the host no longer knows (the
/// client went away) is logged and left.
pub fn resume() {
    if let Err(status) = abi::continue_request() {
        log(
            LogLevel::Debug,
            &format!("attach: cannot resume a request: {status:?}"),
        );
    }
}
