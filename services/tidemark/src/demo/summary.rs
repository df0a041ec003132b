//! The demo's closing summary, read back from what the run left behind: bronze (the commit log
//! and the Parquet files' `op` column) and the warehouse tables, not from the generator's
//! counters, so it shows what a user would find.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use tidemark_core::config::{Config, TableKind};
use tidemark_core::metrics::{self, catalogue};
use tidemark_warehouse::merger::Merger;
use tidemark_warehouse::sql::conn::{Pool, TextRows};

use super::text_table::render;
use crate::produce::Produced;

/// One example query, its result and the columns it shows.
#[derive(Debug, Clone)]
pub(super) struct Example {
    pub title: String,
    pub sql: String,
    pub columns: Vec<&'static str>,
    pub rows: TextRows,
}

#[derive(Debug, Clone, Default)]
pub(super) struct DimStats {
    pub keys: u64,
    pub versions: u64,
    pub current: u64,
    pub deleted: u64,
    pub inferred: u64,
    pub max_versions: u64,
}

#[derive(Debug, Clone, Default)]
pub(super) struct Summary {
    pub produced: Produced,
    /// (bronze table, op) → rows.
    pub ops: BTreeMap<(String, String), u64>,
    /// topic → (files, bytes).
    pub files: BTreeMap<String, (u64, u64)>,
    pub dead_letters: u64,
    /// (layer, warehouse table, rows).
    pub layers: Vec<(String, String, u64)>,
    pub dims: BTreeMap<String, DimStats>,
    /// Warehouse table → seconds between the newest merged source commit and now.
    pub freshness: BTreeMap<String, f64>,
    /// Mean source-commit-to-warehouse latency, seconds, and the changes it covers.
    pub latency: Option<(f64, u64)>,
    pub examples: Vec<Example>,
}

async fn query(pool: &Pool, sql: &str) -> anyhow::Result<TextRows> {
    let mut tx = pool.begin().await?;
    let rows = tx
        .fetch_display(sql)
        .await
        .map_err(|e| anyhow::anyhow!("{sql}: {e}"))?;
    tx.rollback().await?;
    Ok(rows)
}

fn num(rows: &TextRows, row: usize, col: usize) -> u64 {
    rows.get(row)
        .and_then(|r| r.get(col))
        .and_then(|c| c.as_deref())
        .and_then(|c| c.parse::<f64>().ok())
        .map_or(0, |f| f as u64)
}

pub(super) async fn gather(
    config: &Config,
    merger: &Merger,
    produced: Produced,
) -> anyhow::Result<Summary> {
    let (store, root) = (merger.store(), merger.root());
    let mut s = Summary {
        produced,
        ops: tidemark_bronze::admin::op_counts(store, root).await?,
        ..Default::default()
    };
    for p in tidemark_bronze::admin::summarize(store, root).await? {
        let e = s.files.entry(p.topic).or_default();
        e.0 += p.files as u64;
        e.1 += p.bytes;
        s.dead_letters += p.dead_letters;
    }
    let pool = merger.pool();
    let target = merger.target();
    let now_ms = chrono::Utc::now().timestamp_millis();
    // Tables the merger made (a short run may have no changes of some table yet).
    let made: std::collections::BTreeSet<String> = query(
        pool,
        &format!("SELECT DISTINCT tbl FROM {}", target.registry()),
    )
    .await?
    .into_iter()
    .filter_map(|r| r.into_iter().next().flatten())
    .collect();
    for t in &config.tables {
        let name = t.warehouse_name();
        let silver = target.silver(name);
        if !made.contains(&silver) {
            continue;
        }
        let r = query(
            pool,
            &format!(
                "SELECT CAST(count(*) AS TEXT), CAST(max({}) AS TEXT) FROM {silver}",
                tidemark_warehouse::sql::conn::ms_of(target.backend, "_source_ts")
            ),
        )
        .await?;
        s.layers
            .push(("silver".into(), name.to_owned(), num(&r, 0, 0)));
        if let Some(newest) = r[0][1].as_deref().and_then(|v| v.parse::<f64>().ok()) {
            s.freshness
                .insert(name.to_owned(), (now_ms as f64 - newest) / 1000.0);
        }
        match t.kind {
            Some(TableKind::Dimension) if made.contains(&target.dim(name)) => {
                let dim = target.dim(name);
                s.layers.push(("gold".into(), format!("dim_{name}"), 0));
                let r = query(
                    pool,
                    &format!(
                        "SELECT CAST(count(*) AS TEXT), CAST(count(DISTINCT _key) AS TEXT), \
                         CAST(sum(CASE WHEN is_current THEN 1 ELSE 0 END) AS TEXT), \
                         CAST(sum(CASE WHEN is_current AND is_deleted THEN 1 ELSE 0 END) AS TEXT), \
                         CAST(sum(CASE WHEN is_inferred THEN 1 ELSE 0 END) AS TEXT), \
                         CAST((SELECT max(n) FROM (SELECT count(*) AS n FROM {dim} GROUP BY _key) AS per_key) AS TEXT) \
                         FROM {dim}"
                    ),
                )
                .await?;
                let d = DimStats {
                    versions: num(&r, 0, 0),
                    keys: num(&r, 0, 1),
                    current: num(&r, 0, 2),
                    deleted: num(&r, 0, 3),
                    inferred: num(&r, 0, 4),
                    max_versions: num(&r, 0, 5),
                };
                if let Some(l) = s.layers.last_mut() {
                    l.2 = d.versions;
                }
                s.dims.insert(name.to_owned(), d);
            }
            Some(TableKind::Fact) if made.contains(&target.fact(name)) => {
                let r = query(
                    pool,
                    &format!("SELECT CAST(count(*) AS TEXT) FROM {}", target.fact(name)),
                )
                .await?;
                s.layers
                    .push(("gold".into(), format!("fact_{name}"), num(&r, 0, 0)));
            }
            _ => {}
        }
    }
    let (count, sum) = metrics::histogram_totals(catalogue::END_TO_END);
    if count > 0 {
        s.latency = Some((sum / count as f64, count));
    }
    let target = merger.target();
    if [
        target.dim("customers"),
        target.dim("accounts"),
        target.fact("transactions"),
    ]
    .iter()
    .all(|t| made.contains(t))
    {
        s.examples = examples(pool, merger).await?;
    }
    Ok(s)
}

/// A customer's history, and transactions joined to the account version valid at their time.
async fn examples(pool: &Pool, merger: &Merger) -> anyhow::Result<Vec<Example>> {
    let target = merger.target();
    let (customers, accounts, txns) = (
        target.dim("customers"),
        target.dim("accounts"),
        target.fact("transactions"),
    );
    let history = format!(
        "SELECT id, version, city, tier, status, valid_from, valid_to, is_current\n  \
         FROM {customers}\n  \
         WHERE id = (SELECT id FROM {customers} GROUP BY id ORDER BY count(*) DESC, id LIMIT 1)\n  \
         ORDER BY version"
    );
    // The account whose transactions span the most versions; up to three per version.
    let as_of = format!(
        "WITH joined AS (\n    \
         SELECT t.id, t.account_id, t.amount, t.created_at, a.version, a.status, a.valid_from,\n      \
         row_number() OVER (PARTITION BY a.version ORDER BY t.id) AS nth\n    \
         FROM {txns} AS t\n    \
         JOIN {accounts} AS a ON a.sk = t.account_id_sk\n    \
         WHERE t.account_id = (\n      \
         SELECT f.account_id FROM {txns} AS f JOIN {accounts} AS d ON d.sk = f.account_id_sk\n      \
         GROUP BY f.account_id ORDER BY count(DISTINCT d.version) DESC, f.account_id LIMIT 1))\n\
         SELECT id, account_id, amount, created_at, version, status, valid_from\n  \
         FROM joined WHERE nth <= 3 ORDER BY id"
    );
    Ok(vec![
        Example {
            title: "A customer's history (SCD2: one row per version)".into(),
            rows: query(pool, &history).await?,
            sql: history,
            columns: vec![
                "id",
                "version",
                "city",
                "tier",
                "status",
                "valid_from",
                "valid_to",
                "is_current",
            ],
        },
        Example {
            title: "Transactions with the account version valid when they happened".into(),
            rows: query(pool, &as_of).await?,
            sql: as_of,
            columns: vec![
                "id",
                "account_id",
                "amount",
                "created_at",
                "version",
                "status",
                "valid_from",
            ],
        },
    ])
}

/// Tables in the summary show these ops, in this order.
const OPS: [&str; 6] = ["r", "c", "u", "d", "t", "tombstone"];

impl Summary {
    pub(super) fn render(&self, bronze_url: &str, warehouse_url: &str) -> String {
        let mut out = String::new();
        let p = &self.produced;
        let _ = writeln!(
            out,
            "\nKafka: {} records produced in {:.1} s ({:.0} records/s, {:.1} MB)",
            p.records,
            p.elapsed.as_secs_f64(),
            p.records_per_sec(),
            p.bytes as f64 / 1e6
        );
        let _ = writeln!(out, "\nBronze: {bronze_url}");
        let mut rows = Vec::new();
        for (topic, (files, bytes)) in &self.files {
            let mut r = vec![topic.clone()];
            for op in OPS {
                r.push(
                    self.ops
                        .get(&(topic.clone(), op.to_owned()))
                        .copied()
                        .unwrap_or(0)
                        .to_string(),
                );
            }
            r.push(files.to_string());
            r.push(bytes.to_string());
            rows.push(r);
        }
        out.push_str(&render(
            &[
                "table",
                "r",
                "c",
                "u",
                "d",
                "t",
                "tombstone",
                "files",
                "bytes",
            ],
            &rows,
            2,
        ));
        let _ = writeln!(out, "  dead letters: {}", self.dead_letters);

        let _ = writeln!(out, "\nWarehouse: {warehouse_url}");
        let rows: Vec<Vec<String>> = self
            .layers
            .iter()
            .map(|(layer, table, n)| vec![layer.clone(), table.clone(), n.to_string()])
            .collect();
        out.push_str(&render(&["layer", "table", "rows"], &rows, 2));

        let _ = writeln!(out, "\nDimensions (SCD2 versions)");
        let rows: Vec<Vec<String>> = self
            .dims
            .iter()
            .map(|(t, d)| {
                vec![
                    format!("dim_{t}"),
                    d.keys.to_string(),
                    d.versions.to_string(),
                    format!("{:.2}", d.versions as f64 / d.keys.max(1) as f64),
                    d.max_versions.to_string(),
                    d.current.to_string(),
                    d.deleted.to_string(),
                    d.inferred.to_string(),
                ]
            })
            .collect();
        out.push_str(&render(
            &[
                "dimension",
                "keys",
                "versions",
                "per_key",
                "max",
                "current",
                "deleted",
                "inferred",
            ],
            &rows,
            2,
        ));

        let _ = writeln!(
            out,
            "\nFreshness (newest merged source commit, seconds ago)"
        );
        let rows: Vec<Vec<String>> = self
            .freshness
            .iter()
            .map(|(t, s)| vec![t.clone(), format!("{s:.1}")])
            .collect();
        out.push_str(&render(&["table", "seconds"], &rows, 2));
        if let Some((mean, n)) = self.latency {
            let _ = writeln!(
                out,
                "  end-to-end latency (source commit → warehouse): mean {mean:.2} s over {n} changes"
            );
        }

        for e in &self.examples {
            let _ = writeln!(out, "\n{}\n  {}", e.title, e.sql.replace('\n', "\n  "));
            let rows: Vec<Vec<String>> = e
                .rows
                .iter()
                .map(|r| {
                    r.iter()
                        .map(|c| c.clone().unwrap_or_else(|| "NULL".into()))
                        .collect()
                })
                .collect();
            out.push_str(&render(&e.columns, &rows, 4));
        }
        out
    }
}
