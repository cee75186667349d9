//! Finds the Envoy binary: `ENVOY_BIN`, else `envoy` on `PATH`, else the
//! project's `.venv/bin/envoy`.

use crate::env::Env;
use crate::error::Error;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

pub const VENV_ENVOY: &str = ".venv/bin/envoy";

pub fn find(env: Env, cwd: &Path) -> Result<PathBuf, Error> {
    let path_var = env("PATH").unwrap_or_default();
    if let Some(raw) = env("ENVOY_BIN").filter(|v| !v.trim().is_empty()) {
        let found = if raw.contains('/') {
            Some(cwd.join(&raw)).filter(|p| is_executable(p))
        } else {
            on_path(&raw, &path_var)
        };
        return found.ok_or_else(|| {
            Error::setting(
                "ENVOY_BIN",
                format!("{raw:?} is not an executable file (unset it to use envoy from PATH or {VENV_ENVOY})"),
            )
        });
    }
    on_path("envoy", &path_var)
        .or_else(|| Some(cwd.join(VENV_ENVOY)).filter(|p| is_executable(p)))
        .ok_or_else(|| {
            Error::setting(
                "ENVOY_BIN",
                format!("no envoy on PATH nor at {VENV_ENVOY}; run `make envoy` or set ENVOY_BIN"),
            )
        })
}

fn on_path(name: &str, path_var: &str) -> Option<PathBuf> {
    path_var
        .split(':')
        .filter(|d| !d.is_empty())
        .map(|d| Path::new(d).join(name))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env::tests::env_of;

    fn scratch(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("attach-envoy-bin-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(d.join("bin")).unwrap();
        std::fs::create_dir_all(d.join(".venv/bin")).unwrap();
        d
    }

    fn touch(p: &Path, mode: u32) {
        std::fs::write(p, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn order_of_preference() {
        let d = scratch("order");
        let path = d.join("bin").to_string_lossy().into_owned();
        let e = find(&env_of(&[("PATH", &path)]), &d).unwrap_err();
        assert_eq!(e.var(), Some("ENVOY_BIN"));

        touch(&d.join(VENV_ENVOY), 0o755);
        assert_eq!(
            find(&env_of(&[("PATH", &path)]), &d).unwrap(),
            d.join(VENV_ENVOY)
        );

        touch(&d.join("bin/envoy"), 0o644);
        assert_eq!(
            find(&env_of(&[("PATH", &path)]), &d).unwrap(),
            d.join(VENV_ENVOY)
        );
        touch(&d.join("bin/envoy"), 0o755);
        assert_eq!(
            find(&env_of(&[("PATH", &path)]), &d).unwrap(),
            d.join("bin/envoy")
        );

        touch(&d.join("mine"), 0o755);
        let env = env_of(&[("PATH", &path), ("ENVOY_BIN", "./mine")]);
        assert_eq!(find(&env, &d).unwrap(), d.join("./mine"));
        let env = env_of(&[("PATH", &path), ("ENVOY_BIN", "./missing")]);
        assert!(
            find(&env, &d)
                .unwrap_err()
                .to_string()
                .starts_with("ENVOY_BIN: \"./missing\"")
        );
        std::fs::remove_dir_all(&d).unwrap();
    }
}
