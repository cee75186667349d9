//! Reads `ATTACH_CONFIG`: a full plugin configuration in JSON or YAML.

use crate::error::Error;
use attach_filter::config::PluginConfig;
use std::path::Path;

const VAR: &str = "ATTACH_CONFIG";

/// `.json` files are read as JSON; anything else as YAML (which also accepts JSON).
pub fn load(path: &Path) -> Result<PluginConfig, Error> {
    let at = path.display();
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::setting(VAR, format!("{at}: cannot read: {e}")))?;
    parse(path, &text).map_err(|m| Error::setting(VAR, format!("{at}: {m}")))
}

fn parse(path: &Path, text: &str) -> Result<PluginConfig, String> {
    let json = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"));
    if text.trim().is_empty() {
        // An empty file means "all defaults", as an empty plugin configuration does.
        return serde_json::from_str("{}").map_err(|e| e.to_string());
    }
    if json {
        serde_json::from_str(text).map_err(|e| e.to_string())
    } else {
        serde_yaml::from_str(text).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_and_json() {
        let yaml =
            "providers:\n  - issuer: https://idp.example\n    audiences: [api]\nleeway_secs: 5\n";
        let c = parse(Path::new("a.yaml"), yaml).unwrap();
        assert_eq!(c.providers[0].issuer, "https://idp.example");
        assert_eq!(c.leeway_secs, 5);
        let json = r#"{"providers":[{"issuer":"https://idp.example","audiences":["api"]}]}"#;
        assert_eq!(parse(Path::new("a.json"), json).unwrap().providers.len(), 1);
        assert_eq!(parse(Path::new("a.yml"), json).unwrap().providers.len(), 1);
        assert!(parse(Path::new("a.yaml"), "").unwrap().providers.is_empty());
    }

    #[test]
    fn unknown_fields_are_refused() {
        let e = parse(Path::new("a.yaml"), "bogus: 1\n").unwrap_err();
        assert!(e.contains("bogus"), "{e}");
        let e = parse(Path::new("a.json"), r#"{"bogus":1}"#).unwrap_err();
        assert!(e.contains("bogus"), "{e}");
    }

    #[test]
    fn errors_name_the_variable_and_file() {
        let e = load(Path::new("/nonexistent/attach.yaml")).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("ATTACH_CONFIG: /nonexistent/attach.yaml: cannot read"),
            "{e}"
        );
    }
}
