//! The proxy-wasm ABI functions the filter calls, declared here with safe
//! wrappers that return every status the host gives as a [`Status`].
//!
//! proxy-wasm's own `hostcalls` panic on any status they do not expect (and
//! unwrap header values as UTF-8), and a panic aborts the whole VM: every
//! request on the worker then fails. These declarations use the same import
//! names and wasm signatures as the crate's, but read the returned status
//! as a plain number, so an unexpected one is an error and never undefined
//! behaviour.
//!
//! Buffers the host returns are allocated in this module's memory through
//! `proxy_on_memory_allocate` (provided by proxy-wasm: a boxed slice of
//! exactly the requested size); [`take`] adopts them so they are freed.

use proxy_wasm::types::{BufferType, LogLevel, MapType, MetricType, StreamType};
use std::ptr::{null, null_mut};
use std::time::Duration;

#[link(wasm_import_module = "env")]
unsafe extern "C" {
    fn proxy_log(level: LogLevel, message_data: *const u8, message_size: usize) -> u32;
    fn proxy_get_current_time_nanoseconds(return_time: *mut u64) -> u32;
    fn proxy_set_tick_period_milliseconds(period: u32) -> u32;
    fn proxy_get_buffer_bytes(
        buffer_type: BufferType,
        start: usize,
        max_size: usize,
        return_buffer_data: *mut *mut u8,
        return_buffer_size: *mut usize,
    ) -> u32;
    fn proxy_set_buffer_bytes(
        buffer_type: BufferType,
        start: usize,
        size: usize,
        buffer_data: *const u8,
        buffer_size: usize,
    ) -> u32;
    fn proxy_get_header_map_pairs(
        map_type: MapType,
        return_map_data: *mut *mut u8,
        return_map_size: *mut usize,
    ) -> u32;
    fn proxy_get_header_map_value(
        map_type: MapType,
        key_data: *const u8,
        key_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
    ) -> u32;
    fn proxy_replace_header_map_value(
        map_type: MapType,
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_remove_header_map_value(
        map_type: MapType,
        key_data: *const u8,
        key_size: usize,
    ) -> u32;
    fn proxy_send_local_response(
        status_code: u32,
        status_code_details_data: *const u8,
        status_code_details_size: usize,
        body_data: *const u8,
        body_size: usize,
        headers_data: *const u8,
        headers_size: usize,
        grpc_status: i32,
    ) -> u32;
    fn proxy_continue_stream(stream_type: StreamType) -> u32;
    fn proxy_close_stream(stream_type: StreamType) -> u32;
    fn proxy_get_shared_data(
        key_data: *const u8,
        key_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
        return_cas: *mut u32,
    ) -> u32;
    fn proxy_set_shared_data(
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
        cas: u32,
    ) -> u32;
    fn proxy_register_shared_queue(
        name_data: *const u8,
        name_size: usize,
        return_id: *mut u32,
    ) -> u32;
    fn proxy_enqueue_shared_queue(queue_id: u32, value_data: *const u8, value_size: usize) -> u32;
    fn proxy_dequeue_shared_queue(
        queue_id: u32,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
    ) -> u32;
    fn proxy_define_metric(
        metric_type: MetricType,
        name_data: *const u8,
        name_size: usize,
        return_id: *mut u32,
    ) -> u32;
    fn proxy_increment_metric(metric_id: u32, offset: i64) -> u32;
    fn proxy_set_effective_context(context_id: u32) -> u32;
}

/// A status other than `Ok`, as the proxy-wasm ABI numbers them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    NotFound,
    BadArgument,
    SerializationFailure,
    ParseFailure,
    BadExpression,
    InvalidMemoryAccess,
    Empty,
    CasMismatch,
    ResultMismatch,
    InternalFailure,
    BrokenConnection,
    Unimplemented,
    /// A number this ABI version does not define.
    Unknown(u32),
}

fn check(raw: u32) -> Result<(), Status> {
    Err(match raw {
        0 => return Ok(()),
        1 => Status::NotFound,
        2 => Status::BadArgument,
        3 => Status::SerializationFailure,
        4 => Status::ParseFailure,
        5 => Status::BadExpression,
        6 => Status::InvalidMemoryAccess,
        7 => Status::Empty,
        8 => Status::CasMismatch,
        9 => Status::ResultMismatch,
        10 => Status::InternalFailure,
        11 => Status::BrokenConnection,
        12 => Status::Unimplemented,
        other => Status::Unknown(other),
    })
}

/// Adopts a buffer the host returned (`data`, `size`) so it is freed when
/// the `Vec` drops; `None` for a null pointer, which the host writes for an
/// empty answer. A size no allocation can have is refused and the buffer
/// left alone: a leak beats freeing memory with the wrong layout.
///
/// # Safety
///
/// `data` must be null or what the host got from `proxy_on_memory_allocate`
/// for exactly `size` bytes, and not adopted before.
unsafe fn take(data: *mut u8, size: usize) -> Result<Option<Vec<u8>>, Status> {
    if data.is_null() {
        return Ok(None);
    }
    if isize::try_from(size).is_err() {
        return Err(Status::InvalidMemoryAccess);
    }
    // SAFETY: `proxy_on_memory_allocate` returns a boxed `[u8]` of `size`
    // bytes, the layout of a `Vec<u8>` whose length and capacity are `size`;
    // the caller guarantees it is ours alone.
    Ok(Some(unsafe { Vec::from_raw_parts(data, size, size) }))
}

/// A buffer-returning call: runs `call` with the two out-pointers and adopts
/// what it wrote.
fn returned(call: impl FnOnce(*mut *mut u8, *mut usize) -> u32) -> Result<Option<Vec<u8>>, Status> {
    let mut data: *mut u8 = null_mut();
    let mut size: usize = 0;
    let status = call(&mut data, &mut size);
    // SAFETY: the host wrote a pointer it allocated for `size` bytes, or
    // left the null; nothing else holds it.
    let bytes = unsafe { take(data, size) }?;
    check(status)?;
    Ok(bytes)
}

pub fn log(level: LogLevel, message: &str) -> Result<(), Status> {
    // SAFETY: the pointer and length describe `message`, alive for the call.
    check(unsafe { proxy_log(level, message.as_ptr(), message.len()) })
}

/// Nanoseconds since the Unix epoch.
pub fn current_time_ns() -> Result<u64, Status> {
    let mut time = 0u64;
    // SAFETY: `time` is a valid place for the host to write a u64.
    check(unsafe { proxy_get_current_time_nanoseconds(&mut time) })?;
    Ok(time)
}

pub fn set_tick_period(period: Duration) -> Result<(), Status> {
    let ms = u32::try_from(period.as_millis()).map_err(|_| Status::BadArgument)?;
    // SAFETY: no pointers.
    check(unsafe { proxy_set_tick_period_milliseconds(ms) })
}

/// Up to `max_size` bytes of a buffer from `start`; empty when the host has
/// no such buffer.
pub fn buffer(buffer: BufferType, start: usize, max_size: usize) -> Result<Vec<u8>, Status> {
    match returned(|data, size| {
        // SAFETY: `data` and `size` are valid out-pointers for the call.
        unsafe { proxy_get_buffer_bytes(buffer, start, max_size, data, size) }
    }) {
        Ok(bytes) => Ok(bytes.unwrap_or_default()),
        Err(Status::NotFound) => Ok(Vec::new()),
        Err(status) => Err(status),
    }
}

/// Replaces `size` bytes of a buffer from `start` with `data`.
pub fn set_buffer(
    buffer: BufferType,
    start: usize,
    size: usize,
    data: &[u8],
) -> Result<(), Status> {
    // SAFETY: `data` is valid for `data.len()` bytes during the call.
    check(unsafe { proxy_set_buffer_bytes(buffer, start, size, data.as_ptr(), data.len()) })
}

/// Every pair of a header map, values as raw bytes (names are UTF-8 in
/// every map Envoy hands out; a map where one is not is refused whole).
pub fn header_pairs(map: MapType) -> Result<Vec<(String, Vec<u8>)>, Status> {
    let bytes = returned(|data, size| {
        // SAFETY: `data` and `size` are valid out-pointers for the call.
        unsafe { proxy_get_header_map_pairs(map, data, size) }
    })?;
    decode_pairs(&bytes.unwrap_or_default()).ok_or(Status::SerializationFailure)
}

/// One header's value; `None` when the map has no such header.
pub fn header_value(map: MapType, name: &str) -> Result<Option<Vec<u8>>, Status> {
    match returned(|data, size| {
        // SAFETY: `name` is alive for the call; `data` and `size` are valid
        // out-pointers.
        unsafe { proxy_get_header_map_value(map, name.as_ptr(), name.len(), data, size) }
    }) {
        Ok(value) => Ok(Some(value.unwrap_or_default())),
        Err(Status::NotFound) => Ok(None),
        Err(status) => Err(status),
    }
}

pub fn replace_header(map: MapType, name: &str, value: &str) -> Result<(), Status> {
    // SAFETY: `name` and `value` are alive for the call.
    check(unsafe {
        proxy_replace_header_map_value(map, name.as_ptr(), name.len(), value.as_ptr(), value.len())
    })
}

pub fn remove_header(map: MapType, name: &str) -> Result<(), Status> {
    // SAFETY: `name` is alive for the call.
    check(unsafe { proxy_remove_header_map_value(map, name.as_ptr(), name.len()) })
}

/// Answers the current request from the filter.
pub fn send_local_response(
    status_code: u32,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<(), Status> {
    let headers = encode_pairs(headers).ok_or(Status::BadArgument)?;
    // SAFETY: the body and the encoded headers are alive for the call; no
    // details are passed (null, zero length).
    check(unsafe {
        proxy_send_local_response(
            status_code,
            null(),
            0,
            body.as_ptr(),
            body.len(),
            headers.as_ptr(),
            headers.len(),
            -1,
        )
    })
}

/// Lets the current (paused) request go on.
pub fn continue_request() -> Result<(), Status> {
    // SAFETY: no pointers.
    check(unsafe { proxy_continue_stream(StreamType::HttpRequest) })
}

/// Resets the current request: the last resort when it can neither go on
/// nor be answered.
pub fn reset_request() -> Result<(), Status> {
    // SAFETY: no pointers.
    check(unsafe { proxy_close_stream(StreamType::HttpRequest) })
}

/// Resets the current response: what was not sent of it never is.
pub fn reset_response() -> Result<(), Status> {
    // SAFETY: no pointers.
    check(unsafe { proxy_close_stream(StreamType::HttpResponse) })
}

/// A shared data entry and its CAS; `(None, None)` when absent.
pub fn shared_data(key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), Status> {
    let mut cas = 0u32;
    let read = returned(|data, size| {
        // SAFETY: `key` is alive for the call; the out-pointers are valid.
        unsafe { proxy_get_shared_data(key.as_ptr(), key.len(), data, size, &mut cas) }
    });
    let cas = (cas != 0).then_some(cas);
    match read {
        Ok(value) => Ok((value, cas)),
        Err(Status::NotFound) => Ok((None, None)),
        Err(status) => Err(status),
    }
}

/// Writes a shared data entry if its CAS is still `cas` (`None`: any).
pub fn set_shared_data(key: &str, value: &[u8], cas: Option<u32>) -> Result<(), Status> {
    // SAFETY: `key` and `value` are alive for the call.
    check(unsafe {
        proxy_set_shared_data(
            key.as_ptr(),
            key.len(),
            value.as_ptr(),
            value.len(),
            cas.unwrap_or(0),
        )
    })
}

pub fn register_shared_queue(name: &str) -> Result<u32, Status> {
    let mut id = 0u32;
    // SAFETY: `name` is alive for the call; `id` is a valid out-pointer.
    check(unsafe { proxy_register_shared_queue(name.as_ptr(), name.len(), &mut id) })?;
    Ok(id)
}

pub fn enqueue_shared_queue(queue: u32, value: &[u8]) -> Result<(), Status> {
    // SAFETY: `value` is alive for the call.
    check(unsafe { proxy_enqueue_shared_queue(queue, value.as_ptr(), value.len()) })
}

/// The queue's oldest item; `None` when it is empty.
pub fn dequeue_shared_queue(queue: u32) -> Result<Option<Vec<u8>>, Status> {
    match returned(|data, size| {
        // SAFETY: `data` and `size` are valid out-pointers for the call.
        unsafe { proxy_dequeue_shared_queue(queue, data, size) }
    }) {
        Ok(value) => Ok(value),
        Err(Status::Empty) => Ok(None),
        Err(status) => Err(status),
    }
}

pub fn define_counter(name: &str) -> Result<u32, Status> {
    let mut id = 0u32;
    // SAFETY: `name` is alive for the call; `id` is a valid out-pointer.
    check(unsafe { proxy_define_metric(MetricType::Counter, name.as_ptr(), name.len(), &mut id) })?;
    Ok(id)
}

pub fn increment_metric(metric: u32, offset: i64) -> Result<(), Status> {
    // SAFETY: no pointers.
    check(unsafe { proxy_increment_metric(metric, offset) })
}

/// Makes later stream calls act on `context_id`'s request.
pub fn set_effective_context(context_id: u32) -> Result<(), Status> {
    // SAFETY: no pointers.
    check(unsafe { proxy_set_effective_context(context_id) })
}

/// Starts an HTTP callout; its token on success.
///
/// This one call goes through proxy-wasm's `hostcalls`: its dispatcher must
/// learn which context made the callout to route the answer, and only that
/// function tells it. It panics on statuses other than `Ok`, `BadArgument`
/// and `InternalFailure`, which is all Envoy answers but for
/// `InvalidMemoryAccess` on pointers outside the module's memory, which the
/// crate's own buffers cannot be.
pub fn http_call(
    cluster: &str,
    headers: Vec<(&str, &str)>,
    body: Option<&[u8]>,
    timeout: Duration,
) -> Result<u32, Status> {
    use proxy_wasm::types::Status as Crate;
    proxy_wasm::hostcalls::dispatch_http_call(cluster, headers, body, vec![], timeout).map_err(
        |status| match status {
            Crate::BadArgument => Status::BadArgument,
            _ => Status::InternalFailure,
        },
    )
}

/// Reads a little-endian u32 off the front of `bytes`.
fn split_u32(bytes: &[u8]) -> Option<(usize, &[u8])> {
    let (word, rest) = bytes.split_first_chunk::<4>()?;
    Some((usize::try_from(u32::from_le_bytes(*word)).ok()?, rest))
}

/// A header map as the host serialises it: the pair count, each pair's name
/// and value lengths, then each name and value followed by a NUL. `None`
/// when the lengths run past the buffer or a name is not UTF-8.
fn decode_pairs(bytes: &[u8]) -> Option<Vec<(String, Vec<u8>)>> {
    if bytes.is_empty() {
        return Some(Vec::new());
    }
    let (count, rest) = split_u32(bytes)?;
    let (mut sizes, mut data) = rest.split_at_checked(count.checked_mul(8)?)?;
    let mut pairs = Vec::with_capacity(count);
    for _ in 0..count {
        let (name_size, rest) = split_u32(sizes)?;
        let (value_size, rest) = split_u32(rest)?;
        sizes = rest;
        let (name, rest) = data.split_at_checked(name_size)?;
        let (_nul, rest) = rest.split_first()?;
        let (value, rest) = rest.split_at_checked(value_size)?;
        let (_nul, rest) = rest.split_first()?;
        data = rest;
        pairs.push((String::from_utf8(name.to_vec()).ok()?, value.to_vec()));
    }
    Some(pairs)
}

/// The same serialisation for a map this module sends; `None` when a
/// length does not fit the format.
fn encode_pairs(pairs: &[(&str, &str)]) -> Option<Vec<u8>> {
    let len = |n: usize| u32::try_from(n).ok().map(u32::to_le_bytes);
    let mut bytes = Vec::new();
    bytes.extend_from_slice(&len(pairs.len())?);
    for (name, value) in pairs {
        bytes.extend_from_slice(&len(name.len())?);
        bytes.extend_from_slice(&len(value.len())?);
    }
    for (name, value) in pairs {
        bytes.extend_from_slice(name.as_bytes());
        bytes.push(0);
        bytes.extend_from_slice(value.as_bytes());
        bytes.push(0);
    }
    Some(bytes)
}
