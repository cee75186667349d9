//! did:key identities the launcher keeps (mode 0600, like an SSH key): the
//! local identity, whose DID-JWTs `attach token` prints so a curl works a
//! minute after `make run`, and the demo agents' own
//! ([`crate::dev`]). Their format and tokens are the contract's
//! ([`attach_contract::did_key`]); each is created once, on first use.

use crate::error::Error;
use crate::private_file::{self, Placement};
use attach_contract::did_key::DidKeyIdentity;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

pub const IDENTITY_FILE: &str = "identity.json";

/// The identity file of the agent `name` in `ATTACH_DATA_DIR`.
pub fn agent_file(name: &str) -> String {
    format!("agent-{name}.json")
}

/// Loads the identity in `dir/name`, creating it on first use. Returns
/// whether it was created.
pub fn load_or_create(dir: &Path, name: &str) -> Result<(DidKeyIdentity, bool), Error> {
    let path = dir.join(name);
    let io = |e: std::io::Error| Error::runtime(format!("{}: {e}", path.display()));
    match fs::metadata(&path) {
        Ok(meta) => {
            if meta.permissions().mode() & 0o077 != 0 {
                return Err(Error::runtime(format!(
                    "{}: readable by others; run chmod 600 on it",
                    path.display()
                )));
            }
            let text = fs::read_to_string(&path).map_err(io)?;
            let identity = DidKeyIdentity::parse(&text)
                .map_err(|e| Error::runtime(format!("{}: {e}", path.display())))?;
            Ok((identity, false))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let identity = DidKeyIdentity::from_seed(private_file::random::<32>()?);
            match private_file::write(dir, name, &identity.file_text(), Placement::CreateOnce) {
                Ok(()) => Ok((identity, true)),
                // Another launcher made it first: its identity is the one.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    load_or_create(dir, name)
                }
                Err(e) => Err(io(e)),
            }
        }
        Err(e) => Err(io(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    fn temp_dir(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("attach-token-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn identity_is_created_once_with_private_permissions() {
        let dir = temp_dir("once");
        let (first, created) = load_or_create(&dir, IDENTITY_FILE).unwrap();
        assert!(created);
        assert!(first.did().starts_with("did:key:z6Mk"), "{}", first.did());
        let mode = fs::metadata(dir.join(IDENTITY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let (second, created) = load_or_create(&dir, IDENTITY_FILE).unwrap();
        assert!(!created);
        assert_eq!(first.did(), second.did());
        let (other, created) = load_or_create(&dir, "agent-coder.json").unwrap();
        assert!(created);
        assert_ne!(other.did(), first.did());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn open_permissions_are_refused() {
        let dir = temp_dir("perm");
        load_or_create(&dir, IDENTITY_FILE).unwrap();
        let path = dir.join(IDENTITY_FILE);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let e = load_or_create(&dir, IDENTITY_FILE).err().unwrap();
        assert!(e.to_string().contains("chmod 600"), "{e}");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn token_claims_and_signature() {
        let dir = temp_dir("tok");
        let (id, _) = load_or_create(&dir, IDENTITY_FILE).unwrap();
        let t = id.token("http://127.0.0.1:8080", 1_000, 600, None);
        let parts: Vec<&str> = t.split('.').collect();
        assert_eq!(parts.len(), 3);
        let claims: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        assert_eq!(claims["iss"], id.did());
        assert_eq!(claims["aud"], "http://127.0.0.1:8080");
        assert_eq!(claims["exp"], 1_600);
        // The DID's own key (an independent did:key decoding, bs58) checks
        // the signature: W3C did:key, multicodec 0xed01 then the key.
        let decoded = bs58::decode(id.did().strip_prefix("did:key:z").unwrap())
            .into_vec()
            .unwrap();
        assert_eq!(decoded[..2], [0xed, 0x01]);
        let key =
            ed25519_dalek::VerifyingKey::from_bytes(&decoded[2..].try_into().unwrap()).unwrap();
        let sig: [u8; 64] = URL_SAFE_NO_PAD
            .decode(parts[2])
            .unwrap()
            .try_into()
            .unwrap();
        let input = format!("{}.{}", parts[0], parts[1]);
        key.verify_strict(
            input.as_bytes(),
            &ed25519_dalek::Signature::from_bytes(&sig),
        )
        .unwrap();
        fs::remove_dir_all(&dir).unwrap();
    }
}
