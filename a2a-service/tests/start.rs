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

/// An extended card file is read at start, so a bad one stops the service
/// there, naming the agent, the file and the member at fault, rather than
/// failing each caller who asks for the card.
#[test]
fn a_bad_extended_card_stops_the_service_naming_the_agent() {
    let data_dir = tempfile::tempdir().unwrap();
    let card = data_dir.path().join("planner-card.json");
    std::fs::write(
        &card,
        r#"{"card": {"skills": [{"id": "deploy", "name": "Deploy", "description": "ships"}]},
            "skill_users": {"deplyo": ["alice"]}}"#,
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_attach-a2a"))
        .env_clear()
        .env("ATTACH_DATA_DIR", data_dir.path())
        .env(
            "ATTACH_ASSERTION_KEY",
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        )
        .env("A2A_PORT", "0")
        .env(
            "A2A_AGENTS",
            format!(
                "planner=http://127.0.0.1:9;extended_card={}",
                card.display()
            ),
        )
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(
        stderr.trim_end(),
        format!(
            "attach-a2a: A2A_AGENTS: extended_card of \"planner\": {}: skill_users.deplyo names no skill of card.skills",
            card.display()
        )
    );
    let left: Vec<_> = std::fs::read_dir(data_dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, [card.file_name().unwrap()], "nothing was created");
}
