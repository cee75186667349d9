//! The agent's own did:key identity, read from the file the launcher made
//! for it ([`attach_contract::did_key`]): the DID the gateway delegates to,
//! and the key that signs the agent's RFC 8693 actor tokens.
//!
//! The file holds a private key, so, like an SSH key, it is refused when
//! its group or other users may read or write it.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use attach_contract::did_key::DidKeyIdentity;

/// Lifetime of an actor token: long enough for one exchange, short enough
/// that a copy is of no use afterwards.
pub const ACTOR_TOKEN_SECS: u64 = 60;

/// The identity in `path`, or why it cannot be used (naming the file,
/// never its content).
pub fn load(path: &Path) -> Result<DidKeyIdentity, String> {
    let shown = path.display();
    let meta = std::fs::metadata(path).map_err(|e| format!("{shown}: {e}"))?;
    if !meta.is_file() {
        return Err(format!("{shown}: not a file"));
    }
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(format!(
            "{shown}: group or others may read or change it; run chmod 600 on it"
        ));
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("{shown}: {e}"))?;
    DidKeyIdentity::parse(&text).map_err(|e| format!("{shown}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;

    fn file(name: &str, mode: u32, text: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("attach-agent-id-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        let _ = std::fs::remove_file(&path);
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&path)
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    #[test]
    fn reads_a_private_identity_file() {
        let id = DidKeyIdentity::from_seed([5; 32]);
        let path = file("ok.json", 0o600, &id.file_text());
        assert_eq!(load(&path).unwrap().did(), id.did());
    }

    #[test]
    fn refuses_files_others_can_read_and_bad_content() {
        let id = DidKeyIdentity::from_seed([6; 32]);
        for mode in [0o640, 0o604, 0o660] {
            let path = file("open.json", mode, &id.file_text());
            let e = load(&path).unwrap_err();
            assert!(e.contains("chmod 600"), "{mode:o}: {e}");
        }
        let path = file("bad.json", 0o600, "{}");
        let e = load(&path).unwrap_err();
        assert!(e.contains("not an identity file"), "{e}");
        let e = load(Path::new("/nonexistent/agent.json")).unwrap_err();
        assert!(e.starts_with("/nonexistent/agent.json: "), "{e}");
    }
}
