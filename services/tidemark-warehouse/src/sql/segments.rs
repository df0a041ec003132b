//! `tidemark.source_segments`: the MySQL lineage segments ([`crate::lineage`]) every merger of
//! a target orders by, written in the transaction of the batch that made or grew them.

use super::conn::{Pool, Tx};
use super::names::Target;
use crate::cell::Cell;
use crate::lineage::{Lineages, Segment};

pub async fn bootstrap(tx: &mut Tx, target: &Target) -> Result<(), sqlx::Error> {
    tx.exec(
        &format!(
            "CREATE TABLE IF NOT EXISTS {} (source TEXT NOT NULL, start_ms BIGINT NOT NULL, \
             lineage TEXT NOT NULL, max_file BIGINT NOT NULL, max_pos BIGINT NOT NULL, \
             max_row BIGINT NOT NULL, max_ts_ms BIGINT NOT NULL, PRIMARY KEY (source, start_ms))",
            target.segments()
        ),
        &[],
    )
    .await?;
    Ok(())
}

pub async fn read(pool: &Pool, target: &Target) -> Result<Lineages, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let cols = ["start_ms", "max_file", "max_pos", "max_row", "max_ts_ms"]
        .map(|c| tx.text(c))
        .join(", ");
    let rows = tx
        .fetch(
            &format!("SELECT source, lineage, {cols} FROM {}", target.segments()),
            &[],
        )
        .await?;
    tx.rollback().await?;
    let num = |v: &Option<String>| {
        v.as_deref()
            .and_then(|s| s.parse::<i64>().ok())
            .unwrap_or(0)
    };
    Ok(Lineages::from_segments(rows.iter().filter_map(|r| {
        let seg = Segment {
            start_ms: num(&r[2]),
            lineage: r[1].clone()?,
            max: (num(&r[3]) as u64, num(&r[4]) as u64, num(&r[5]) as u64),
            max_ts_ms: num(&r[6]),
        };
        Some((r[0].clone()?, seg))
    })))
}

pub async fn write(
    tx: &mut Tx,
    target: &Target,
    segments: &[(String, Segment)],
) -> Result<(), sqlx::Error> {
    let p: Vec<String> = (1..=7).map(|i| tx.param(i)).collect();
    let sql = format!(
        "INSERT INTO {} (source, start_ms, lineage, max_file, max_pos, max_row, max_ts_ms) \
         VALUES ({}) ON CONFLICT (source, start_ms) DO UPDATE SET lineage = excluded.lineage, \
         max_file = excluded.max_file, max_pos = excluded.max_pos, max_row = excluded.max_row, \
         max_ts_ms = excluded.max_ts_ms",
        target.segments(),
        p.join(", ")
    );
    let int = |v: u64| Cell::Int(i64::try_from(v).unwrap_or(i64::MAX));
    for (source, s) in segments {
        tx.exec(
            &sql,
            &[
                Cell::Text(source.clone()),
                Cell::Int(s.start_ms),
                Cell::Text(s.lineage.clone()),
                int(s.max.0),
                int(s.max.1),
                int(s.max.2),
                Cell::Int(s.max_ts_ms),
            ],
        )
        .await?;
    }
    Ok(())
}
