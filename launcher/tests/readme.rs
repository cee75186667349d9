//! The README's configuration tables must name every setting the code has.

use attach_filter::config::PluginConfig;
use std::collections::BTreeSet;
use std::path::Path;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
}

fn readme() -> String {
    std::fs::read_to_string(repo().join("README.md")).unwrap()
}

/// Upper-case string literals with an underscore: the variables the launcher reads.
fn variables(source: &str) -> BTreeSet<String> {
    source
        .split('"')
        .skip(1)
        .step_by(2)
        .filter(|s| {
            s.len() > 3
                && s.contains('_')
                && s.bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
        })
        .map(String::from)
        .collect()
}

#[test]
fn every_environment_variable_is_documented() {
    let readme = readme();
    let mut names = BTreeSet::new();
    for file in ["env.rs", "envoy_bin.rs"] {
        let source = std::fs::read_to_string(repo().join("launcher/src").join(file)).unwrap();
        names.extend(variables(&source));
    }
    for expected in [
        "OIDC_ISSUER",
        "DID_ALLOW",
        "ATTACH_A2A",
        "ATTACH_A2A_BIN",
        "A2A_PORT",
        "A2A_AGENTS",
        "A2A_CONFIG",
    ] {
        assert!(names.contains(expected), "{expected} not in {names:?}");
    }
    for name in names {
        assert!(
            readme.contains(&format!("| `{name}` |")),
            "README.md has no row for {name}"
        );
    }
}

#[test]
fn every_plugin_configuration_field_is_documented() {
    let config: PluginConfig = serde_json::from_str(
        r#"{"providers":[{"issuer":"https://idp.example","audiences":["a"]}],
            "did":{"audiences":["a"],"allow":[]},"clusters":{"https://idp.example":"c"}}"#,
    )
    .unwrap();
    let value = serde_json::to_value(&config).unwrap();
    let readme = readme();
    let mut fields: Vec<String> = value.as_object().unwrap().keys().cloned().collect();
    for nested in ["did", "jwks"] {
        fields.extend(value[nested].as_object().unwrap().keys().cloned());
    }
    fields.extend(value["providers"][0].as_object().unwrap().keys().cloned());
    for field in fields {
        assert!(
            readme.contains(&format!("`{field}`")),
            "README.md does not document the plugin configuration field {field}"
        );
    }
}
