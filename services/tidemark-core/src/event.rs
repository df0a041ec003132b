//! The change event model: what one Kafka record from Debezium means.

use std::cmp::Ordering;
use std::sync::Arc;

use serde::{Deserialize, Deserializer};

use crate::schema::Schema;
use crate::value::Row;

/// Where a record sits in Kafka.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaCoords {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    /// The record's timestamp in ms since the epoch, when the broker gave one.
    pub timestamp_ms: Option<i64>,
}

/// A raw Kafka record as the consumer hands it over.
#[derive(Debug, Clone, Copy)]
pub struct RawRecord<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    pub timestamp_ms: Option<i64>,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
}

impl RawRecord<'_> {
    pub fn coords(&self) -> KafkaCoords {
        KafkaCoords {
            topic: self.topic.to_owned(),
            partition: self.partition,
            offset: self.offset,
            timestamp_ms: self.timestamp_ms,
        }
    }
}

/// What a record turned out to be. Only [`Decoded::Change`] is a table row change; the rest are
/// routed to their own bronze tables or counted.
#[derive(Debug, Clone, PartialEq)]
pub enum Decoded {
    Change(Box<ChangeEvent>),
    /// A null value after a delete (log compaction marker): counted, not landed as a change.
    Tombstone(Tombstone),
    /// `op = m`: a logical decoding message (`pg_logical_emit_message`).
    Message(Box<LogicalMessage>),
    /// BEGIN/END records of the `<prefix>.transaction` topic.
    Transaction(TransactionEvent),
    /// Records of `__debezium-heartbeat.<prefix>`.
    Heartbeat(Heartbeat),
    /// DDL records of the schema-change topic.
    SchemaChange(Box<SchemaChange>),
}

impl Decoded {
    /// About how many bytes the record's row images take once landed (see
    /// [`crate::value::Value::landed_bytes`]); other records are counted by their raw size.
    pub fn landed_bytes(&self) -> usize {
        let rows = |r: &[&Option<Row>]| -> usize {
            r.iter()
                .filter_map(|r| r.as_ref().map(Row::landed_bytes))
                .sum()
        };
        match self {
            Decoded::Change(e) => rows(&[&e.key, &e.before, &e.after]),
            Decoded::Tombstone(t) => rows(&[&t.key]),
            _ => 0,
        }
    }

    /// The Kafka coordinates of the record, whatever it was.
    pub fn kafka(&self) -> &KafkaCoords {
        match self {
            Decoded::Change(e) => &e.kafka,
            Decoded::Tombstone(t) => &t.kafka,
            Decoded::Message(m) => &m.kafka,
            Decoded::Transaction(t) => &t.kafka,
            Decoded::Heartbeat(h) => &h.kafka,
            Decoded::SchemaChange(s) => &s.kafka,
        }
    }
}

/// Debezium's operation codes for row changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Op {
    Create,
    Update,
    Delete,
    /// Snapshot read.
    Read,
    Truncate,
}

impl Op {
    pub const ALL: [Op; 5] = [Op::Create, Op::Update, Op::Delete, Op::Read, Op::Truncate];

    /// From Debezium's one-letter code; `m` is not a row change and is not accepted here.
    pub fn from_code(code: &str) -> Option<Op> {
        Some(match code {
            "c" => Op::Create,
            "u" => Op::Update,
            "d" => Op::Delete,
            "r" => Op::Read,
            "t" => Op::Truncate,
            _ => return None,
        })
    }

    pub fn code(self) -> &'static str {
        match self {
            Op::Create => "c",
            Op::Update => "u",
            Op::Delete => "d",
            Op::Read => "r",
            Op::Truncate => "t",
        }
    }
}

/// A Kafka topic-partition: the unit of order, of consumer assignment and of bronze's commit
/// log.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    pub topic: String,
    pub partition: i32,
}

impl TopicPartition {
    pub fn new(topic: impl Into<String>, partition: i32) -> TopicPartition {
        TopicPartition {
            topic: topic.into(),
            partition,
        }
    }
}

/// A topic-partition equals the `(topic, partition)` pair it names.
impl<T: AsRef<str>> PartialEq<(T, i32)> for TopicPartition {
    fn eq(&self, (topic, partition): &(T, i32)) -> bool {
        self.topic == topic.as_ref() && self.partition == *partition
    }
}

impl std::fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.topic, self.partition)
    }
}

/// One row change of a source table.
#[derive(Debug, Clone, PartialEq)]
pub struct ChangeEvent {
    pub op: Op,
    /// The record key's columns (absent for keyless tables).
    pub key: Option<Row>,
    pub before: Option<Row>,
    pub after: Option<Row>,
    pub source: Source,
    /// Envelope capture time (when Debezium processed the change).
    pub ts_ms: Option<i64>,
    pub ts_us: Option<i64>,
    pub ts_ns: Option<i64>,
    pub transaction: Option<TransactionBlock>,
    pub kafka: KafkaCoords,
    /// The value schema the rows were decoded under (absent for schemaless JSON).
    pub schema: Option<Arc<EventSchema>>,
}

impl ChangeEvent {
    /// The source commit time in ms (falls back to legacy `ts_sec`).
    pub fn source_ts_ms(&self) -> Option<i64> {
        self.source
            .ts_ms
            .or(self.source.ts_sec.map(|s| s.saturating_mul(1000)))
    }
}

/// A value schema as parsed once and shared by every event decoded under it.
#[derive(Debug, Clone, PartialEq)]
pub struct EventSchema {
    /// The row schema (the `after`/`before` struct).
    pub row: Schema,
    /// The schema text as received (JsonConverter JSON or Avro JSON), kept for bronze metadata.
    pub text: String,
    /// A stable fingerprint of `text`.
    pub fingerprint: u64,
    /// Registry id when the schema came from a Schema Registry.
    pub registry_id: Option<u32>,
}

/// Debezium's `source` block. Every member but `connector`/`name` may be absent (older versions,
/// other connectors), so everything is optional; numbers may arrive as numeric strings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct Source {
    pub version: Option<String>,
    pub connector: Option<String>,
    pub name: Option<String>,
    #[serde(deserialize_with = "lenient_i64")]
    pub ts_ms: Option<i64>,
    #[serde(deserialize_with = "lenient_i64")]
    pub ts_us: Option<i64>,
    #[serde(deserialize_with = "lenient_i64")]
    pub ts_ns: Option<i64>,
    /// Legacy MySQL source blocks carry seconds only.
    #[serde(deserialize_with = "lenient_i64")]
    pub ts_sec: Option<i64>,
    #[serde(deserialize_with = "snapshot")]
    pub snapshot: Option<Snapshot>,
    pub db: Option<String>,
    /// PostgreSQL: a JSON array in a string, `["<last commit lsn>","<lsn>"]`.
    pub sequence: Option<String>,
    pub schema: Option<String>,
    pub table: Option<String>,
    #[serde(rename = "txId", deserialize_with = "lenient_i64")]
    pub tx_id: Option<i64>,
    #[serde(deserialize_with = "lenient_i64")]
    pub lsn: Option<i64>,
    #[serde(deserialize_with = "lenient_i64")]
    pub xmin: Option<i64>,
    #[serde(deserialize_with = "lenient_i64")]
    pub server_id: Option<i64>,
    pub gtid: Option<String>,
    pub file: Option<String>,
    #[serde(deserialize_with = "lenient_i64")]
    pub pos: Option<i64>,
    #[serde(deserialize_with = "lenient_i64")]
    pub row: Option<i64>,
    #[serde(deserialize_with = "lenient_i64")]
    pub thread: Option<i64>,
    pub query: Option<String>,
    /// SQL Server / Db2 positions (`0000002a:00000f30:0003`) and the order within one change.
    pub change_lsn: Option<String>,
    pub commit_lsn: Option<String>,
    #[serde(deserialize_with = "lenient_i64")]
    pub event_serial_no: Option<i64>,
    /// Oracle positions (decimal SCNs as strings).
    pub scn: Option<String>,
    pub commit_scn: Option<String>,
}

/// `source.snapshot`: a string enum in current Debezium, a boolean in docs, null in legacy output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Snapshot {
    True,
    False,
    First,
    Last,
    FirstInDataCollection,
    LastInDataCollection,
    Incremental,
    Other(String),
}

impl Snapshot {
    pub fn parse(s: &str) -> Snapshot {
        match s {
            "true" => Snapshot::True,
            "false" => Snapshot::False,
            "first" => Snapshot::First,
            "last" => Snapshot::Last,
            "first_in_data_collection" => Snapshot::FirstInDataCollection,
            "last_in_data_collection" => Snapshot::LastInDataCollection,
            "incremental" => Snapshot::Incremental,
            other => Snapshot::Other(other.to_owned()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Snapshot::True => "true",
            Snapshot::False => "false",
            Snapshot::First => "first",
            Snapshot::Last => "last",
            Snapshot::FirstInDataCollection => "first_in_data_collection",
            Snapshot::LastInDataCollection => "last_in_data_collection",
            Snapshot::Incremental => "incremental",
            Snapshot::Other(s) => s,
        }
    }
}

/// A position in the source database's log, ordered within one connector in the source's commit
/// order. An event older by position than a stored row never overwrites it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum SourcePosition {
    /// PostgreSQL: the last commit LSN before the event's transaction, then the event's LSN.
    /// `sequence` has a null commit LSN for snapshot reads and for the first transaction streamed
    /// after a snapshot; null never means 0: such an event sits at its own LSN (a snapshot read
    /// at the snapshot's LSN, after everything committed before it; the first streamed change
    /// after it).
    Postgres { commit_lsn: u64, lsn: u64 },
    /// MySQL/MariaDB: the GTID where present (`server uuid`/domain and transaction number), the
    /// server, then binlog file number, position and row within the event. Coordinates order
    /// only within one server lineage: the merger orders lineages (see the warehouse crate).
    MySql {
        gtid: Option<Gtid>,
        server_id: u64,
        file_seq: u64,
        pos: u64,
        row: u64,
    },
    /// SQL Server and Db2: commit LSN, change LSN (each three hex words), event serial number.
    SqlServer {
        commit_lsn: [u32; 3],
        change_lsn: [u32; 3],
        serial: u64,
    },
    /// Oracle: commit SCN (the change's SCN when absent), then the change's SCN.
    Oracle { commit_scn: u128, scn: u128 },
    /// Anything else: positions are not comparable, order by commit time and Kafka offset.
    Unknown,
}

/// A MySQL GTID `uuid:N` (or MariaDB `domain-server-seq`): `source` names the lineage, `seq`
/// counts its transactions in commit order.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Gtid {
    pub source: String,
    pub seq: u64,
}

impl Gtid {
    pub fn parse(text: &str) -> Option<Gtid> {
        let text = text.trim();
        if let Some((uuid, seq)) = text.rsplit_once(':') {
            // A GTID set (`uuid:1-5`) names the last transaction of the range.
            let seq = seq.rsplit('-').next()?.parse().ok()?;
            return Some(Gtid {
                source: uuid.to_ascii_lowercase(),
                seq,
            });
        }
        let mut parts = text.split('-');
        let (domain, _server, seq) = (parts.next()?, parts.next()?, parts.next()?);
        Some(Gtid {
            source: format!("mariadb-domain-{}", domain.parse::<u32>().ok()?),
            seq: seq.parse().ok()?,
        })
    }
}

impl Source {
    /// The comparable log position of this event, where the connector gives one.
    pub fn position(&self) -> SourcePosition {
        if let Some(lsn) = self.lsn.and_then(|l| u64::try_from(l).ok()) {
            let commit_lsn = self
                .sequence
                .as_deref()
                .and_then(|s| serde_json::from_str::<Vec<Option<String>>>(s).ok())
                .and_then(|v| v.into_iter().next().flatten())
                .and_then(|s| s.parse().ok())
                .unwrap_or(lsn);
            return SourcePosition::Postgres { commit_lsn, lsn };
        }
        if let (Some(file), Some(pos)) = (&self.file, self.pos) {
            let file_seq = file
                .rsplit('.')
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            return SourcePosition::MySql {
                gtid: self.gtid.as_deref().and_then(Gtid::parse),
                server_id: self.server_id.unwrap_or(0).max(0) as u64,
                file_seq,
                pos: pos.max(0) as u64,
                row: self.row.unwrap_or(0).max(0) as u64,
            };
        }
        let change = self.change_lsn.as_deref().and_then(parse_lsn_words);
        let commit = self.commit_lsn.as_deref().and_then(parse_lsn_words);
        if let Some(commit_lsn) = commit.or(change) {
            return SourcePosition::SqlServer {
                commit_lsn,
                change_lsn: change.unwrap_or(commit_lsn),
                serial: self.event_serial_no.unwrap_or(0).max(0) as u64,
            };
        }
        let scn = self
            .scn
            .as_deref()
            .and_then(|s| s.trim().parse::<u128>().ok());
        let commit_scn = self
            .commit_scn
            .as_deref()
            .and_then(|s| s.trim().parse::<u128>().ok());
        if let Some(commit) = commit_scn.or(scn) {
            return SourcePosition::Oracle {
                commit_scn: commit,
                scn: scn.unwrap_or(commit),
            };
        }
        SourcePosition::Unknown
    }

    /// PostgreSQL's textual LSN (`0/16E9058`) of `lsn`.
    pub fn pg_lsn_text(&self) -> Option<String> {
        let lsn = u64::try_from(self.lsn?).ok()?;
        Some(format!("{:X}/{:X}", lsn >> 32, lsn & 0xffff_ffff))
    }
}

/// `0000002a:00000f30:0003` (SQL Server, Db2) as three words; `NULL` and other text: `None`.
fn parse_lsn_words(text: &str) -> Option<[u32; 3]> {
    let mut parts = text.trim().split(':');
    let mut out = [0u32; 3];
    for w in &mut out {
        *w = u32::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(out)
}

impl SourcePosition {
    /// Compares two events' positions; `None` when they are not comparable (other connectors,
    /// or MySQL coordinates of two server lineages).
    pub fn compare(&self, other: &SourcePosition) -> Option<Ordering> {
        use SourcePosition as P;
        match (self, other) {
            (P::Postgres { .. }, P::Postgres { .. })
            | (P::SqlServer { .. }, P::SqlServer { .. })
            | (P::Oracle { .. }, P::Oracle { .. }) => Some(self.cmp(other)),
            (
                P::MySql {
                    gtid: Some(a),
                    pos,
                    row,
                    ..
                },
                P::MySql {
                    gtid: Some(b),
                    pos: pos_b,
                    row: row_b,
                    ..
                },
            ) => (a.source == b.source).then(|| (a.seq, pos, row).cmp(&(b.seq, pos_b, row_b))),
            (
                P::MySql {
                    gtid: None,
                    server_id: a,
                    ..
                },
                P::MySql {
                    gtid: None,
                    server_id: b,
                    ..
                },
            ) => (a == b).then(|| self.cmp(other)),
            _ => None,
        }
    }
}

impl std::fmt::Display for SourcePosition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let lsn = |v: u64| format!("{:X}/{:X}", v >> 32, v & 0xffff_ffff);
        let words = |w: &[u32; 3]| format!("{:08x}:{:08x}:{:04x}", w[0], w[1], w[2]);
        match self {
            SourcePosition::Postgres { commit_lsn, lsn: l } => {
                write!(f, "postgres commit {} lsn {}", lsn(*commit_lsn), lsn(*l))
            }
            SourcePosition::MySql {
                gtid,
                server_id,
                file_seq,
                pos,
                row,
            } => {
                if let Some(g) = gtid {
                    write!(f, "mysql gtid {}:{} ", g.source, g.seq)?;
                }
                write!(
                    f,
                    "mysql server {server_id} binlog {file_seq:06} pos {pos} row {row}"
                )
            }
            SourcePosition::SqlServer {
                commit_lsn,
                change_lsn,
                serial,
            } => write!(
                f,
                "commit_lsn {} change_lsn {} serial {serial}",
                words(commit_lsn),
                words(change_lsn)
            ),
            SourcePosition::Oracle { commit_scn, scn } => {
                write!(f, "oracle commit_scn {commit_scn} scn {scn}")
            }
            SourcePosition::Unknown => f.write_str("none (ordered by commit time and offset)"),
        }
    }
}

/// The `transaction` block of a data event.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct TransactionBlock {
    pub id: String,
    #[serde(default, deserialize_with = "lenient_i64")]
    pub total_order: Option<i64>,
    #[serde(default, deserialize_with = "lenient_i64")]
    pub data_collection_order: Option<i64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Tombstone {
    pub kafka: KafkaCoords,
    pub key: Option<Row>,
}

/// `op = m`: a logical decoding message. Content is bytes (not necessarily UTF-8).
#[derive(Debug, Clone, PartialEq)]
pub struct LogicalMessage {
    pub kafka: KafkaCoords,
    pub source: Source,
    pub prefix: Option<String>,
    pub content: Vec<u8>,
    pub ts_ms: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransactionStatus {
    Begin,
    End,
}

/// A BEGIN/END record of the transaction metadata topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionEvent {
    pub kafka: KafkaCoords,
    pub status: TransactionStatus,
    pub id: String,
    pub ts_ms: Option<i64>,
    pub event_count: Option<i64>,
    /// Per table event counts (END only).
    pub data_collections: Vec<(String, i64)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heartbeat {
    pub kafka: KafkaCoords,
    pub ts_ms: Option<i64>,
}

/// A DDL record of the schema-change topic.
#[derive(Debug, Clone, PartialEq)]
pub struct SchemaChange {
    pub kafka: KafkaCoords,
    pub source: Source,
    pub database: Option<String>,
    pub schema: Option<String>,
    pub ddl: Option<String>,
    /// `tableChanges` as JSON text (landed as is).
    pub table_changes: Option<String>,
    pub ts_ms: Option<i64>,
}

/// Accepts an integer, a numeric string, or null (Debezium docs show both forms).
pub fn lenient_i64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    struct V;
    impl<'de> serde::de::Visitor<'de> for V {
        type Value = Option<i64>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an integer, a numeric string or null")
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Self::Value, E> {
            Ok(Some(v))
        }
        fn visit_i32<E: serde::de::Error>(self, v: i32) -> Result<Self::Value, E> {
            Ok(Some(v.into()))
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
            i64::try_from(v).map(Some).map_err(E::custom)
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
            v.trim().parse().map(Some).map_err(E::custom)
        }
        fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D2: Deserializer<'de>>(self, d: D2) -> Result<Self::Value, D2::Error> {
            lenient_i64(d)
        }
    }
    d.deserialize_any(V)
}

fn snapshot<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Snapshot>, D::Error> {
    struct V;
    impl<'de> serde::de::Visitor<'de> for V {
        type Value = Option<Snapshot>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a snapshot marker: string, boolean or null")
        }
        fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Self::Value, E> {
            Ok(Some(if v { Snapshot::True } else { Snapshot::False }))
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Some(Snapshot::parse(v)))
        }
        fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D2: Deserializer<'de>>(self, d: D2) -> Result<Self::Value, D2::Error> {
            snapshot(d)
        }
        // Avro enums (Debezium's snapshot enum) arrive as (index, symbol).
        fn visit_enum<A: serde::de::EnumAccess<'de>>(self, a: A) -> Result<Self::Value, A::Error> {
            use serde::de::VariantAccess;
            let (name, variant): (String, _) = a.variant()?;
            variant.unit_variant()?;
            Ok(Some(Snapshot::parse(&name)))
        }
    }
    d.deserialize_any(V)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_order_postgres_and_mysql() {
        let pg = |seq: &str, lsn| Source {
            sequence: Some(seq.into()),
            lsn: Some(lsn),
            ..Default::default()
        };
        let a = pg(r#"["100","200"]"#, 200).position();
        let b = pg(r#"["150","140"]"#, 140).position();
        assert_eq!(
            a,
            SourcePosition::Postgres {
                commit_lsn: 100,
                lsn: 200
            }
        );
        assert_eq!(a.compare(&b), Some(Ordering::Less), "commit lsn first");
        // A null commit LSN (snapshot reads, the first transaction after a snapshot) is the
        // event's own LSN, never 0: a re-snapshot sorts after the history before it.
        let snap = pg(r#"[null,"300"]"#, 300).position();
        assert_eq!(a.compare(&snap), Some(Ordering::Less));
        assert_eq!(
            snap,
            SourcePosition::Postgres {
                commit_lsn: 300,
                lsn: 300
            }
        );
        let my = |file: &str, pos| Source {
            file: Some(file.into()),
            pos: Some(pos),
            ..Default::default()
        };
        assert_eq!(
            my("mysql-bin.000003", 10)
                .position()
                .compare(&my("mysql-bin.000004", 5).position()),
            Some(Ordering::Less)
        );
        assert_eq!(a.compare(&SourcePosition::Unknown), None);
    }

    #[test]
    fn mysql_gtids_order_within_their_server_only() {
        let my = |gtid: &str, file: &str, pos| Source {
            gtid: Some(gtid.into()),
            file: Some(file.into()),
            pos: Some(pos),
            server_id: Some(1),
            ..Default::default()
        };
        let a = my(
            "3E11FA47-71CA-11E1-9E33-C80AA9429562:23",
            "mysql-bin.000009",
            500,
        );
        let b = my(
            "3e11fa47-71ca-11e1-9e33-c80aa9429562:24",
            "mysql-bin.000002",
            100,
        );
        let other = my(
            "0b3ac4ea-71ca-11e1-9e33-c80aa9429562:1",
            "mysql-bin.000001",
            4,
        );
        assert_eq!(
            a.position().compare(&b.position()),
            Some(Ordering::Less),
            "GTID before binlog coordinates"
        );
        assert_eq!(a.position().compare(&other.position()), None);
        assert_eq!(
            Gtid::parse("0-1-42"),
            Some(Gtid {
                source: "mariadb-domain-0".into(),
                seq: 42
            })
        );
    }

    #[test]
    fn sql_server_and_oracle_positions() {
        let ms = |commit: &str, change: &str, serial| Source {
            commit_lsn: Some(commit.into()),
            change_lsn: Some(change.into()),
            event_serial_no: Some(serial),
            ..Default::default()
        };
        let a = ms("00000025:00000d70:0003", "00000025:00000d68:0002", 1).position();
        let b = ms("00000025:00000d70:0003", "00000025:00000d68:0002", 2).position();
        let c = ms("00000026:00000010:0001", "00000025:00000001:0001", 1).position();
        assert_eq!(a.compare(&b), Some(Ordering::Less));
        assert_eq!(b.compare(&c), Some(Ordering::Less), "commit lsn first");
        let ora = |scn: &str, commit: &str| Source {
            scn: Some(scn.into()),
            commit_scn: Some(commit.into()),
            ..Default::default()
        };
        assert_eq!(
            ora("900", "1000")
                .position()
                .compare(&ora("950", "999").position()),
            Some(Ordering::Greater)
        );
        assert_eq!(a.compare(&ora("1", "1").position()), None);
    }

    #[test]
    fn lsn_prints_like_postgres() {
        let s = Source {
            lsn: Some(24_023_128),
            ..Default::default()
        };
        assert_eq!(s.pg_lsn_text().unwrap(), "0/16E9058");
    }
}
