//! The launcher's secrets on disk (the assertion key, the signing key set,
//! the local identity): fresh random bytes for new keys, and files only
//! their owner can read, written whole under a private name and then put
//! in place at once, so no reader ever sees half a key.

use std::fs::{self, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::error::Error;

/// `N` bytes from the kernel's random source.
pub fn random<const N: usize>() -> Result<[u8; N], Error> {
    let mut bytes = [0u8; N];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| Error::runtime(format!("/dev/urandom: {e}")))?;
    Ok(bytes)
}

/// How the written file takes its place.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    /// Only when there is no file yet; otherwise the write fails with
    /// `AlreadyExists`, so of two launchers starting at once, one wins and
    /// the other reads the winner's file.
    CreateOnce,
    /// Over whatever file is there.
    Replace,
}

/// Writes `text` to `dir/name` with mode 0600, creating `dir` if needed.
pub fn write(dir: &Path, name: &str, text: &str, placement: Placement) -> io::Result<()> {
    fs::create_dir_all(dir)?;
    let path = dir.join(name);
    let temp = dir.join(format!(".{name}.{}", std::process::id()));
    let _ = fs::remove_file(&temp);
    let written = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temp)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .and_then(|()| match placement {
            Placement::CreateOnce => fs::hard_link(&temp, &path),
            Placement::Replace => fs::rename(&temp, &path),
        });
    // Gone already after a rename; the private name must not outlive a link
    // or a failure.
    let _ = fs::remove_file(&temp);
    written
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn scratch(name: &str) -> std::path::PathBuf {
        let dir =
            std::env::temp_dir().join(format!("attach-private-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    fn entries(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn create_once_keeps_the_first_file() {
        let dir = scratch("once");
        write(&dir, "k", "first", Placement::CreateOnce).unwrap();
        let err = write(&dir, "k", "second", Placement::CreateOnce).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(fs::read_to_string(dir.join("k")).unwrap(), "first");
        let mode = fs::metadata(dir.join("k")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(entries(&dir), ["k"]);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn replace_puts_the_new_file_in_place() {
        let dir = scratch("replace");
        write(&dir, "k", "first", Placement::Replace).unwrap();
        write(&dir, "k", "second", Placement::Replace).unwrap();
        assert_eq!(fs::read_to_string(dir.join("k")).unwrap(), "second");
        let mode = fs::metadata(dir.join("k")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(entries(&dir), ["k"]);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn random_bytes_differ() {
        assert_ne!(random::<32>().unwrap(), random::<32>().unwrap());
    }
}
