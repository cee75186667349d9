//! `attach keys`: makes the signing key set a deployment hands to Envoy and
//! the companion service, says on stderr which key signs, and writes the
//! set to stdout only with `--print`.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Command, Output};

use attach_contract::gateway_keys::{KEYS_FILE, SigningKeys};

const ATTACH: &str = env!("CARGO_BIN_EXE_attach");

fn scratch(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("attach-keys-it-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn keys(args: &[&str], data: &PathBuf, envs: &[(&str, &str)]) -> Output {
    let mut c = Command::new(ATTACH);
    c.arg("keys").args(args).env("ATTACH_DATA_DIR", data);
    for var in [
        "ATTACH_SIGNING_ALG",
        "ATTACH_KEY_ROTATION_DAYS",
        "ATTACH_KEY_OVERLAP_HOURS",
    ] {
        c.env_remove(var);
    }
    c.envs(envs.iter().copied());
    c.output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).unwrap()
}

#[test]
fn keys_creates_the_set_once_and_prints_it_only_when_asked() {
    let data = scratch("once");
    let made = keys(&[], &data, &[]);
    assert!(made.status.success(), "{}", text(&made.stderr));
    assert!(made.stdout.is_empty(), "nothing on stdout without --print");
    let file = data.join(KEYS_FILE);
    let stored = std::fs::read_to_string(&file).unwrap();
    let mode = std::fs::metadata(&file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let set = SigningKeys::parse(&stored).unwrap();
    let said = text(&made.stderr);
    assert!(
        said.contains("created") && said.contains(set.kid()),
        "{said}"
    );
    assert!(said.contains("EdDSA"), "{said}");

    let printed = keys(&["--print"], &data, &[]);
    assert!(printed.status.success(), "{}", text(&printed.stderr));
    assert_eq!(text(&printed.stdout), stored, "the same set, not a new one");
    assert!(text(&printed.stderr).contains("unchanged"));
    std::fs::remove_dir_all(&data).unwrap();
}

#[test]
fn keys_rotates_to_another_algorithm_and_keeps_the_old_key_published() {
    let data = scratch("rotate");
    assert!(keys(&[], &data, &[]).status.success());
    let before = SigningKeys::parse(&std::fs::read_to_string(data.join(KEYS_FILE)).unwrap())
        .unwrap()
        .kid()
        .to_string();
    let rotated = keys(&["--print"], &data, &[("ATTACH_SIGNING_ALG", "ES256")]);
    assert!(rotated.status.success(), "{}", text(&rotated.stderr));
    assert!(text(&rotated.stderr).contains("rotated"));
    let set = SigningKeys::parse(&text(&rotated.stdout)).unwrap();
    assert_ne!(set.kid(), before);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert_eq!(set.published(now).count(), 2);
    std::fs::remove_dir_all(&data).unwrap();
}

#[test]
fn keys_refuses_a_bad_setting_and_other_arguments() {
    let data = scratch("refuse");
    let bad = keys(&[], &data, &[("ATTACH_SIGNING_ALG", "HS256")]);
    assert!(!bad.status.success());
    assert!(text(&bad.stderr).contains("ATTACH_SIGNING_ALG"));
    assert!(!data.join(KEYS_FILE).exists());
    let usage = keys(&["--show"], &data, &[]);
    assert_eq!(usage.status.code(), Some(2));
    assert!(usage.stdout.is_empty());
    let _ = std::fs::remove_dir_all(&data);
}

#[test]
fn keys_creates_agent_identities_once_and_prints_only_their_dids() {
    use attach_contract::did_key::DidKeyIdentity;
    let data = scratch("agents");
    let made = keys(&["--agents", "planner,coder"], &data, &[]);
    assert!(made.status.success(), "{}", text(&made.stderr));
    assert!(data.join(KEYS_FILE).is_file(), "the set is made too");
    let printed = text(&made.stdout);
    let lines: Vec<&str> = printed.lines().collect();
    assert_eq!(lines.len(), 2, "{printed}");
    for (line, name) in lines.iter().zip(["planner", "coder"]) {
        let file = data.join(format!("agent-{name}.json"));
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{name}");
        let stored = std::fs::read_to_string(&file).unwrap();
        let identity = DidKeyIdentity::parse(&stored).unwrap();
        assert_eq!(*line, format!("{name}={}", identity.did()));
        assert!(identity.did().starts_with("did:key:z6Mk"), "{line}");
        let seed = serde_json::from_str::<serde_json::Value>(&stored).unwrap()["seed"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(!printed.contains(&seed), "no seed on stdout");
        assert!(!text(&made.stderr).contains(&seed), "no seed on stderr");
    }
    assert!(text(&made.stderr).contains("created"));

    let again = keys(&["--agents", "coder,planner"], &data, &[]);
    assert!(again.status.success(), "{}", text(&again.stderr));
    let mut before = lines.clone();
    before.reverse();
    assert_eq!(
        text(&again.stdout).lines().collect::<Vec<_>>(),
        before,
        "the same identities, not new ones"
    );
    assert!(!text(&again.stderr).contains("identity, created"));
    std::fs::remove_dir_all(&data).unwrap();
}

#[test]
fn keys_refuses_agent_names_the_registry_would() {
    let data = scratch("agent-names");
    for names in [
        "",
        "planner,",
        "planner,planner",
        "../x",
        "a/b",
        "..",
        "plan ner,x*",
    ] {
        let refused = keys(&["--agents", names], &data, &[]);
        assert_eq!(refused.status.code(), Some(2), "{names:?}");
        assert!(refused.stdout.is_empty(), "{names:?}");
        assert!(text(&refused.stderr).contains("--agents"), "{names:?}");
    }
    assert!(!data.exists(), "nothing made");
    for args in [
        &["--agents"][..],
        &["--agents", "planner", "--print"],
        &["--print", "--agents", "planner"],
    ] {
        assert_eq!(keys(args, &data, &[]).status.code(), Some(2), "{args:?}");
    }
    assert!(!data.exists(), "nothing made");
}
