//! The Kafka side of ingest: a consumer-group member with cooperative rebalancing, manual offset
//! commits (only a hint: the commit log is the truth) and bounded local queues.

use std::collections::BTreeMap;
use std::sync::Mutex;
use tidemark_core::event::TopicPartition;

use rdkafka::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::KafkaResult;

/// A rebalance seen by the consumer, applied by the ingest loop between messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RebalanceEvent {
    Assigned(Vec<TopicPartition>),
    Revoked(Vec<TopicPartition>),
}

/// Collects rebalance events for the loop (the callbacks run inside `recv`).
#[derive(Debug, Default)]
pub struct IngestContext {
    events: Mutex<Vec<RebalanceEvent>>,
}

impl IngestContext {
    pub fn take_events(&self) -> Vec<RebalanceEvent> {
        std::mem::take(&mut *self.events.lock().expect("rebalance events lock"))
    }
}

impl ClientContext for IngestContext {
    /// librdkafka writes names into its statistics JSON without escaping control characters: one
    /// topic with a newline in its name made every report unparseable (and the lag metric of
    /// every topic vanished). Such characters inside strings are escaped before parsing.
    fn stats_raw(&self, statistics: &[u8]) {
        let parsed = serde_json::from_slice(statistics)
            .or_else(|_| serde_json::from_slice(&escape_controls_in_strings(statistics)));
        match parsed {
            Ok(stats) => self.stats(stats),
            Err(e) => {
                tracing::warn!(error = %e, "librdkafka statistics not parseable; lag not updated")
            }
        }
    }

    /// librdkafka's log lines go to tracing. Its errors (a TLS handshake that fails, refused
    /// SASL credentials, brokers down) also make the `kafka` loop not ready, with the line as
    /// the cause (`/readyz`), until statistics show a broker up again: librdkafka retries such
    /// failures forever, and the consumer only sees an error code without the reason.
    fn log(&self, level: RDKafkaLogLevel, fac: &str, line: &str) {
        use RDKafkaLogLevel as L;
        match level {
            L::Emerg | L::Alert | L::Critical | L::Error => {
                tracing::error!(target: "librdkafka", facility = fac, "{line}");
                kafka_beat().failed(line);
            }
            L::Warning => tracing::warn!(target: "librdkafka", facility = fac, "{line}"),
            L::Notice | L::Info => tracing::info!(target: "librdkafka", facility = fac, "{line}"),
            L::Debug => tracing::debug!(target: "librdkafka", facility = fac, "{line}"),
        }
    }

    /// librdkafka statistics (every `statistics.interval.ms`): the high watermarks feed the lag;
    /// a broker in state UP means the cluster is reachable.
    fn stats(&self, statistics: rdkafka::Statistics) {
        if statistics.brokers.values().any(|b| b.state == "UP") {
            kafka_beat().ok();
        }
        for (topic, t) in &statistics.topics {
            for (p, part) in &t.partitions {
                if *p >= 0 && part.hi_offset >= 0 {
                    tidemark_core::metrics::high_watermark(topic, *p, part.hi_offset);
                }
            }
        }
    }
}

/// Whether the cluster answers: failed by librdkafka's error lines, ok by a broker up.
fn kafka_beat() -> std::sync::Arc<tidemark_core::health::Beat> {
    // Statistics arrive every 5 s; a minute without a broker up is an unreachable cluster.
    tidemark_core::health::beat("kafka", std::time::Duration::from_secs(60))
}

/// JSON text with raw control characters inside strings escaped (`\u000a`); the rest as is.
fn escape_controls_in_strings(json: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(json.len() + 16);
    let (mut in_string, mut escaped) = (false, false);
    for &b in json {
        if in_string && b < 0x20 {
            out.extend_from_slice(format!("\\u{b:04x}").as_bytes());
            continue;
        }
        out.push(b);
        if escaped {
            escaped = false;
        } else if in_string && b == b'\\' {
            escaped = true;
        } else if b == b'"' {
            in_string = !in_string;
        }
    }
    out
}

fn partitions(tpl: &rdkafka::TopicPartitionList) -> Vec<TopicPartition> {
    tpl.elements()
        .iter()
        .map(|e| TopicPartition::new(e.topic(), e.partition()))
        .collect()
}

/// `topic/partition, …` for a log line.
fn shown(tpl: &rdkafka::TopicPartitionList) -> String {
    tpl.elements()
        .iter()
        .map(|e| format!("{}/{}", e.topic(), e.partition()))
        .collect::<Vec<_>>()
        .join(", ")
}

impl ConsumerContext for IngestContext {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            tracing::info!(partitions = %shown(tpl), "partitions revoked");
            self.events
                .lock()
                .expect("rebalance events lock")
                .push(RebalanceEvent::Revoked(partitions(tpl)));
        }
    }

    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                tracing::info!(partitions = %shown(tpl), "partitions assigned");
                self.events
                    .lock()
                    .expect("rebalance events lock")
                    .push(RebalanceEvent::Assigned(partitions(tpl)));
            }
            Rebalance::Error(e) => tracing::warn!(error = %e, "rebalance error"),
            Rebalance::Revoke(_) => {}
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, _offsets: &rdkafka::TopicPartitionList) {
        if let Err(e) = result {
            // Kafka offsets are a hint only; the commit log already holds the truth.
            tracing::debug!(error = %e, "kafka offset commit failed");
        }
    }
}

pub type IngestConsumer = StreamConsumer<IngestContext>;

/// Consumer settings tidemark owns; user properties come on top (validated not to clash).
pub fn consumer_config(
    bootstrap: &str,
    group_id: &str,
    properties: &BTreeMap<String, String>,
) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap)
        .set("group.id", group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("partition.assignment.strategy", "cooperative-sticky")
        // Bounded prefetch: at most this much per partition waits in librdkafka's queues.
        .set("queued.max.messages.kbytes", "16384")
        // When that queue is full librdkafka pauses fetching for this long (default 1 s): a
        // flush briefly fills it, and a 1 s stall per flush would idle ingest most of the time.
        .set("fetch.queue.backoff.ms", "10")
        .set("fetch.wait.max.ms", "100")
        // High watermarks for the lag metric.
        .set("statistics.interval.ms", "5000");
    for (k, v) in properties {
        c.set(k, v);
    }
    c
}

/// A Kafka error as users see it: librdkafka's configuration errors echo the property's value,
/// which can be a password (`ssl.key.password`, `sasl.password`), so the value is left out.
pub fn describe(e: &rdkafka::error::KafkaError) -> String {
    match e {
        rdkafka::error::KafkaError::ClientConfig(_, desc, key, _value) => {
            format!("Client config error: {desc} (property {key})")
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod describe_tests {
    #[test]
    fn config_errors_never_echo_the_value() {
        let e = rdkafka::error::KafkaError::ClientConfig(
            rdkafka::types::RDKafkaConfRes::RD_KAFKA_CONF_INVALID,
            "not supported in this build".into(),
            "ssl.key.password".into(),
            "hunter2".into(),
        );
        let shown = super::describe(&e);
        assert!(
            !shown.contains("hunter2") && shown.contains("ssl.key.password"),
            "{shown}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_in_names_are_escaped() {
        let raw = b"{\"topics\":{\"a\nb\":{\"x\":\"q\\\"\\n\"}},\n\"n\":1}";
        assert!(serde_json::from_slice::<serde_json::Value>(raw).is_err());
        let fixed = escape_controls_in_strings(raw);
        let v: serde_json::Value = serde_json::from_slice(&fixed).unwrap();
        assert!(v["topics"]["a\nb"].is_object(), "{v}");
        assert_eq!(v["topics"]["a\nb"]["x"], "q\"\n");
        assert_eq!(v["n"], 1);
    }
}
