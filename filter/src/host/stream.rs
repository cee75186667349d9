//! Header access on the current HTTP stream through raw hostcalls.
//!
//! The SDK's convenience methods unwrap host errors and decode header values
//! as UTF-8 with a panic on failure; a client sending one Latin-1 byte would
//! then kill the VM. These helpers return `Option` and never panic.

use crate::reply::LocalReply;
use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, MapType};

/// Every request header, values as raw bytes.
pub fn request_headers() -> Vec<(String, Vec<u8>)> {
    hostcalls::get_map_bytes(MapType::HttpRequestHeaders).unwrap_or_default()
}

pub fn set_request_header(name: &str, value: Option<&str>) -> bool {
    hostcalls::set_map_value(MapType::HttpRequestHeaders, name, value).is_ok()
}

pub fn set_response_header(name: &str, value: &str) -> bool {
    hostcalls::set_map_value(MapType::HttpResponseHeaders, name, Some(value)).is_ok()
}

pub fn send(reply: &LocalReply) -> bool {
    let headers: Vec<(&str, &str)> = reply
        .headers
        .iter()
        .map(|(k, v)| (*k, v.as_str()))
        .collect();
    hostcalls::send_http_response(reply.status, headers, Some(reply.body.as_bytes())).is_ok()
}

pub fn resume() -> bool {
    hostcalls::resume_http_request().is_ok()
}

/// Every response header, values as raw bytes (one host call).
pub fn response_headers() -> Vec<(String, Vec<u8>)> {
    hostcalls::get_map_bytes(MapType::HttpResponseHeaders).unwrap_or_default()
}

/// The body chunk passing now (the filter never buffers, so it is the chunk).
pub fn body_chunk(buffer: BufferType, size: usize) -> Vec<u8> {
    hostcalls::get_buffer(buffer, 0, size)
        .ok()
        .flatten()
        .unwrap_or_default()
}
