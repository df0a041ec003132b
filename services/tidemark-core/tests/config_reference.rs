//! The README's configuration reference is rendered from the config type: every key of
//! `Config` (and of a `[[tables]]` entry), its default as serialized by the type, its environment
//! override, and its meaning from `tidemark.example.toml`. A key added, removed or with a new
//! default fails here; `TIDEMARK_BLESS=1` rewrites the README section.

use serde_json::Value;
use tidemark_core::config::{Config, ENV_PREFIX};

const EXAMPLE: &str = include_str!("../../../tidemark.example.toml");
const START: &str = "<!-- config-reference:start (rendered by services/tidemark-core/tests/config_reference.rs) -->";
const END: &str = "<!-- config-reference:end -->";

/// Leaf keys of a serialized config, with their values; maps that users fill are leaves.
fn leaves(prefix: &str, v: &Value, out: &mut Vec<(String, Value)>) {
    match v {
        Value::Object(m) if !prefix.ends_with("properties") => {
            for (k, v) in m {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                leaves(&key, v, out);
            }
        }
        _ => out.push((prefix.to_owned(), v.clone())),
    }
}

/// The comment documenting `key` in `section` of the example file (`[section.key]  # …` for
/// a map).
fn meaning(section: &str, key: &str) -> String {
    let mut current = String::new();
    for line in EXAMPLE.lines() {
        let t = line.trim();
        if t.starts_with('[') {
            let (head, comment) = t
                .split_once("  # ")
                .map_or((t, None), |(h, c)| (h.trim(), Some(c.trim())));
            current = head.trim_matches(|c| c == '[' || c == ']').to_owned();
            if current == format!("{section}.{key}")
                && let Some(c) = comment
            {
                return c.to_owned();
            }
            continue;
        }
        if current != section {
            continue;
        }
        let body = t.trim_start_matches('#').trim_start();
        if let Some((k, rest)) = body.split_once('=')
            && k.trim().trim_matches('"') == key
            && let Some((_, c)) = rest.split_once("  # ")
        {
            return c.trim().to_owned();
        }
    }
    String::new()
}

/// A default as the table shows it.
fn cell(v: &Value) -> String {
    match v {
        Value::Null => "unset".to_owned(),
        v => format!("`{v}`"),
    }
}

/// `|` would end a Markdown table cell.
fn escape(text: &str) -> String {
    text.replace('|', "\\|")
}

fn render() -> String {
    let config = serde_json::to_value(Config::default()).unwrap();
    let mut keys = Vec::new();
    leaves("", &config, &mut keys);
    keys.retain(|(k, _)| k != "tables");
    let mut rows = vec![
        "| key | default | environment override | meaning |".to_owned(),
        "|---|---|---|---|".to_owned(),
    ];
    for (key, default) in &keys {
        let (section, name) = key.rsplit_once('.').unwrap();
        // A map's keys hold dots (librdkafka names): only the file can set them.
        let env = if default.is_object() {
            "— (file only)".to_owned()
        } else {
            format!("`{ENV_PREFIX}{}`", key.to_uppercase().replace('.', "__"))
        };
        let m = meaning(section, name);
        assert!(
            !m.is_empty(),
            "`{key}` has no comment in tidemark.example.toml"
        );
        rows.push(format!(
            "| `{key}` | {} | {env} | {} |",
            cell(default),
            escape(&m)
        ));
    }
    // A table entry's keys: from the type, with every field present.
    let table: tidemark_core::config::TableConfig = toml::from_str("source = \"a.b.c\"").unwrap();
    let Value::Object(fields) = serde_json::to_value(table).unwrap() else {
        panic!("a table entry is an object")
    };
    for (k, v) in &fields {
        let m = meaning("tables", k);
        assert!(
            !m.is_empty(),
            "`tables.{k}` has no comment in tidemark.example.toml"
        );
        let default = if k == "source" {
            "required".to_owned()
        } else {
            cell(v)
        };
        rows.push(format!(
            "| `[[tables]] {k}` | {default} | — | {} |",
            escape(&m)
        ));
    }
    rows.join("\n") + "\n"
}

#[test]
fn the_readme_configuration_reference_is_the_config_type() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md");
    let readme = std::fs::read_to_string(path).unwrap();
    let table = render();
    let section = format!("{START}\n{table}{END}");
    let (Some(a), Some(b)) = (readme.find(START), readme.find(END)) else {
        panic!("README.md has no configuration reference markers")
    };
    if std::env::var_os("TIDEMARK_BLESS").is_some() {
        let new = format!("{}{section}{}", &readme[..a], &readme[b + END.len()..]);
        std::fs::write(path, new).unwrap();
        return;
    }
    assert_eq!(
        &readme[a..b + END.len()],
        section,
        "README's configuration reference differs from the config type (TIDEMARK_BLESS=1 rewrites it)"
    );
}
