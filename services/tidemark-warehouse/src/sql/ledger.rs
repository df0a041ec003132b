//! The progress ledger `(topic, partition) → next_offset`, written in the transaction that
//! applies the rows: a conditional update, so two mergers on one target cannot both advance it.

use std::collections::BTreeMap;
use tidemark_core::event::TopicPartition;

use super::conn::{Pool, Tx};
use super::names::Target;
use crate::cell::Cell;

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error(
        "ledger of {topic}/{partition} moved under us (expected {expected:?}): another merger \
         writes to this warehouse target"
    )]
    Conflict {
        topic: String,
        partition: i32,
        expected: Option<i64>,
    },
    #[error("warehouse: {0}")]
    Sql(#[from] sqlx::Error),
}

/// Every partition's next offset.
pub async fn read(
    pool: &Pool,
    target: &Target,
) -> Result<BTreeMap<TopicPartition, i64>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let sql = format!(
        "SELECT topic, {}, {} FROM {}",
        tx.text("part"),
        tx.text("next_offset"),
        target.ledger()
    );
    let rows = tx.fetch(&sql, &[]).await?;
    tx.rollback().await?;
    Ok(rows
        .into_iter()
        .filter_map(|r| {
            Some((
                TopicPartition::new(r[0].clone()?, r[1].as_deref()?.parse().ok()?),
                r[2].as_deref()?.parse().ok()?,
            ))
        })
        .collect())
}

/// Moves a partition from `expected` (`None`: no row yet) to `next`.
pub async fn advance(
    tx: &mut Tx,
    target: &Target,
    topic: &str,
    partition: i32,
    expected: Option<i64>,
    next: i64,
) -> Result<(), LedgerError> {
    let now = Cell::Text(chrono::Utc::now().to_rfc3339());
    let (p1, p2, p3, p4, p5) = (
        tx.param(1),
        tx.param(2),
        tx.param(3),
        tx.param(4),
        tx.param(5),
    );
    let n = match expected {
        Some(e) => {
            tx.exec(
                &format!(
                    "UPDATE {} SET next_offset = {p1}, updated_at = {p2} \
                     WHERE topic = {p3} AND part = {p4} AND next_offset = {p5}",
                    target.ledger()
                ),
                &[
                    Cell::Int(next),
                    now,
                    Cell::Text(topic.into()),
                    Cell::Int(partition.into()),
                    Cell::Int(e),
                ],
            )
            .await?
        }
        None => {
            tx.exec(
                &format!(
                    "INSERT INTO {} (topic, part, next_offset, updated_at) \
                     VALUES ({p1}, {p2}, {p3}, {p4}) ON CONFLICT (topic, part) DO NOTHING",
                    target.ledger()
                ),
                &[
                    Cell::Text(topic.into()),
                    Cell::Int(partition.into()),
                    Cell::Int(next),
                    now,
                ],
            )
            .await?
        }
    };
    if n != 1 {
        return Err(LedgerError::Conflict {
            topic: topic.into(),
            partition,
            expected,
        });
    }
    Ok(())
}
