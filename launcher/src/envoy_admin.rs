//! Envoy's admin interface, over its Unix socket in the run folder: whether
//! the server has finished starting, so that the launcher's banner comes
//! after Envoy's start-up and not before its listener answers.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// How long one look at the admin interface may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// Longest status line read from the admin interface.
const MAX_STATUS_LINE: u64 = 256;

/// Whether Envoy answers `GET /ready` with 200, which it does once the
/// server is live: listeners bound and their first clusters set up.
pub fn is_ready(socket: &Path) -> bool {
    status(socket, "/ready") == Some(200)
}

/// The status code of a `GET` on the admin socket, `None` when nothing
/// answers (Envoy not started yet, or already gone).
fn status(socket: &Path, path: &str) -> Option<u16> {
    let mut stream = UnixStream::connect(socket).ok()?;
    stream.set_read_timeout(Some(PROBE_TIMEOUT)).ok()?;
    stream.set_write_timeout(Some(PROBE_TIMEOUT)).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut line = String::new();
    BufReader::new(stream.take(MAX_STATUS_LINE))
        .read_line(&mut line)
        .ok()?;
    let mut words = line.split_whitespace();
    match (words.next(), words.next()) {
        (Some(version), Some(code)) if version.starts_with("HTTP/") => code.parse().ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;
    use std::path::PathBuf;

    fn socket_path(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("attach-admin-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("admin.sock")
    }

    /// An admin stand-in that answers each connection with `reply`.
    fn serve(path: &Path, reply: &'static str) {
        let listener = UnixListener::bind(path).unwrap();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let mut stream = stream.unwrap();
                let mut request = [0u8; 512];
                let _ = stream.read(&mut request);
                let _ = stream.write_all(reply.as_bytes());
            }
        });
    }

    #[test]
    fn ready_only_on_200() {
        for (tag, reply, ready) in [
            (
                "live",
                "HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nLIVE\n",
                true,
            ),
            (
                "starting",
                "HTTP/1.1 503 Service Unavailable\r\n\r\nPRE_INITIALIZING\n",
                false,
            ),
            ("garbage", "200 OK\r\n\r\n", false),
        ] {
            let path = socket_path(tag);
            serve(&path, reply);
            assert_eq!(is_ready(&path), ready, "{reply:?}");
            std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
        }
    }

    #[test]
    fn no_socket_is_not_ready() {
        let path = socket_path("none");
        assert!(!is_ready(&path));
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }
}
