//! The service binary at start: a registry it cannot use stops it with the
//! variable and the reason, before it opens a database or a port.

use std::process::Command;

#[test]
fn a_dot_agent_name_stops_the_service_naming_the_variable() {
    let data_dir = tempfile::tempdir().unwrap();
    for name in [".", ".."] {
        let out = Command::new(env!("CARGO_BIN_EXE_attach-a2a"))
            .env_clear()
            .env("ATTACH_DATA_DIR", data_dir.path())
            .env(
                "ATTACH_ASSERTION_KEY",
                "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            )
            .env("A2A_PORT", "0")
            .env("A2A_AGENTS", format!("{name}=http://127.0.0.1:9"))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(
            stderr.starts_with(&format!(
                "attach-a2a: A2A_AGENTS: agent name {name:?} must be"
            )),
            "{stderr}"
        );
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
    }
    assert_eq!(
        std::fs::read_dir(data_dir.path()).unwrap().count(),
        0,
        "nothing was created"
    );
}
