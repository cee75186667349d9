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

/// The README's layout block, checked against the tree.
///
/// The block is the fenced code block under `## Layout`. Its lines are read so:
///
/// - A line that starts in the first column is an entry whose first word is
///   a path from the repository root; a line indented by exactly two spaces
///   is an entry whose first word is a path inside the last first-column
///   folder entry. A path ending in `/` is a folder. Lines indented further
///   continue the previous entry's description.
/// - Words of a description that look like paths (`gate.rs`, `host/`,
///   `deploy/README.md`) are mentions: each must exist inside the entry's
///   folder (at any depth), next to the entry, or from the repository root.
/// - Every entry and mention must exist (a folder as a folder).
/// - Coverage: every `.rs` file and folder directly inside a source root
///   ([`layout::SOURCE_ROOTS`]) must be an entry or a mention of its own;
///   every top-level folder of the repository and every workspace member
///   must be one, lie inside a listed folder, or hold a listed path. Any
///   other folder that is listed or mentioned covers everything below it,
///   so `crypto/` stands for its files.
mod layout {
    use std::collections::BTreeSet;
    use std::path::{Path, PathBuf};

    /// The folders whose every module the layout names, one by one.
    pub const SOURCE_ROOTS: [&str; 4] = [
        "filter/src",
        "a2a-service/src",
        "launcher/src",
        "examples/agents/src",
    ];

    /// File endings a description word must have to count as a mention.
    const MENTION_ENDINGS: [&str; 9] = [
        ".rs", ".md", ".html", ".toml", ".py", ".json", ".yml", ".lua", ".sh",
    ];

    /// A path the block names, relative to the repository root.
    #[derive(Debug)]
    pub struct Named {
        pub path: PathBuf,
        pub folder: bool,
    }

    /// The lines of the fenced block under `## Layout`.
    pub fn block(readme: &str) -> Vec<String> {
        let mut lines = readme.lines().skip_while(|l| *l != "## Layout");
        lines.next().expect("README.md has a `## Layout` section");
        let mut lines = lines.skip_while(|l| !l.starts_with("```"));
        lines.next().expect("the layout section has a code block");
        lines
            .take_while(|l| !l.starts_with("```"))
            .map(String::from)
            .collect()
    }

    fn first_word(line: &str) -> &str {
        line.split_whitespace().next().unwrap_or("")
    }

    /// `word` as a path when it reads as one: a relative folder (`host/`)
    /// or a file with a known ending, stripped of quotes and punctuation.
    fn as_path(word: &str) -> Option<&str> {
        let w = word.trim_matches(|c: char| "`()[],;:".contains(c));
        let pathlike = w
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_./-".contains(&b));
        let shaped = (w.len() > 1 && w.ends_with('/'))
            || MENTION_ENDINGS
                .iter()
                .any(|e| w.len() > e.len() && w.ends_with(e));
        (pathlike && shaped && !w.starts_with('/') && !w.starts_with('.')).then_some(w)
    }

    /// The entries of the block, then the mentions in their descriptions
    /// resolved against the tree (`Err` for those that resolve nowhere).
    pub fn parse(lines: &[String], root: &Path) -> (Vec<Named>, Vec<Result<Named, String>>) {
        let mut entries = Vec::new();
        let mut mentions = Vec::new();
        let mut parent: Option<PathBuf> = None;
        let mut current: Option<Named> = None;
        for line in lines.iter().filter(|l| !l.trim().is_empty()) {
            let indent = line.len() - line.trim_start().len();
            let description = match indent {
                0 | 2 => {
                    let word = first_word(line);
                    let base = match (indent, &parent) {
                        (0, _) => PathBuf::new(),
                        (_, Some(p)) => p.clone(),
                        (_, None) => panic!("{line:?} is indented under no folder entry"),
                    };
                    let named = Named {
                        path: base.join(word.trim_end_matches('/')),
                        folder: word.ends_with('/'),
                    };
                    if indent == 0 {
                        parent = named.folder.then(|| named.path.clone());
                    }
                    current = Some(Named {
                        path: named.path.clone(),
                        folder: named.folder,
                    });
                    entries.push(named);
                    &line.trim_start()[word.len()..]
                }
                _ => line.as_str(),
            };
            let entry = current.as_ref().expect("the block starts with an entry");
            for word in description.split_whitespace().filter_map(as_path) {
                mentions.push(resolve(root, entry, word));
            }
        }
        (entries, mentions)
    }

    /// Where a mention in `entry`'s description points: inside the entry's
    /// folder (at any depth), next to the entry, or from the root.
    fn resolve(root: &Path, entry: &Named, word: &str) -> Result<Named, String> {
        let folder = word.ends_with('/');
        let tail = Path::new(word.trim_end_matches('/'));
        let home = if entry.folder {
            entry.path.clone()
        } else {
            entry.path.parent().unwrap_or(Path::new("")).to_path_buf()
        };
        let mut candidates: Vec<PathBuf> = walk(&root.join(&home))
            .into_iter()
            .filter_map(|p| p.strip_prefix(root).ok().map(Path::to_path_buf))
            .filter(|p| p.ends_with(tail))
            .collect();
        candidates.sort_by_key(|p| p.components().count());
        if let Some(parent) = home.parent() {
            candidates.push(parent.join(tail));
        }
        candidates.push(tail.to_path_buf());
        candidates
            .into_iter()
            .find(|p| exists(root, p, folder))
            .map(|path| Named { path, folder })
            .ok_or_else(|| format!("{word} (in the description of {})", entry.path.display()))
    }

    fn exists(root: &Path, path: &Path, folder: bool) -> bool {
        let full = root.join(path);
        if folder {
            full.is_dir()
        } else {
            full.is_file()
        }
    }

    /// Every path below `dir`, folders included.
    fn walk(dir: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                out.extend(walk(&path));
            }
            out.push(path);
        }
        out
    }

    /// What the layout must cover, relative to the root, each with whether
    /// a listed ancestor folder may cover it.
    pub fn required(root: &Path) -> Vec<(PathBuf, bool)> {
        let mut out = Vec::new();
        for source in SOURCE_ROOTS {
            for entry in std::fs::read_dir(root.join(source)).unwrap().flatten() {
                let path = entry.path();
                let module = path.is_dir() || path.extension().is_some_and(|e| e == "rs");
                if module {
                    out.push((path.strip_prefix(root).unwrap().to_path_buf(), false));
                }
            }
        }
        for entry in std::fs::read_dir(root).unwrap().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if entry.path().is_dir() && !name.starts_with('.') && name != "target" {
                out.push((PathBuf::from(name), true));
            }
        }
        for member in super::workspace_members(root) {
            out.push((PathBuf::from(member), true));
        }
        out.sort();
        out.dedup();
        out
    }

    /// Whether `named` covers `path`: it is `path`, or (when `by_ancestor`)
    /// a listed folder above it or something inside it.
    fn covers(named: &Named, path: &Path, by_ancestor: bool) -> bool {
        named.path == path
            || (by_ancestor
                && ((named.folder && path.starts_with(&named.path))
                    || named.path.starts_with(path)))
    }

    /// One line per problem: paths listed but missing, paths not covered.
    pub fn problems(readme: &str, root: &Path) -> Vec<String> {
        let (entries, mentions) = parse(&block(readme), root);
        let mut problems = BTreeSet::new();
        for e in &entries {
            if !exists(root, &e.path, e.folder) {
                let kind = if e.folder { "folder" } else { "file" };
                problems.insert(format!("listed but no such {kind}: {}", e.path.display()));
            }
        }
        let mut named = entries;
        for m in mentions {
            match m {
                Ok(n) => named.push(n),
                Err(what) => {
                    problems.insert(format!("mentioned but not found: {what}"));
                }
            }
        }
        for (path, by_ancestor) in required(root) {
            if !named.iter().any(|n| covers(n, &path, by_ancestor)) {
                let shown = match root.join(&path).is_dir() {
                    true => format!("{}/", path.display()),
                    false => path.display().to_string(),
                };
                problems.insert(format!("not in the layout: {shown}"));
            }
        }
        problems.into_iter().collect()
    }
}

/// The workspace members named in `root`'s `Cargo.toml`.
fn workspace_members(root: &Path) -> Vec<String> {
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    let members = manifest
        .split_once("members = [")
        .and_then(|(_, rest)| rest.split_once(']'))
        .expect("Cargo.toml lists the workspace members")
        .0;
    members
        .split(',')
        .map(|m| m.trim().trim_matches('"').to_string())
        .filter(|m| !m.is_empty())
        .collect()
}

#[test]
fn the_layout_matches_the_tree() {
    let problems = layout::problems(&readme(), repo());
    assert!(
        problems.is_empty(),
        "README.md's layout block is out of step with the tree (rules: launcher/tests/readme.rs, mod layout):\n  {}",
        problems.join("\n  ")
    );
}

/// The checker itself, on a made-up tree: a stale entry, a stale mention and
/// an unlisted module are each named; a listed folder covers its contents.
#[test]
fn the_layout_check_names_what_is_missing_or_stale() {
    let root = std::env::temp_dir().join(format!("attach-layout-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    for file in [
        "filter/src/verify.rs",
        "filter/src/token_cache.rs",
        "filter/src/host/gate.rs",
        "a2a-service/src/main.rs",
        "launcher/src/main.rs",
        "examples/agents/src/main.rs",
        "contract/src/lib.rs",
        "docs/guide.md",
    ] {
        let path = root.join(file);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, "").unwrap();
    }
    std::fs::write(
        root.join("Cargo.toml"),
        "[workspace]\nmembers = [\"filter\", \"contract\"]\n",
    )
    .unwrap();
    let readme = "## Layout\n\n```\n\
        filter/src/            the filter\n  \
          verify.rs            one decision\n  \
          cache.rs             bounded cache\n  \
          host/                Envoy calls: gate.rs, root.rs\n\
        a2a-service/src/       the service\n  \
          main.rs              its start\n\
        launcher/src/main.rs   the launcher; examples/agents/src/main.rs: agents\n\
        docs/                  guides\n\
        ```\n";
    assert_eq!(
        layout::problems(readme, &root),
        [
            "listed but no such file: filter/src/cache.rs",
            "mentioned but not found: root.rs (in the description of filter/src/host)",
            "not in the layout: contract/",
            "not in the layout: filter/src/token_cache.rs",
        ]
    );
    std::fs::remove_dir_all(&root).unwrap();
}
