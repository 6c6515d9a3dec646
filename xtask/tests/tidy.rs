//! House rules checked over the repository's own text, so they hold
//! without anyone remembering them:
//!
//! - every Rust source file opens with a `//!` comment saying what it is;
//! - no doc comment or document names a file that is not in the repository
//!   (docs rot silently when a file moves or never existed here).

use std::path::{Path, PathBuf};

/// Directories never read: build output, dependencies, and VCS data.
const SKIPPED_DIRS: &[&str] = &["target", "node_modules", ".git", ".venv", "__pycache__"];

/// File kinds a citation can name.
const CITED_KINDS: &[&str] = &["rs", "md", "toml", "wit", "sql", "py", "js", "html", "json"];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask sits in the workspace root")
        .to_path_buf()
}

/// Every file under `dir`, skipping [`SKIPPED_DIRS`].
fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        if path.is_dir() {
            if !SKIPPED_DIRS.contains(&name.to_string_lossy().as_ref()) {
                files(&path, out);
            }
        } else {
            out.push(path);
        }
    }
}

fn repository() -> (PathBuf, Vec<PathBuf>) {
    let root = root();
    let mut all = Vec::new();
    files(&root, &mut all);
    let relative = all
        .iter()
        .map(|p| p.strip_prefix(&root).unwrap().to_path_buf())
        .collect();
    (root, relative)
}

fn extension(path: &Path) -> &str {
    path.extension().and_then(|e| e.to_str()).unwrap_or("")
}

#[test]
fn every_rust_file_opens_with_a_module_doc() {
    let (root, files) = repository();
    let missing: Vec<&PathBuf> = files
        .iter()
        .filter(|path| extension(path) == "rs")
        .filter(|path| {
            let text = std::fs::read_to_string(root.join(path)).unwrap_or_default();
            !text.trim_start().starts_with("//!")
        })
        .collect();
    assert!(
        missing.is_empty(),
        "these files do not open with a `//!` comment: {missing:#?}"
    );
}

/// Names that look like files of the repository but are not: routes the
/// server answers, and files of other tools (Docker's credentials file).
const NOT_OURS: [&str; 2] = ["/openapi.json", "config.json"];

/// The file names a text cites: words that end in a known file kind, with
/// URLs and served routes left out (they point elsewhere on purpose).
fn citations(text: &str) -> Vec<String> {
    let mut cited = Vec::new();
    for word in text.split(|c: char| {
        c.is_whitespace()
            || matches!(
                c,
                '`' | '(' | ')' | '[' | ']' | '"' | '\'' | ',' | ';' | '<' | '>' | '*' | '|'
            )
    }) {
        if word.contains("://") || word.starts_with("www.") {
            continue;
        }
        let word = word.trim_end_matches(['.', ':', '!', '?']);
        let word = word.split('#').next().unwrap_or_default();
        if NOT_OURS.contains(&word) {
            continue;
        }
        let Some((stem, kind)) = word.rsplit_once('.') else {
            continue;
        };
        let is_name = !stem.is_empty()
            && stem
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '/' | '.'));
        // An upper-case stem is a placeholder (`FILE.toml`), not a file.
        let name = stem.rsplit('/').next().unwrap_or(stem);
        let placeholder = name.chars().all(|c| c.is_ascii_uppercase() || c == '_');
        if placeholder {
            continue;
        }
        if is_name && CITED_KINDS.contains(&kind) && !stem.ends_with('/') {
            cited.push(word.trim_start_matches("./").to_string());
        }
    }
    cited
}

/// Whether some file of the repository is `cited`: its path, or its path
/// relative to the citing file's directory, or (for a bare name or a
/// partial path) the end of some file's path.
fn exists(cited: &str, citing: &Path, files: &[PathBuf]) -> bool {
    let cited = cited.trim_start_matches('/');
    // Build output is named by where the build puts it.
    if cited.starts_with("target/") {
        return true;
    }
    let beside = citing.parent().unwrap_or(Path::new("")).join(cited);
    files.iter().any(|file| {
        let file_text = file.to_string_lossy();
        file == Path::new(cited)
            || *file == beside
            || file_text.ends_with(&format!("/{cited}"))
            || file_text == cited
    }) || cited.split('/').any(|part| part == "..")
        && citing.parent().is_some_and(|dir| {
            let resolved = normalize(&dir.join(cited));
            files.contains(&resolved)
        })
}

fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// The text of `path` a reader takes as documentation: doc comments of a
/// Rust file, comments of a WIT file, all of a Markdown file.
fn documentation(root: &Path, path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(root.join(path)).ok()?;
    let comment_lines = |prefixes: &[&str]| {
        text.lines()
            .filter_map(|line| {
                let line = line.trim_start();
                prefixes
                    .iter()
                    .find_map(|prefix| line.strip_prefix(prefix))
                    .map(str::to_string)
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    match extension(path) {
        // Fenced blocks are commands and examples, not citations.
        "md" => Some(text.split("```").step_by(2).collect::<Vec<_>>().join("\n")),
        "rs" => Some(comment_lines(&["//!", "///"])),
        "wit" => Some(comment_lines(&["///", "//"])),
        _ => None,
    }
}

#[test]
fn no_document_cites_a_file_that_is_not_here() {
    let (root, files) = repository();
    let mut dangling = Vec::new();
    for path in &files {
        let Some(text) = documentation(&root, path) else {
            continue;
        };
        for cited in citations(&text) {
            if !exists(&cited, path, &files) {
                dangling.push(format!("{}: {cited}", path.display()));
            }
        }
    }
    assert!(
        dangling.is_empty(),
        "these documents cite files that are not in the repository: {dangling:#?}"
    );
}

#[test]
fn citations_are_found_and_checked() {
    let files = vec![
        PathBuf::from("docs/HTTP-API.md"),
        PathBuf::from("host/src/plugins/call.rs"),
        PathBuf::from("migrations/sqlite/0003_touch_conversation.sql"),
    ];
    let check = |text: &str, citing: &str| -> Vec<(String, bool)> {
        citations(text)
            .into_iter()
            .map(|c| {
                let ok = exists(&c, Path::new(citing), &files);
                (c, ok)
            })
            .collect()
    };
    assert_eq!(
        check("see `docs/HTTP-API.md`, and http-api.md.", "host/src/x.rs"),
        [
            ("docs/HTTP-API.md".into(), true),
            ("http-api.md".into(), false)
        ]
    );
    assert_eq!(
        check(
            "the sibling [call](call.rs) and `migrations/*/0003_touch_conversation.sql`",
            "host/src/plugins/mod.rs"
        ),
        [
            ("call.rs".into(), true),
            ("/0003_touch_conversation.sql".into(), true)
        ]
    );
    assert_eq!(
        check(
            "[up](../docs/HTTP-API.md) https://example.com/a.md e.g. 1.5 s",
            "host/README.md"
        ),
        [("../docs/HTTP-API.md".into(), true)]
    );
}
