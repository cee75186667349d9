//! Header access on the current HTTP stream through raw hostcalls.
//!
//! The SDK's convenience methods unwrap host errors and decode header values
//! as UTF-8 with a panic on failure; a client sending one Latin-1 byte would
//! then kill the VM. These helpers return `Option` and never panic.

use crate::reply::LocalReply;
use proxy_wasm::hostcalls;
use proxy_wasm::types::MapType;

pub fn request_header_bytes(name: &str) -> Option<Vec<u8>> {
    hostcalls::get_map_value_bytes(MapType::HttpRequestHeaders, name).ok()?
}

/// A request header as text; `None` when absent or not UTF-8.
pub fn request_header(name: &str) -> Option<String> {
    String::from_utf8(request_header_bytes(name)?).ok()
}

pub fn set_request_header(name: &str, value: Option<&str>) -> bool {
    hostcalls::set_map_value(MapType::HttpRequestHeaders, name, value).is_ok()
}

pub fn set_response_header(name: &str, value: &str) -> bool {
    hostcalls::set_map_value(MapType::HttpResponseHeaders, name, Some(value)).is_ok()
}

/// Removes every request header whose name satisfies `reserved`.
pub fn remove_request_headers(reserved: impl Fn(&str) -> bool) {
    let Ok(headers) = hostcalls::get_map_bytes(MapType::HttpRequestHeaders) else {
        return;
    };
    for (name, _) in headers.iter().filter(|(n, _)| reserved(n)) {
        let _ = hostcalls::set_map_value(MapType::HttpRequestHeaders, name, None);
    }
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
