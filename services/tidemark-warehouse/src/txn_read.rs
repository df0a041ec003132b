//! The END records of a Debezium transaction topic (`<topic.prefix>.transaction`), read back
//! from bronze (`_transactions` files) for [`crate::atomic`].

use arrow_array::Array;
use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use object_store::ObjectStore;
use object_store::path::Path;
use tidemark_lake::columns;
use tidemark_lake::layout::TableDir;

use crate::atomic::TxEnd;
use crate::bronze_fetch::RECORDS_PER_READ;
use crate::bronze_read::{ReadError, file_batches, records_from};

/// The suffix Debezium gives its transaction topic (`topic.transaction`, default `transaction`).
pub const TOPIC_SUFFIX: &str = ".transaction";

/// The connector prefix of a transaction topic (`bank.transaction` → `bank`).
pub fn prefix_of(topic: &str) -> Option<&str> {
    topic.strip_suffix(TOPIC_SUFFIX)
}

/// The topic a data collection (`public.accounts`) of a connector lands in.
pub fn topic_of(prefix: &str, collection: &str) -> String {
    format!("{prefix}.{collection}")
}

/// The connectors of data topics whose transaction topic is not among `topics`: readers of their
/// tables can see half a source transaction. A Debezium topic is `<prefix>.<schema>.<table>`;
/// a topic under a transaction topic's prefix belongs to it, any other topic of three or more
/// segments names its prefix by all but its last two.
pub fn without_metadata<'a>(topics: impl IntoIterator<Item = &'a str> + Clone) -> Vec<String> {
    let prefixes: Vec<String> = topics
        .clone()
        .into_iter()
        .filter_map(prefix_of)
        .map(|p| format!("{p}."))
        .collect();
    let mut missing: Vec<String> = topics
        .into_iter()
        .filter(|t| prefix_of(t).is_none() && !t.starts_with("__"))
        .filter(|t| !prefixes.iter().any(|p| t.starts_with(p.as_str())))
        .filter_map(|t| {
            let segments: Vec<&str> = t.split('.').collect();
            (segments.len() >= 3).then(|| segments[..segments.len() - 2].join("."))
        })
        .collect();
    missing.sort();
    missing.dedup();
    missing
}

/// END records of partition `partition` of `topic` from offset `from`, in order. Counts are
/// keyed by data topic.
pub async fn ends_from(
    store: &dyn ObjectStore,
    root: &Path,
    topic: &str,
    partition: i32,
    from: i64,
) -> Result<Vec<TxEnd>, ReadError> {
    let prefix = prefix_of(topic).unwrap_or(topic);
    let mut ends = Vec::new();
    for rec in records_from(store, root, topic, partition, from, RECORDS_PER_READ).await? {
        for f in rec
            .files
            .iter()
            .filter(|f| f.table == TableDir::Transactions.name())
        {
            for batch in file_batches(store, &f.path, Some(&f.checksum)).await? {
                ends.extend(batch_ends(&batch, prefix, from, &f.path)?);
            }
        }
    }
    Ok(ends)
}

fn batch_ends(
    batch: &arrow_array::RecordBatch,
    prefix: &str,
    from: i64,
    path: &str,
) -> Result<Vec<TxEnd>, ReadError> {
    let shape = |what: &str| ReadError::Shape {
        path: path.to_owned(),
        problem: format!("transaction records: column `{what}` is missing or mistyped"),
    };
    let col = |n: &str| batch.column_by_name(n).ok_or_else(|| shape(n));
    let offset = col(columns::KAFKA_OFFSET)?
        .as_primitive_opt::<Int64Type>()
        .ok_or_else(|| shape(columns::KAFKA_OFFSET))?;
    let status = col(columns::TXN_STATUS)?
        .as_string_opt::<i32>()
        .ok_or_else(|| shape(columns::TXN_STATUS))?;
    let id = col(columns::TXN_ID)?
        .as_string_opt::<i32>()
        .ok_or_else(|| shape(columns::TXN_ID))?;
    let collections = col(columns::TXN_DATA_COLLECTIONS)?
        .as_string_opt::<i32>()
        .ok_or_else(|| shape(columns::TXN_DATA_COLLECTIONS))?;
    // Older bronze may lack the END's time: the events keep their own then.
    let ts = batch
        .column_by_name(columns::TS_MS)
        .and_then(|c| c.as_primitive_opt::<Int64Type>());
    let mut out = Vec::new();
    for row in 0..batch.num_rows() {
        if offset.value(row) < from || !status.is_valid(row) || status.value(row) != "END" {
            continue;
        }
        let counts = if collections.is_valid(row) {
            collection_counts(collections.value(row), prefix)
        } else {
            Vec::new()
        };
        out.push(TxEnd {
            id: id.value(row).to_owned(),
            offset: offset.value(row),
            counts,
            commit_ms: ts.filter(|t| t.is_valid(row)).map(|t| t.value(row)),
        });
    }
    Ok(out)
}

/// `[{"data_collection": "public.a", "event_count": 2}, …]` as `(topic, count)`.
fn collection_counts(json: &str, prefix: &str) -> Vec<(String, i64)> {
    let Ok(serde_json::Value::Array(items)) = serde_json::from_str(json) else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|i| {
            let name = i.get("data_collection")?.as_str()?;
            let count = i.get("event_count")?.as_i64()?;
            Some((topic_of(prefix, name), count))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connectors_without_their_transaction_topic_are_named() {
        let topics = [
            "bank.public.accounts",
            "bank.transaction",
            "shop.public.orders",
            "prod.crm.dbo.users",
            "__debezium-heartbeat.shop",
            "plain",
        ];
        assert_eq!(without_metadata(topics), ["prod.crm", "shop"]);
        assert!(without_metadata(["bank.public.accounts", "bank.transaction"]).is_empty());
    }

    #[test]
    fn collections_map_to_the_connectors_topics() {
        assert_eq!(prefix_of("bank.transaction"), Some("bank"));
        assert_eq!(prefix_of("bank.public.accounts"), None);
        assert_eq!(
            collection_counts(
                r#"[{"data_collection":"public.a","event_count":2},{"data_collection":"s.b","event_count":1}]"#,
                "bank"
            ),
            vec![("bank.public.a".into(), 2), ("bank.s.b".into(), 1)]
        );
        assert!(collection_counts("not json", "bank").is_empty());
    }
}
