//! The oracle: random change histories (inserts, tracked and ignored updates, deletes,
//! re-inserts, several changes of a key per batch, TOAST placeholders, facts that reference known
//! and unknown members) are delivered out of order across partitions and batches, with
//! redeliveries, through real bronze files and the merger; silver and gold must equal an
//! independent in-memory model of the source history.

use std::collections::BTreeMap;

use proptest::prelude::*;
use proptest::test_runner::{Config as PtConfig, TestRunner};
use serde_json::{Value as Json, json};
use tidemark_core::config::Config;
use tidemark_e2e::bronze_fixture::{BronzeFixture, Record, change};
use tidemark_e2e::merge_scenario::TABLES;
use tidemark_e2e::warehouse::{Which, fresh, ms, rows};
use tidemark_warehouse::merger::{MergeOptions, Merger};
use tidemark_warehouse::sql::conn::Pool;
use tidemark_warehouse::sql::names::Target;

const CUSTOMERS: &str = "bank.public.customers";
const TRANSACTIONS: &str = "bank.public.transactions";
const PLACEHOLDER: &str = "__debezium_unavailable_value";

fn config(max_batch_rows: usize) -> Config {
    let mut c = Config::from_toml_and_env(TABLES, std::iter::empty()).expect("config");
    c.merge.max_batch_rows = max_batch_rows;
    c
}

/// One generated source step.
#[derive(Debug, Clone)]
struct Step {
    kind: u8,
    id: i64,
    tier: u8,
    note: u8,
    bio: u8,
    toast: bool,
    partition: i32,
}

fn step() -> impl Strategy<Value = Step> {
    (
        0u8..4,
        1i64..=4,
        0u8..3,
        0u8..3,
        0u8..2,
        any::<bool>(),
        0i32..2,
    )
        .prop_map(|(kind, id, tier, note, bio, toast, partition)| Step {
            kind,
            id,
            tier,
            note,
            bio,
            toast,
            partition,
        })
}

/// A source event, in source order.
#[derive(Debug, Clone)]
enum Event {
    Customer {
        id: i64,
        op: &'static str,
        /// Full state after (or before, for a delete).
        state: Json,
        ts: i64,
        record: Record,
    },
    Fact {
        id: i64,
        customer: i64,
        ts: i64,
        record: Record,
    },
}

/// Turns steps into a valid source history (inserts of absent keys, updates and deletes of
/// present ones).
fn history(steps: &[Step]) -> Vec<(i32, Event)> {
    let mut state: BTreeMap<i64, Json> = BTreeMap::new();
    let mut out = Vec::new();
    let mut fact_id = 0;
    for (i, s) in steps.iter().enumerate() {
        let lsn = 1000 + 10 * i as u64;
        let ts = 1_000_000 + 1000 * i as i64;
        let new_row = |note: u8| json!({"id": s.id, "tier": format!("t{}", s.tier), "note": format!("n{note}"), "bio": format!("b{}", s.bio)});
        let present = state.get(&s.id).cloned();
        let ev = match (s.kind, present) {
            (2, _) => {
                fact_id += 1;
                let customer = 1 + (s.id + i64::from(s.tier)) % 5; // 5 is never a customer
                let record = change(
                    "c",
                    &json!(fact_id),
                    None,
                    Some(json!({"id": fact_id, "customer_id": customer, "amount": i})),
                    lsn,
                    ts,
                );
                Event::Fact {
                    id: fact_id,
                    customer,
                    ts,
                    record,
                }
            }
            (1, Some(old)) => {
                state.remove(&s.id);
                let record = change("d", &json!(s.id), Some(old.clone()), None, lsn, ts);
                Event::Customer {
                    id: s.id,
                    op: "d",
                    state: old,
                    ts,
                    record,
                }
            }
            (3, Some(old)) => {
                // Only the ignored column changes.
                let mut row = old.clone();
                row["note"] = json!(format!("n{}", s.note));
                state.insert(s.id, row.clone());
                let record = change("u", &json!(s.id), Some(old), Some(row.clone()), lsn, ts);
                Event::Customer {
                    id: s.id,
                    op: "u",
                    state: row,
                    ts,
                    record,
                }
            }
            (_, Some(old)) => {
                let row = new_row(s.note);
                let mut sent = row.clone();
                if s.toast && old["bio"] == row["bio"] {
                    sent["bio"] = json!(PLACEHOLDER);
                }
                state.insert(s.id, row.clone());
                let record = change("u", &json!(s.id), Some(old), Some(sent), lsn, ts);
                Event::Customer {
                    id: s.id,
                    op: "u",
                    state: row,
                    ts,
                    record,
                }
            }
            (_, None) => {
                let row = new_row(s.note);
                state.insert(s.id, row.clone());
                let record = change("c", &json!(s.id), None, Some(row.clone()), lsn, ts);
                Event::Customer {
                    id: s.id,
                    op: "c",
                    state: row,
                    ts,
                    record,
                }
            }
        };
        out.push((s.partition, ev));
    }
    out
}

type Rows = Vec<Vec<Option<String>>>;

fn s(v: impl ToString) -> Option<String> {
    Some(v.to_string())
}

/// The model's silver, dimension and fact rows, in the queries' shapes.
fn model(events: &[(i32, Event)]) -> (Rows, Rows, Rows) {
    #[derive(Clone)]
    struct V {
        from: i64,
        to: Option<i64>,
        version: i64,
        deleted: bool,
        inferred: bool,
        tier: Option<String>,
        bio: Option<String>,
    }
    let mut last: BTreeMap<i64, (&'static str, Json)> = BTreeMap::new();
    let mut versions: BTreeMap<i64, Vec<V>> = BTreeMap::new();
    let mut first_ref: BTreeMap<i64, i64> = BTreeMap::new();
    for (_, e) in events {
        match e {
            Event::Customer {
                id, op, state, ts, ..
            } => {
                last.insert(*id, (op, state.clone()));
                let deleted = *op == "d";
                let tier = state["tier"].as_str().map(str::to_owned);
                let bio = state["bio"].as_str().map(str::to_owned);
                let vs = versions.entry(*id).or_default();
                if let Some(p) = vs.last()
                    && p.tier == tier
                    && p.bio == bio
                    && p.deleted == deleted
                {
                    continue;
                }
                if let Some(p) = vs.last_mut() {
                    p.to = Some(*ts);
                }
                let version = vs.len() as i64 + 1;
                vs.push(V {
                    from: *ts,
                    to: None,
                    version,
                    deleted,
                    inferred: false,
                    tier,
                    bio,
                });
            }
            Event::Fact { customer, ts, .. } => {
                let t = first_ref.entry(*customer).or_insert(*ts);
                *t = (*t).min(*ts);
            }
        }
    }
    for (id, t) in &first_ref {
        let vs = versions.entry(*id).or_default();
        if vs.first().is_none_or(|f| *t < f.from) {
            let first = vs.first().cloned();
            vs.insert(
                0,
                V {
                    from: *t,
                    to: first.as_ref().map(|f| f.from),
                    version: 0,
                    deleted: false,
                    inferred: true,
                    tier: first.as_ref().and_then(|f| f.tier.clone()),
                    bio: first.as_ref().and_then(|f| f.bio.clone()),
                },
            );
        }
    }
    let silver = last
        .iter()
        .map(|(id, (op, st))| {
            vec![
                s(id),
                st["tier"].as_str().map(str::to_owned),
                st["note"].as_str().map(str::to_owned),
                st["bio"].as_str().map(str::to_owned),
                s(if *op == "d" { "del" } else { "live" }),
                s(op),
            ]
        })
        .collect();
    let flag = |b: bool, t: &str| s(if b { t } else { "" });
    let dim = versions
        .iter()
        .flat_map(|(id, vs)| {
            let n = vs.len();
            vs.iter().enumerate().map(move |(i, v)| {
                vec![
                    s(id),
                    s(v.version),
                    s(v.from),
                    v.to.map(|t| t.to_string()),
                    flag(i + 1 == n, "cur"),
                    flag(v.deleted, "del"),
                    flag(v.inferred, "inf"),
                    v.tier.clone(),
                    v.bio.clone(),
                ]
            })
        })
        .collect();
    let facts = events
        .iter()
        .filter_map(|(_, e)| match e {
            Event::Fact {
                id, customer, ts, ..
            } => {
                let vs = &versions[customer];
                let hit = vs
                    .iter()
                    .find(|v| v.from <= *ts && v.to.is_none_or(|t| *ts < t))
                    .or_else(|| vs.iter().min_by_key(|v| (v.from, v.version)))
                    .expect("a referenced key has a row");
                Some(vec![s(id), s(customer), s(hit.version)])
            }
            _ => None,
        })
        .collect();
    (silver, dim, facts)
}

/// How the events arrive: per partition, some moved later and some delivered twice; landed in
/// chunks, interleaving partitions, with merge cycles in between.
#[derive(Debug, Clone)]
struct Delivery {
    delays: Vec<(usize, usize)>,
    duplicates: Vec<usize>,
    chunks: Vec<(u8, u8, bool)>,
    max_batch_rows: usize,
}

fn delivery() -> impl Strategy<Value = Delivery> {
    (
        prop::collection::vec((0usize..64, 1usize..8), 0..6),
        prop::collection::vec(0usize..64, 0..4),
        prop::collection::vec((0u8..2, 1u8..5, any::<bool>()), 1..40),
        1usize..12,
    )
        .prop_map(|(delays, duplicates, chunks, max_batch_rows)| Delivery {
            delays,
            duplicates,
            chunks,
            max_batch_rows,
        })
}

fn record(e: &Event) -> &Record {
    match e {
        Event::Customer { record, .. } | Event::Fact { record, .. } => record,
    }
}

fn topic(e: &Event) -> &'static str {
    match e {
        Event::Customer { .. } => CUSTOMERS,
        Event::Fact { .. } => TRANSACTIONS,
    }
}

async fn run_case(
    pool: &Pool,
    suffix: Option<String>,
    steps: Vec<Step>,
    d: Delivery,
) -> Result<(), String> {
    let events = history(&steps);
    // Arrival queues per (topic, partition).
    let mut queues: BTreeMap<(&'static str, i32), Vec<Record>> = BTreeMap::new();
    for (p, e) in &events {
        queues
            .entry((topic(e), *p))
            .or_default()
            .push(record(e).clone());
    }
    for q in queues.values_mut() {
        for (at, by) in &d.delays {
            if q.is_empty() {
                break;
            }
            let i = at % q.len();
            let j = (i + by).min(q.len() - 1);
            let r = q.remove(i);
            q.insert(j, r);
        }
        for at in &d.duplicates {
            if q.is_empty() {
                break;
            }
            let r = q[at % q.len()].clone();
            q.push(r);
        }
    }
    let mut bronze = BronzeFixture::new();
    let config = config(d.max_batch_rows);
    let mut opts = MergeOptions::from_config(&config);
    opts.target_suffix = suffix;
    let mut m = Merger::with(
        pool.clone(),
        bronze.store.clone(),
        bronze.root.clone(),
        &config,
        opts,
    )
    .await
    .map_err(|e| e.to_string())?;
    let keys: Vec<(&'static str, i32)> = queues.keys().copied().collect();
    let mut chunk = d.chunks.iter().cycle();
    while queues.values().any(|q| !q.is_empty()) {
        let (pick, n, merge_now) = *chunk.next().expect("cycle");
        let non_empty: Vec<_> = keys.iter().filter(|k| !queues[*k].is_empty()).collect();
        let k = *non_empty[usize::from(pick) % non_empty.len()];
        let q = queues.get_mut(&k).expect("queue");
        let take: Vec<Record> = q.drain(..usize::from(n).min(q.len())).collect();
        bronze.land(k.0, k.1, &take).await;
        if merge_now {
            m.cycle().await.map_err(|e| e.to_string())?;
        }
    }
    let done = m.catch_up().await.map_err(|e| e.to_string())?;
    if !done.stopped.is_empty() || !m.stopped().is_empty() {
        return Err(format!("stopped: {:?}", m.stopped()));
    }

    let (want_silver, want_dim, want_facts) = model(&events);
    let t = m.target().clone();
    let txt = |e: &str| tidemark_e2e::warehouse::text(pool, e);
    let has_customers = events
        .iter()
        .any(|(_, e)| matches!(e, Event::Customer { .. }));
    let has_facts = events.iter().any(|(_, e)| matches!(e, Event::Fact { .. }));
    if has_customers {
        let silver = rows(
            pool,
            &format!(
                "SELECT {}, tier, note, bio, {}, _op FROM {} AS s ORDER BY s.id",
                txt("id"),
                txt("CASE WHEN _deleted THEN 'del' ELSE 'live' END"),
                t.silver("customers")
            ),
        )
        .await;
        if silver != want_silver {
            return Err(format!("silver\n got {silver:?}\nwant {want_silver:?}"));
        }
    }
    if has_customers || has_facts {
        let dim = rows(
            pool,
            &format!(
                "SELECT {}, {}, {}, {}, {}, {}, {}, {} FROM {} AS d ORDER BY d.id, d.version",
                txt("id"),
                txt("version"),
                ms(pool, "valid_from"),
                ms(pool, "valid_to"),
                txt("CASE WHEN is_current THEN 'cur' ELSE '' END"),
                txt("CASE WHEN is_deleted THEN 'del' ELSE '' END"),
                txt("CASE WHEN is_inferred THEN 'inf' ELSE '' END"),
                // A dimension only facts have referenced has no value columns yet.
                if has_customers {
                    "tier, bio"
                } else {
                    "NULL, NULL"
                },
                t.dim("customers")
            ),
        )
        .await;
        if dim != want_dim {
            return Err(format!("dim\n got {dim:?}\nwant {want_dim:?}"));
        }
    }
    if has_facts {
        let facts = rows(
            pool,
            &format!(
                "SELECT {}, {}, {} FROM {} f LEFT JOIN {} d ON d.sk = f.customer_id_sk ORDER BY f.id, f._kafka_offset",
                txt("f.id"),
                txt("d.id"),
                txt("d.version"),
                t.fact("transactions"),
                t.dim("customers")
            ),
        )
        .await;
        if facts != want_facts {
            return Err(format!("facts\n got {facts:?}\nwant {want_facts:?}"));
        }
    }
    let _: &Target = &t;
    Ok(())
}

fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(default)
}

fn check(which: Which, n_cases: u32) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let shared = match which {
        Which::Postgres => match rt.block_on(fresh(Which::Postgres)) {
            Some((pool, _)) => Some(pool),
            None => return,
        },
        Which::Sqlite => None,
    };
    let mut runner = TestRunner::new(PtConfig {
        cases: n_cases,
        source_file: Some(file!()),
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::WithSource("regressions"),
        )),
        ..PtConfig::default()
    });
    let counter = std::cell::Cell::new(0u32);
    let result = runner.run(
        &(prop::collection::vec(step(), 1..40), delivery()),
        |(steps, d)| {
            counter.set(counter.get() + 1);
            let outcome = rt.block_on(async {
                match &shared {
                    // One database, a fresh target (schemas) per case.
                    Some(pool) => {
                        run_case(pool, Some(format!("c{}", counter.get())), steps, d).await
                    }
                    None => {
                        let (pool, _) = fresh(Which::Sqlite).await.expect("sqlite");
                        let r = run_case(&pool, None, steps, d).await;
                        pool.close().await;
                        r
                    }
                }
            });
            prop_assert!(outcome.is_ok(), "{}", outcome.err().unwrap_or_default());
            Ok(())
        },
    );
    if let Err(e) = result {
        panic!("{e}");
    }
}

#[test]
fn silver_and_gold_equal_the_model_sqlite() {
    check(Which::Sqlite, cases(1000));
}

#[test]
fn silver_and_gold_equal_the_model_postgres() {
    check(Which::Postgres, cases(1000) / 5);
}

/// Shrunk failures found while building the merger, kept as fixed cases.
#[test]
fn regression_cases() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let st = |kind, id, tier, toast, partition| Step {
        kind,
        id,
        tier,
        note: 0,
        bio: 0,
        toast,
        partition,
    };
    let one_batch = Delivery {
        delays: vec![],
        duplicates: vec![],
        chunks: vec![(0, 4, true)],
        max_batch_rows: 10,
    };
    let cases = [
        // Only facts: the dimension exists with inferred members and no value columns.
        (vec![st(2, 1, 0, false, 0)], one_batch.clone()),
        // A late delete and a redelivered insert of the same key across partitions.
        (
            vec![
                st(0, 1, 0, false, 0),
                st(1, 1, 0, false, 1),
                st(0, 1, 1, true, 0),
                st(2, 1, 0, false, 1),
            ],
            Delivery {
                delays: vec![(0, 3)],
                duplicates: vec![0, 1],
                chunks: vec![(1, 1, true), (0, 2, false)],
                max_batch_rows: 1,
            },
        ),
    ];
    for (steps, d) in cases {
        rt.block_on(async {
            let (pool, _) = fresh(Which::Sqlite).await.expect("sqlite");
            if let Err(e) = run_case(&pool, None, steps.clone(), d.clone()).await {
                panic!("{steps:?} {d:?}: {e}");
            }
        });
    }
}
