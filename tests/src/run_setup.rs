//! The `tidemark run` setup the end-to-end tests share: a config for one Debezium topic (a
//! dimension keyed by `id`) from a Kafka to bronze on local files and a SQLite warehouse
//! (`<dir>/w.db`), and a free port for its metrics endpoint.

use std::path::{Path, PathBuf};

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Writes `<dir>/tidemark.toml`; metrics on `metrics_port`, or an ephemeral port when `None`.
pub fn run_config(
    dir: &Path,
    bootstrap: &str,
    topic: &str,
    group: &str,
    metrics_port: Option<u16>,
) -> PathBuf {
    let path = dir.join("tidemark.toml");
    std::fs::write(
        &path,
        format!(
            "[kafka]\nbootstrap_servers = \"{bootstrap}\"\ngroup_id = \"{group}\"\ntopics = [\"{topic}\"]\n\
             [kafka.properties]\n\"session.timeout.ms\" = \"6000\"\n\"statistics.interval.ms\" = \"500\"\n\
             [bronze]\nurl = \"file://{d}/bronze\"\nmax_records = 400\nmax_age_ms = 300\n\
             [warehouse]\nurl = \"sqlite://{d}/w.db\"\n[merge]\ninterval_ms = 100\n\
             [metrics]\nlisten = \"127.0.0.1:{}\"\n\
             [[tables]]\nsource = \"{topic}\"\nkind = \"dimension\"\nkey = [\"id\"]\n",
            metrics_port.unwrap_or(0),
            d = dir.display(),
        ),
    )
    .unwrap();
    path
}
