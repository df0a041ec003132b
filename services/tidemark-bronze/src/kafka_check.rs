//! Checks `kafka.properties` against the librdkafka this binary links, before anything
//! connects: a property librdkafka rejects, a protocol or SASL mechanism it was built without,
//! an OAUTHBEARER setup that would wait forever for a token, or a key file that cannot be read
//! is a configuration error naming the property and the fix — never a client that retries a
//! handshake it can never complete.

use std::collections::BTreeMap;

use rdkafka::ClientConfig;
use rdkafka::error::KafkaError;
use tidemark_core::config::{ConfigError, is_secret_property};

/// librdkafka's `builtin.features` of this build (`ssl`, `sasl_scram`, `zstd`, …).
pub fn builtin_features() -> Vec<String> {
    ClientConfig::new()
        .create_native_config()
        .and_then(|c| c.get("builtin.features"))
        .map(|f| f.split(',').map(str::to_owned).collect())
        .unwrap_or_default()
}

/// Every problem of `properties`; empty when librdkafka can use them as given.
pub fn check_properties(properties: &BTreeMap<String, String>) -> Vec<ConfigError> {
    let features = builtin_features();
    let mut errs = Vec::new();
    for (key, value) in properties {
        if let Some(problem) = rejected(key, value) {
            errs.push(error(
                key,
                problem,
                "see librdkafka's CONFIGURATION.md for its values",
            ));
        }
    }
    let get = |k: &str| properties.get(k).map(|v| v.trim().to_ascii_lowercase());
    let protocol = get("security.protocol").unwrap_or_else(|| "plaintext".into());
    let tls = protocol.ends_with("ssl");
    let sasl = protocol.starts_with("sasl");
    if tls && !has(&features, "ssl") {
        errs.push(error(
            "security.protocol",
            format!("`{protocol}` needs TLS, which this build of librdkafka lacks"),
            "build tidemark with rdkafka's `ssl` feature",
        ));
    }
    for (prefix, used) in [("ssl.", tls), ("sasl.", sasl)] {
        if let Some(k) = properties.keys().find(|k| k.starts_with(prefix))
            && !used
        {
            errs.push(error(
                k,
                format!("is set but security.protocol is `{protocol}`, which ignores it"),
                "set security.protocol to SSL, SASL_PLAINTEXT or SASL_SSL as the brokers need",
            ));
        }
    }
    if sasl {
        check_sasl(properties, &features, &mut errs);
    }
    check_files(properties, &mut errs);
    errs
}

fn check_sasl(
    properties: &BTreeMap<String, String>,
    features: &[String],
    errs: &mut Vec<ConfigError>,
) {
    let mechanism = properties
        .get("sasl.mechanisms")
        .or_else(|| properties.get("sasl.mechanism"))
        .map_or("GSSAPI".to_owned(), |m| m.trim().to_ascii_uppercase());
    let needs = match mechanism.as_str() {
        "GSSAPI" => "sasl_gssapi",
        "PLAIN" => "sasl_plain",
        "SCRAM-SHA-256" | "SCRAM-SHA-512" => "sasl_scram",
        "OAUTHBEARER" => "sasl_oauthbearer",
        other => {
            errs.push(error(
                "sasl.mechanisms",
                format!("`{other}` is not a SASL mechanism librdkafka knows"),
                "use PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER or GSSAPI",
            ));
            return;
        }
    };
    if !has(features, needs) {
        errs.push(error(
            "sasl.mechanisms",
            format!("`{mechanism}` is not built into this librdkafka (no `{needs}`)"),
            &format!("this build has: {}", features.join(", ")),
        ));
    }
    let set = |k: &str| properties.get(k).is_some_and(|v| !v.trim().is_empty());
    if matches!(needs, "sasl_plain" | "sasl_scram")
        && !(set("sasl.username") && set("sasl.password"))
    {
        errs.push(error(
            "sasl.username",
            format!("and sasl.password are needed by `{mechanism}`"),
            "set both (the password as { env = \"VAR\" } or { file = \"/path\" })",
        ));
    }
    if needs == "sasl_oauthbearer" {
        let oidc = properties
            .get("sasl.oauthbearer.method")
            .is_some_and(|m| m.eq_ignore_ascii_case("oidc"));
        let unsecured = properties
            .get("enable.sasl.oauthbearer.unsecure.jwt")
            .is_some_and(|v| v == "true");
        if oidc && !has(features, "oidc") {
            errs.push(error(
                "sasl.oauthbearer.method",
                "is `oidc`, which this build of librdkafka lacks".into(),
                "build tidemark with rdkafka's `curl` feature",
            ));
        }
        if !oidc && !unsecured {
            errs.push(error(
                "sasl.oauthbearer.method",
                "is not `oidc`: tidemark has no token callback, so the client would wait \
                 forever for a token"
                    .into(),
                "set sasl.oauthbearer.method = \"oidc\" with sasl.oauthbearer.client.id, \
                 .client.secret and .token.endpoint.url",
            ));
        }
    }
}

/// Properties that name files: a missing or unreadable one fails here, not at the first
/// handshake minutes later.
fn check_files(properties: &BTreeMap<String, String>, errs: &mut Vec<ConfigError>) {
    for (key, path) in properties {
        let names_file = key.ends_with(".location") || key == "sasl.kerberos.keytab";
        // `ssl.ca.location = "probe"` asks librdkafka to search the usual system paths.
        if !names_file || (key == "ssl.ca.location" && path == "probe") {
            continue;
        }
        if let Err(e) = std::fs::File::open(path) {
            errs.push(error(
                key,
                format!("cannot read `{path}`: {e}"),
                "point it at a readable file",
            ));
        }
    }
}

/// librdkafka's own verdict on one property. Its message quotes the value, so for a secret
/// property only the fact of the refusal is told.
fn rejected(key: &str, value: &str) -> Option<String> {
    let desc = match ClientConfig::new().set(key, value).create_native_config() {
        Ok(_) => return None,
        Err(KafkaError::ClientConfig(_, desc, _, _)) => desc,
        Err(e) => e.to_string(),
    };
    Some(if is_secret_property(key) {
        "librdkafka refuses its value".into()
    } else {
        desc
    })
}

fn has(features: &[String], f: &str) -> bool {
    features.iter().any(|x| x == f)
}

fn error(key: &str, problem: String, fix: &str) -> ConfigError {
    ConfigError {
        key: format!("kafka.properties.\"{key}\""),
        problem,
        fix: fix.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn props(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn keys(errs: &[ConfigError]) -> Vec<&str> {
        errs.iter().map(|e| e.key.as_str()).collect()
    }

    #[test]
    fn this_build_has_tls_and_every_sasl_mechanism() {
        let f = builtin_features();
        for needed in [
            "ssl",
            "sasl_plain",
            "sasl_scram",
            "sasl_oauthbearer",
            "sasl_gssapi",
            "oidc",
            "zstd",
        ] {
            assert!(has(&f, needed), "librdkafka lacks {needed}: {f:?}");
        }
    }

    #[test]
    fn a_usable_sasl_ssl_setup_passes() {
        let p = props(&[
            ("security.protocol", "SASL_SSL"),
            ("sasl.mechanisms", "SCRAM-SHA-512"),
            ("sasl.username", "tidemark"),
            ("sasl.password", "hunter2"),
            ("ssl.ca.location", "probe"),
        ]);
        assert_eq!(check_properties(&p), vec![]);
    }

    #[test]
    fn unknown_properties_and_values_name_the_key_not_the_value() {
        let p = props(&[
            ("security.protocl", "SSL"),
            ("security.protocol", "TLS"),
            ("sasl.password", "hunter2"),
        ]);
        let errs = check_properties(&p);
        let shown = format!("{errs:?}");
        assert!(
            keys(&errs).contains(&"kafka.properties.\"security.protocl\""),
            "{shown}"
        );
        assert!(
            keys(&errs).contains(&"kafka.properties.\"security.protocol\""),
            "{shown}"
        );
        assert!(!shown.contains("hunter2"), "{shown}");
    }

    #[test]
    fn settings_the_protocol_ignores_are_refused() {
        let p = props(&[("ssl.ca.location", "probe")]);
        assert_eq!(
            keys(&check_properties(&p)),
            ["kafka.properties.\"ssl.ca.location\""]
        );
        let p = props(&[("security.protocol", "SSL"), ("sasl.username", "x")]);
        assert_eq!(
            keys(&check_properties(&p)),
            ["kafka.properties.\"sasl.username\""]
        );
    }

    #[test]
    fn sasl_needs_credentials_and_oauthbearer_needs_a_token_source() {
        let p = props(&[
            ("security.protocol", "SASL_SSL"),
            ("sasl.mechanisms", "PLAIN"),
        ]);
        assert_eq!(
            keys(&check_properties(&p)),
            ["kafka.properties.\"sasl.username\""]
        );
        let p = props(&[
            ("security.protocol", "SASL_SSL"),
            ("sasl.mechanisms", "OAUTHBEARER"),
        ]);
        assert_eq!(
            keys(&check_properties(&p)),
            ["kafka.properties.\"sasl.oauthbearer.method\""]
        );
        let p = props(&[
            ("security.protocol", "SASL_SSL"),
            ("sasl.mechanisms", "OAUTHBEARER"),
            ("sasl.oauthbearer.method", "oidc"),
            ("sasl.oauthbearer.client.id", "tidemark"),
            ("sasl.oauthbearer.client.secret", "s"),
            (
                "sasl.oauthbearer.token.endpoint.url",
                "https://idp.example.com/token",
            ),
        ]);
        assert_eq!(check_properties(&p), vec![]);
        let p = props(&[
            ("security.protocol", "SASL_PLAINTEXT"),
            ("sasl.mechanisms", "KERBEROS"),
        ]);
        assert_eq!(
            keys(&check_properties(&p)),
            ["kafka.properties.\"sasl.mechanisms\""]
        );
    }

    #[test]
    fn unreadable_key_files_are_refused() {
        let p = props(&[
            ("security.protocol", "SSL"),
            ("ssl.ca.location", "/nonexistent/ca.pem"),
        ]);
        let errs = check_properties(&p);
        assert_eq!(keys(&errs), ["kafka.properties.\"ssl.ca.location\""]);
        assert!(errs[0].problem.contains("/nonexistent/ca.pem"), "{errs:?}");
    }
}
