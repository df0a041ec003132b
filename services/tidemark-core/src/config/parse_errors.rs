//! Problems found while reading the configuration (TOML syntax, value types, unknown keys),
//! reported like the semantic ones of `validate`: every one found, the key as validation names
//! it (`tables[1].kind`), the line in the file, a fix, and the environment variable when the
//! value came from one. Serde stops at a value's first error, so each section is read on its own
//! to find the problems of every section in one go.

use figment::error::{Actual, Kind};
use figment::{Figment, value::Value};
use serde::de::DeserializeOwned;
use toml::de::{DeTable, DeValue};

use super::validate::ConfigError;
use super::{
    BronzeConfig, Config, KafkaConfig, MergeConfig, MetricsConfig, TableConfig, WarehouseConfig,
};

/// Where the values came from: the file's text and the environment overrides applied.
pub(super) struct Origins<'a> {
    pub text: &'a str,
    /// `(variable, dotted key)` of each `TIDEMARK__…` override.
    pub env: &'a [(String, String)],
}

/// Every TOML syntax error of `text`, with its line.
pub(super) fn syntax_errors(text: &str) -> Vec<ConfigError> {
    let (_, errors) = DeTable::parse_recoverable(text);
    errors
        .into_iter()
        .map(|e| {
            let line = e.span().map(|s| line_of_offset(text, s.start));
            ConfigError {
                key: line.map_or("(file)".into(), |l| format!("line {l}")),
                problem: format!("not valid TOML: {}", e.message().replace('`', "\"")),
                fix: "fix the TOML syntax: text needs quotes, tables are [name]".into(),
            }
        })
        .collect()
}

/// The problems of a figment that did not extract into a [`Config`].
pub(super) fn extract_errors(
    fig: &Figment,
    first: figment::Error,
    o: &Origins,
) -> Vec<ConfigError> {
    let mut found = Vec::new();
    section::<KafkaConfig>(fig, "kafka", o, &mut found);
    section::<BronzeConfig>(fig, "bronze", o, &mut found);
    section::<WarehouseConfig>(fig, "warehouse", o, &mut found);
    section::<MergeConfig>(fig, "merge", o, &mut found);
    section::<MetricsConfig>(fig, "metrics", o, &mut found);
    if let Ok(Value::Array(_, tables)) = fig.find_value("tables") {
        for (i, t) in tables.iter().enumerate() {
            if let Err(e) = t.deserialize::<TableConfig>() {
                found.extend(describe(e, &["tables".into(), i.to_string()], o));
            }
        }
    }
    // What no section shows (a top-level key, the shape of `tables`) is in the first error.
    for e in describe(first, &[], o) {
        if !found.iter().any(|f| f.key == e.key) {
            found.push(e);
        }
    }
    found
}

fn section<T: DeserializeOwned>(
    fig: &Figment,
    name: &str,
    o: &Origins,
    out: &mut Vec<ConfigError>,
) {
    match fig.find_value(name) {
        Ok(v) => {
            if let Err(e) = v.deserialize::<T>() {
                out.extend(describe(e, &[name.to_owned()], o));
            }
        }
        Err(e) => out.extend(describe(e, &[], o)),
    }
}

fn describe(errs: figment::Error, prefix: &[String], o: &Origins) -> Vec<ConfigError> {
    errs.into_iter()
        .map(|e| {
            let mut path: Vec<String> = prefix.to_vec();
            path.extend(e.path.iter().cloned());
            one(&e.kind, path, o)
        })
        .collect()
}

/// One error: its key, what is wrong in words (no Rust type names) and how to fix it.
fn one(kind: &Kind, mut path: Vec<String>, o: &Origins) -> ConfigError {
    let (problem, fix) = match kind {
        Kind::InvalidType(actual, expected) | Kind::InvalidValue(actual, expected) => {
            let (want, example) = expected_in_words(expected);
            (
                format!("is {}, expected {want}", actual_in_words(actual)),
                example,
            )
        }
        Kind::InvalidLength(n, expected) => (
            format!("has {n} element(s), expected {expected}"),
            "give as many elements as expected".into(),
        ),
        Kind::UnknownVariant(v, known) => (
            format!("\"{v}\" is not one of the accepted values"),
            format!("use one of: {}", known.join(", ")),
        ),
        Kind::UnknownField(f, known) => {
            push_once(&mut path, f);
            (
                "is not a known key".into(),
                match closest(f, known) {
                    Some(k) => format!("did you mean {k}?"),
                    None if known.is_empty() => "remove it".into(),
                    None => format!("remove it or use one of: {}", known.join(", ")),
                },
            )
        }
        Kind::MissingField(f) => {
            push_once(&mut path, f);
            ("is required".into(), "set it".into())
        }
        Kind::DuplicateField(f) => {
            push_once(&mut path, f);
            ("is given twice".into(), "keep one".into())
        }
        other => (
            other.to_string(),
            "see the configuration reference in the README".into(),
        ),
    };
    let problem = match located(&path, o) {
        Some(at) => format!("{problem} ({at})"),
        None => problem,
    };
    ConfigError {
        key: key_name(&path),
        problem,
        fix,
    }
}

/// The known key a typo most likely meant: at most two edits away.
fn closest<'a>(typo: &str, known: &[&'a str]) -> Option<&'a str> {
    known
        .iter()
        .map(|k| (edit_distance(typo, k), *k))
        .filter(|(d, _)| *d <= 2)
        .min()
        .map(|(_, k)| k)
}

/// Levenshtein distance over chars.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

/// Serde names the field in some errors' path and not in others'.
fn push_once(path: &mut Vec<String>, field: &str) {
    if path.last().map(String::as_str) != Some(field) {
        path.push(field.to_owned());
    }
}

/// `tables[1].references."account.id"`: list indexes in brackets, odd keys quoted.
fn key_name(path: &[String]) -> String {
    let mut out = String::new();
    for seg in path {
        if seg.parse::<usize>().is_ok() && !out.is_empty() {
            out.push_str(&format!("[{seg}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(&quote_key(seg));
        }
    }
    out
}

/// Where the value at `path` came from: an environment variable, or a line of the file.
fn located(path: &[String], o: &Origins) -> Option<String> {
    let dotted = path.join(".");
    if let Some((var, _)) = o
        .env
        .iter()
        .find(|(_, key)| dotted == *key || dotted.starts_with(&format!("{key}.")))
    {
        return Some(format!("from the environment variable {var}"));
    }
    line_of_path(o.text, path).map(|l| format!("line {l}"))
}

/// The line of the deepest part of `path` the file holds (the value, else its table).
fn line_of_path(text: &str, path: &[String]) -> Option<usize> {
    let (doc, _) = DeTable::parse_recoverable(text);
    let mut table: &DeTable = doc.get_ref();
    let mut value: Option<&toml::Spanned<DeValue>> = None;
    let mut at: Option<usize> = None;
    for seg in path {
        let next = match value.map(|v| v.get_ref()) {
            Some(DeValue::Array(items)) => seg.parse::<usize>().ok().and_then(|i| items.get(i)),
            Some(DeValue::Table(t)) => lookup(t, seg),
            Some(_) => None,
            None => lookup(table, seg),
        };
        let Some(v) = next else { break };
        at = Some(v.span().start);
        if let DeValue::Table(t) = v.get_ref() {
            table = t;
        }
        value = Some(v);
    }
    at.map(|offset| line_of_offset(text, offset))
}

fn lookup<'a, 'i>(t: &'a DeTable<'i>, key: &str) -> Option<&'a toml::Spanned<DeValue<'i>>> {
    t.iter().find(|(k, _)| k.get_ref() == key).map(|(_, v)| v)
}

/// A key as TOML writes it: bare when it can be, else quoted (`"sasl.password"`).
fn quote_key(k: &str) -> String {
    let bare = !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if bare { k.to_owned() } else { format!("{k:?}") }
}

fn line_of_offset(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

fn actual_in_words(a: &Actual) -> String {
    match a {
        Actual::Str(s) => format!("the text \"{s}\""),
        Actual::Unsigned(n) => format!("the number {n}"),
        Actual::Signed(n) => format!("the number {n}"),
        Actual::Float(n) => format!("the number {n}"),
        Actual::Bool(b) => format!("{b}"),
        Actual::Seq => "a list".into(),
        Actual::Map => "a table".into(),
        other => other.to_string(),
    }
}

/// Serde's expectation (`u64`, `a boolean`, `struct KafkaConfig`) in words, with an example.
fn expected_in_words(expected: &str) -> (String, String) {
    let e = expected.trim_start_matches("a ").trim_start_matches("an ");
    let (want, fix) = match e {
        "u8" | "u16" | "u32" | "u64" | "usize" => (
            "a whole number, 0 or more",
            "write it without quotes, e.g. 30000",
        ),
        "i8" | "i16" | "i32" | "i64" | "isize" => {
            ("a whole number", "write it without quotes, e.g. 5")
        }
        "f32" | "f64" => ("a number", "write it without quotes, e.g. 0.5"),
        "bool" | "boolean" => ("true or false", "write true or false, without quotes"),
        "string" | "borrowed string" | "char" => ("text", "put it in quotes, e.g. \"value\""),
        "sequence" => ("a list", "write a list, e.g. [\"a\", \"b\"]"),
        "map" => ("a table", "write a table: [section] or { key = \"value\" }"),
        _ if e.starts_with("enum ") => (
            "one of this key's names, in quotes",
            "see the configuration reference in the README for the names",
        ),
        _ if e.starts_with("struct ") => {
            ("a table", "write a table: [section] or { key = \"value\" }")
        }
        _ => {
            return (
                expected.to_owned(),
                "see the configuration reference in the README".into(),
            );
        }
    };
    (want.to_owned(), fix.to_owned())
}

/// Reads a whole [`Config`]; its errors in full.
pub(super) fn extract(fig: &Figment, o: &Origins) -> Result<Config, Vec<ConfigError>> {
    fig.extract::<Config>()
        .map_err(|first| extract_errors(fig, first, o))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typos_find_the_key_they_meant() {
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        let known = ["bootstrap_servers", "group_id", "topics"];
        assert_eq!(
            closest("bootstrap_server", &known),
            Some("bootstrap_servers")
        );
        assert_eq!(closest("topic", &known), Some("topics"));
        assert_eq!(closest("bronze", &known), None);
    }

    #[test]
    fn keys_read_like_toml() {
        let path = |p: &[&str]| key_name(&p.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(path(&["tables", "1", "kind"]), "tables[1].kind");
        assert_eq!(
            path(&["kafka", "properties", "sasl.password"]),
            "kafka.properties.\"sasl.password\""
        );
    }
}
