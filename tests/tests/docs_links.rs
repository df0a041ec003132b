//! The project's Markdown documents link only inside the repository: every relative link names
//! a file or folder of the repository (no `../` out of it), and every `#anchor` a heading of
//! the document it points into. Links with a scheme (`https:`) are left alone.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .unwrap()
}

/// The repository's Markdown files (not build output, not vendored fixtures).
fn documents(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        if p.is_dir() {
            if !matches!(name.as_str(), "target" | "node_modules") && !name.starts_with('.') {
                documents(&p, out);
            }
        } else if name.ends_with(".md") {
            out.push(p);
        }
    }
}

/// `[text](target)` link targets, outside code spans and fenced blocks.
fn links(text: &str) -> Vec<String> {
    let re = regex::Regex::new(r"\]\(([^)\s]+)\)").unwrap();
    let mut fenced = false;
    let mut out = Vec::new();
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        // Code spans: only the text between them counts.
        let prose: String = line.split('`').step_by(2).collect::<Vec<_>>().join(" ");
        out.extend(re.captures_iter(&prose).map(|c| c[1].to_owned()));
    }
    out
}

/// GitHub's anchors of a document's headings.
fn anchors(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| l.starts_with('#'))
        .map(|l| {
            l.trim_start_matches('#')
                .trim()
                .to_lowercase()
                .chars()
                .filter_map(|c| match c {
                    ' ' => Some('-'),
                    c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
                    _ => None,
                })
                .collect()
        })
        .collect()
}

#[test]
fn every_relative_link_stays_in_the_repository_and_resolves() {
    let root = root();
    let mut docs = Vec::new();
    documents(&root, &mut docs);
    assert!(docs.iter().any(|d| d.ends_with("README.md")));
    let mut broken = Vec::new();
    for doc in &docs {
        let text = std::fs::read_to_string(doc).unwrap();
        for link in links(&text) {
            if link.contains("://") || link.starts_with("mailto:") {
                continue;
            }
            let (path, anchor) = link.split_once('#').unwrap_or((&link, ""));
            let target = if path.is_empty() {
                doc.clone()
            } else {
                match doc.parent().unwrap().join(path).canonicalize() {
                    Ok(t) if t.starts_with(&root) => t,
                    Ok(t) => {
                        broken.push(format!(
                            "{}: {link} leaves the repository ({})",
                            doc.display(),
                            t.display()
                        ));
                        continue;
                    }
                    Err(e) => {
                        broken.push(format!("{}: {link}: {e}", doc.display()));
                        continue;
                    }
                }
            };
            if !anchor.is_empty() && target.extension().is_some_and(|e| e == "md") {
                let heads = anchors(&std::fs::read_to_string(&target).unwrap());
                if !heads.iter().any(|h| h == anchor) {
                    broken.push(format!("{}: {link}: no such heading", doc.display()));
                }
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}
