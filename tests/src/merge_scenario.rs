//! A mixed bronze backlog (a dimension with late changes and deletes, facts referencing it) and
//! a comparable snapshot of what merging it builds: shared by the crash and replay tests.

use std::path::{Path, PathBuf};

use serde_json::json;
use tidemark_warehouse::sql::conn::Pool;
use tidemark_warehouse::sql::names::Target;

use crate::bronze_fixture::{BronzeFixture, change};
use crate::warehouse::{ms, rows, text};

pub const TABLES: &str = r#"
[[tables]]
source = "bank.public.customers"
kind = "dimension"
key = ["id"]
ignore_columns = ["note"]
[[tables]]
source = "bank.public.transactions"
kind = "fact"
references = { customer_id = "bank.public.customers" }
"#;

pub fn tidemark_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let bin = exe.parent().unwrap().parent().unwrap().join("tidemark");
    assert!(
        bin.exists(),
        "{} not built: run the workspace tests",
        bin.display()
    );
    bin
}

/// Runs `tidemark demo` into `data` as fast as it goes, metrics on a free port, plus `args`.
pub fn run_demo(data: &Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(tidemark_bin())
        .args(["demo", "--rate", "0", "--metrics-listen", "127.0.0.1:0"])
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .output()
        .unwrap()
}

/// A small deterministic generator (xorshift).
#[derive(Debug)]
pub struct Rng(pub u64);
impl Rng {
    pub fn next(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// ~12k changes of 200 customers and their transactions, in many small commits on 4 partitions
/// per topic, some customer changes delivered late on another partition.
pub async fn fill(bronze: &mut BronzeFixture, seed: u64) -> (i64, i64) {
    let mut rng = Rng(seed | 1);
    let mut live = std::collections::BTreeMap::new();
    let mut customers: Vec<Vec<_>> = vec![Vec::new(); 4];
    let mut facts: Vec<Vec<_>> = vec![Vec::new(); 4];
    let (mut n_c, mut n_f) = (0, 0);
    for i in 0..12_000u64 {
        let lsn = 10_000 + i * 8;
        let ts = 1_700_000_000_000 + i as i64 * 1000;
        let id = rng.next(200) as i64;
        if rng.next(3) == 0 {
            let p = rng.next(4) as usize;
            let row = json!({"id": i, "customer_id": id, "amount": rng.next(1000)});
            facts[p].push(change("c", &json!(i), None, Some(row), lsn, ts));
            n_f += 1;
            continue;
        }
        let row = json!({"id": id, "tier": format!("t{}", rng.next(3)), "note": format!("n{}", rng.next(5)), "bio": "b"});
        let rec = match (live.get(&id).cloned(), rng.next(10)) {
            (Some(old), 0) => {
                live.remove(&id);
                change("d", &json!(id), Some(old), None, lsn, ts)
            }
            (old, _) => {
                live.insert(id, row.clone());
                change(
                    if old.is_some() { "u" } else { "c" },
                    &json!(id),
                    old,
                    Some(row),
                    lsn,
                    ts,
                )
            }
        };
        // Keyed partitioning, with one change in 50 on a wrong partition (arrives late).
        let p = if rng.next(50) == 0 {
            rng.next(4)
        } else {
            id as u64 % 4
        } as usize;
        customers[p].push(rec);
        n_c += 1;
    }
    for (topic, parts) in [
        ("bank.public.customers", customers),
        ("bank.public.transactions", facts),
    ] {
        for (p, recs) in parts.iter().enumerate() {
            for chunk in recs.chunks(25) {
                bronze.land(topic, p as i32, chunk).await;
            }
        }
    }
    (n_c, n_f)
}

pub fn config_file(dir: &Path, bronze: &Path, warehouse: &str) -> PathBuf {
    let path = dir.join("tidemark.toml");
    std::fs::write(
        &path,
        format!(
            "[bronze]\nurl = \"file://{}\"\n[warehouse]\nurl = \"{warehouse}\"\n[merge]\ninterval_ms = 50\nmax_batch_rows = 100\n{TABLES}",
            bronze.display()
        ),
    )
    .unwrap();
    path
}

/// Every business row of silver and gold, comparable across targets.
pub async fn snapshot(pool: &Pool, t: &Target) -> Vec<Vec<Option<String>>> {
    let txt = |e: &str| text(pool, e);
    let mut out = rows(
        pool,
        &format!(
            "SELECT {}, tier, note, bio, {}, _op, _source_pos FROM {} AS s ORDER BY s.id",
            txt("id"),
            txt("CASE WHEN _deleted THEN 'del' ELSE 'live' END"),
            t.silver("customers")
        ),
    )
    .await;
    out.extend(
        rows(
            pool,
            &format!(
                "SELECT {}, {}, {}, {}, {}, {}, {}, tier, bio, row_hash FROM {} AS d ORDER BY d.id, d.version",
                txt("id"),
                txt("version"),
                ms(pool, "valid_from"),
                ms(pool, "valid_to"),
                txt("CASE WHEN is_current THEN 'cur' ELSE '' END"),
                txt("CASE WHEN is_deleted THEN 'del' ELSE '' END"),
                txt("CASE WHEN is_inferred THEN 'inf' ELSE '' END"),
                t.dim("customers")
            ),
        )
        .await,
    );
    out.extend(
        rows(
            pool,
            &format!(
                "SELECT {}, {}, {}, {} FROM {} AS f LEFT JOIN {} AS d ON d.sk = f.customer_id_sk ORDER BY f.id",
                txt("f.id"),
                txt("f.amount"),
                txt("d.id"),
                txt("d.version"),
                t.fact("transactions"),
                t.dim("customers")
            ),
        )
        .await,
    );
    out
}
