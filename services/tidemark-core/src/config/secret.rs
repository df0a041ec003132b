//! Secrets: given inline, by environment variable or by file; never printed.

use std::fmt;

use serde::{Deserialize, Serialize, Serializer};

/// A secret value. `Debug`, `Display` and `Serialize` print `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The value, for handing to a client library. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("***")
    }
}

/// How a value is given in the file: `"value"`, `{ env = "VAR" }` or `{ file = "/path" }`.
#[derive(Deserialize)]
#[serde(untagged, deny_unknown_fields)]
enum Source {
    Inline(String),
    Env { env: String },
    File { file: String },
}

/// Reads `{ env = … }` and `{ file = … }` (a trailing newline of a file is dropped).
fn from_env(var: &str) -> Result<String, String> {
    std::env::var(var).map_err(|_| format!("environment variable `{var}` is not set"))
}

fn from_file(path: &str) -> Result<String, String> {
    std::fs::read_to_string(path)
        .map(|s| s.trim_end_matches(['\r', '\n']).to_owned())
        .map_err(|e| format!("cannot read file `{path}`: {e}"))
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Secret, D::Error> {
        use serde::de::Error;
        let value = match Source::deserialize(d).map_err(|_| {
            D::Error::custom("a secret is a string, { env = \"VAR\" } or { file = \"/path\" }")
        })? {
            Source::Inline(v) => Ok(v),
            Source::Env { env } => from_env(&env),
            Source::File { file } => from_file(&file),
        };
        value.map(Secret).map_err(D::Error::custom)
    }
}

/// PEM text (a CA bundle, a client certificate or its key) given as a path, inline PEM,
/// `{ file = "/path" }` or `{ env = "VAR" }`; read when the configuration loads. It prints
/// where it came from, never its content (a key is a secret).
#[derive(Clone, PartialEq, Eq)]
pub struct Pem {
    text: String,
    origin: String,
}

impl Pem {
    /// The PEM text, for handing to a TLS library.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Where it came from: `file /path`, `env VAR` or `inline`.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Builds one from PEM text (tests, or values computed at run time).
    pub fn inline(text: impl Into<String>) -> Pem {
        Pem {
            text: text.into(),
            origin: "inline".into(),
        }
    }
}

impl fmt::Debug for Pem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pem({})", self.origin)
    }
}

impl Serialize for Pem {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("<PEM from {}>", self.origin))
    }
}

impl<'de> Deserialize<'de> for Pem {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Pem, D::Error> {
        use serde::de::Error;
        let source = Source::deserialize(d).map_err(|_| {
            D::Error::custom(
                "PEM is a path, inline PEM text, { file = \"/path\" } or { env = \"VAR\" }",
            )
        })?;
        let (text, origin) = match source {
            Source::Inline(v) if v.contains("-----BEGIN ") => Ok((v, "inline".to_owned())),
            Source::Inline(path) | Source::File { file: path } => {
                from_file(&path).map(|t| (t, format!("file {path}")))
            }
            Source::Env { env } => from_env(&env).map(|t| (t, format!("env {env}"))),
        }
        .map_err(D::Error::custom)?;
        if !text.contains("-----BEGIN ") {
            return Err(D::Error::custom(format!(
                "{origin} holds no PEM block (a line `-----BEGIN …-----`)"
            )));
        }
        Ok(Pem { text, origin })
    }
}

/// `kafka.properties`: librdkafka takes strings, but a value may be written as a number or a
/// boolean, and a secret (`sasl.password`) as `{ env = … }` or `{ file = … }`.
pub(super) fn deserialize_properties<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<std::collections::BTreeMap<String, String>, D::Error> {
    use serde::de::Error;
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Property {
        Bool(bool),
        Int(i64),
        Float(f64),
        Given(Source),
    }
    let raw = std::collections::BTreeMap::<String, Property>::deserialize(d)?;
    raw.into_iter()
        .map(|(k, v)| {
            let value = match v {
                Property::Bool(b) => Ok(b.to_string()),
                Property::Int(i) => Ok(i.to_string()),
                Property::Float(f) => Ok(f.to_string()),
                Property::Given(Source::Inline(s)) => Ok(s),
                Property::Given(Source::Env { env }) => from_env(&env),
                Property::Given(Source::File { file }) => from_file(&file),
            };
            value
                .map(|v| (k.clone(), v))
                .map_err(|e| D::Error::custom(format!("property `{k}`: {e}")))
        })
        .collect()
}

/// Whether a librdkafka property holds a secret (its value is masked when printed).
pub fn is_secret_property(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    [
        "password",
        "secret",
        "jaas",
        "ssl.key.pem",
        "token",
        "credential",
    ]
    .iter()
    .any(|p| k.contains(p))
}

/// A connection URL with its password replaced by `***`.
pub fn mask_url_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, tail) = rest.split_at(rest.find(['/', '?']).unwrap_or(rest.len()));
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{user}:***@{host}"),
            None => authority.to_owned(),
        },
        None => authority.to_owned(),
    };
    format!("{scheme}://{authority}{}", mask_query(tail))
}

/// Query parameters that carry secrets (`?password=…`, which sqlx accepts, tokens, keys).
fn is_secret_param(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    [
        "password",
        "passwd",
        "pwd",
        "secret",
        "token",
        "apikey",
        "api_key",
        "access_key",
        "credential",
    ]
    .iter()
    .any(|s| n.contains(s))
}

fn mask_query(tail: &str) -> String {
    let Some((path, query)) = tail.split_once('?') else {
        return tail.to_owned();
    };
    let (query, fragment) = query
        .split_once('#')
        .map_or((query, None), |(q, f)| (q, Some(f)));
    let masked: Vec<String> = query
        .split('&')
        .map(|kv| match kv.split_once('=') {
            Some((k, _)) if is_secret_param(k) => format!("{k}=***"),
            _ => kv.to_owned(),
        })
        .collect();
    let mut out = format!("{path}?{}", masked.join("&"));
    if let Some(f) = fragment {
        out.push('#');
        out.push_str(f);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s} {s:?}"), "*** Secret(***)");
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"***\"");
    }

    #[test]
    fn url_passwords_are_masked() {
        assert_eq!(
            mask_url_password("postgres://dw:s3cr@t@db:5432/dw?sslmode=require"),
            "postgres://dw:***@db:5432/dw?sslmode=require"
        );
        assert_eq!(mask_url_password("sqlite://./dw.db"), "sqlite://./dw.db");
        assert_eq!(
            mask_url_password("postgres://dw@db/dw?sslmode=require&password=hunter2&x=1"),
            "postgres://dw@db/dw?sslmode=require&password=***&x=1"
        );
        assert_eq!(
            mask_url_password("https://reg:hunter2@sr.example.com/"),
            "https://reg:***@sr.example.com/"
        );
        assert!(is_secret_property("sasl.password"));
        assert!(!is_secret_property("security.protocol"));
    }
}
