//! The oracle: random change histories (inserts, tracked and ignored updates, deletes,
//! re-inserts, several changes of a key per batch, TOAST placeholders, snapshot reads and
//! re-snapshots with null commit LSNs, facts that reference known and unknown members, upsert
//! facts with deletes, TOAST and NULL references; PostgreSQL positions or MySQL ones with a
//! failover or `RESET MASTER` at a random point) are delivered out of order across partitions and
//! batches, with redeliveries, through real bronze files and the merger; silver (of a dimension
//! and of a plain table fed the same changes) and gold must equal an independent in-memory model
//! of the source history. Some cases then change `ignore_columns`: the table stops, and a replay
//! under the new config must equal the model under it.

use std::collections::BTreeMap;

use proptest::prelude::*;
use proptest::test_runner::{Config as PtConfig, TestRunner};
use serde_json::{Value as Json, json};
use tidemark_core::config::Config;
use tidemark_e2e::bronze_fixture::{BronzeFixture, Record, change_with_source};
use tidemark_e2e::merge_scenario::TABLES;
use tidemark_e2e::warehouse::{Which, fresh, ms, rows};
use tidemark_warehouse::merger::{MergeOptions, Merger};
use tidemark_warehouse::sql::conn::Pool;
use tidemark_warehouse::sql::names::Target;

const CUSTOMERS: &str = "bank.public.customers";
const TRANSACTIONS: &str = "bank.public.transactions";
/// Not configured: silver only, fed the customers' changes.
const PROFILES: &str = "bank.public.profiles";
const BALANCES: &str = "bank.public.balances";
const PLACEHOLDER: &str = "__debezium_unavailable_value";

/// The shared scenario's tables, an upsert fact, and optionally `bio` ignored too.
fn config(max_batch_rows: usize, ignore_bio: bool) -> Config {
    let tables = TABLES.replace(
        "ignore_columns = [\"note\"]",
        if ignore_bio {
            "ignore_columns = [\"note\", \"bio\"]"
        } else {
            "ignore_columns = [\"note\"]"
        },
    );
    let toml = format!(
        "{tables}[[tables]]\nsource = \"{BALANCES}\"\nkind = \"fact\"\nkey = [\"id\"]\nupsert = true\n\
         references = {{ customer_id = \"{CUSTOMERS}\" }}\n"
    );
    let mut c = Config::from_toml_and_env(&toml, std::iter::empty()).expect("config");
    c.merge.max_batch_rows = max_batch_rows;
    c
}

/// Where the source's positions come from.
#[derive(Debug, Clone)]
enum Positions {
    /// PostgreSQL: `sequence` with a null commit LSN for snapshot reads and the first change
    /// streamed after them.
    Postgres,
    /// MySQL binlog coordinates that restart at step `at`: on another server (a failover) or
    /// on the same one (`RESET MASTER`), with or without GTIDs.
    MySql {
        at: usize,
        same_server: bool,
        gtid: bool,
    },
}

fn positions() -> impl Strategy<Value = Positions> {
    prop_oneof![
        2 => Just(Positions::Postgres),
        1 => (0usize..40, any::<bool>(), any::<bool>()).prop_map(|(at, same_server, gtid)| {
            Positions::MySql {
                at,
                same_server,
                gtid,
            }
        }),
    ]
}

/// The `source` block of step `i`.
fn source(pos: &Positions, i: usize, ts: i64, snapshot: bool, after_snapshot: bool) -> Json {
    let lsn = 1000 + 10 * i as u64;
    match pos {
        Positions::Postgres => {
            let commit = (!snapshot && !after_snapshot).then(|| (lsn - 5).to_string());
            json!({"connector": "postgresql", "ts_ms": ts, "lsn": lsn,
                   "sequence": json!([commit, lsn.to_string()]).to_string(),
                   "snapshot": if snapshot { "true" } else { "false" }})
        }
        Positions::MySql {
            at,
            same_server,
            gtid,
        } => {
            let after = i >= *at;
            let (server, uuid, file, p, seq) = match (after, same_server) {
                (false, _) => (
                    1,
                    "3e11fa47-71ca-11e1-9e33-c80aa9429562",
                    9,
                    1000 + 10 * i,
                    i + 1,
                ),
                (true, true) => (
                    1,
                    "3e11fa47-71ca-11e1-9e33-c80aa9429562",
                    1,
                    4 + 10 * (i - at),
                    i - at + 1,
                ),
                (true, false) => (
                    2,
                    "0b3ac4ea-71ca-11e1-9e33-c80aa9429562",
                    1,
                    4 + 10 * (i - at),
                    i - at + 1,
                ),
            };
            let gtid = (*gtid && !snapshot).then(|| format!("{uuid}:{seq}"));
            json!({"connector": "mysql", "name": "bank", "ts_ms": ts,
                   "server_id": if snapshot { 0 } else { server }, "gtid": gtid,
                   "file": format!("mysql-bin.{file:06}"), "pos": p, "row": 0,
                   "snapshot": if snapshot { "true" } else { "false" }})
        }
    }
}

/// A change record keyed by `id` with the step's source block.
fn change(op: &str, id: i64, before: Option<Json>, after: Option<Json>, src: Json) -> Record {
    change_with_source(op, &json!(id), before, after, src)
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
        0u8..7,
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
    /// A change of an upsert fact row: its state after (before, for a delete).
    Balance {
        id: i64,
        deleted: bool,
        state: Json,
        ts: i64,
        record: Record,
    },
}

/// Turns steps into a valid source history (inserts of absent keys, updates and deletes of
/// present ones, snapshot reads of either).
fn history(steps: &[Step], pos: &Positions) -> Vec<(i32, Event)> {
    let mut state: BTreeMap<i64, Json> = BTreeMap::new();
    let mut balances: BTreeMap<i64, Json> = BTreeMap::new();
    let mut out = Vec::new();
    let mut fact_id = 0;
    let mut after_snapshot = false;
    for (i, s) in steps.iter().enumerate() {
        let ts = 1_000_000 + 1000 * i as i64;
        // MySQL snapshot reads name no server: after the coordinates restart, a re-snapshot
        // merged before late changes of the old primary is ambiguous (see the lineage module),
        // so MySQL cases re-snapshot only before the restart.
        let snapshot = s.kind == 4 && !matches!(pos, Positions::MySql { at, .. } if i >= *at);
        let src = source(pos, i, ts, snapshot, after_snapshot);
        after_snapshot = snapshot;
        let new_row = |note: u8| json!({"id": s.id, "tier": format!("t{}", s.tier), "note": format!("n{note}"), "bio": format!("b{}", s.bio)});
        let present = state.get(&s.id).cloned();
        let customer = |op: &'static str, state: Json, record: Record| Event::Customer {
            id: s.id,
            op,
            state,
            ts,
            record,
        };
        let ev = match (s.kind, present) {
            (2, _) => {
                fact_id += 1;
                let customer = 1 + (s.id + i64::from(s.tier)) % 5; // 5 is never a customer
                let record = change(
                    "c",
                    fact_id,
                    None,
                    Some(json!({"id": fact_id, "customer_id": customer, "amount": i})),
                    src,
                );
                Event::Fact {
                    id: fact_id,
                    customer,
                    ts,
                    record,
                }
            }
            (5 | 6, _) => {
                let id = s.id % 3 + 1;
                match (s.kind, balances.get(&id).cloned()) {
                    (6, Some(old)) => {
                        balances.remove(&id);
                        let record = change("d", id, Some(old.clone()), None, src);
                        Event::Balance {
                            id,
                            deleted: true,
                            state: old,
                            ts,
                            record,
                        }
                    }
                    (_, old) => {
                        // A NULL reference sometimes; the memo as a TOAST placeholder when it
                        // did not change.
                        let customer = (s.bio == 0).then(|| 1 + (s.id + i64::from(s.tier)) % 5);
                        let memo = format!("m{}", s.note);
                        let row =
                            json!({"id": id, "customer_id": customer, "amount": i, "memo": memo});
                        let mut sent = row.clone();
                        if s.toast && old.as_ref().is_some_and(|o| o["memo"] == row["memo"]) {
                            sent["memo"] = json!(PLACEHOLDER);
                        }
                        balances.insert(id, row.clone());
                        let op = if old.is_some() { "u" } else { "c" };
                        let record = change(op, id, old, Some(sent), src);
                        Event::Balance {
                            id,
                            deleted: false,
                            state: row,
                            ts,
                            record,
                        }
                    }
                }
            }
            (4, old) if snapshot => {
                // A (re-)snapshot read: the row as it is, or as changes the connector missed
                // left it.
                let row = match old {
                    Some(o) if !s.toast => o,
                    _ => new_row(s.note),
                };
                state.insert(s.id, row.clone());
                let record = change("r", s.id, None, Some(row.clone()), src);
                customer("r", row, record)
            }
            (1, Some(old)) => {
                state.remove(&s.id);
                let record = change("d", s.id, Some(old.clone()), None, src);
                customer("d", old, record)
            }
            (3, Some(old)) => {
                // Only the ignored column changes.
                let mut row = old.clone();
                row["note"] = json!(format!("n{}", s.note));
                state.insert(s.id, row.clone());
                let record = change("u", s.id, Some(old), Some(row.clone()), src);
                customer("u", row, record)
            }
            (_, Some(old)) => {
                let row = new_row(s.note);
                let mut sent = row.clone();
                if s.toast && old["bio"] == row["bio"] {
                    sent["bio"] = json!(PLACEHOLDER);
                }
                state.insert(s.id, row.clone());
                let record = change("u", s.id, Some(old), Some(sent), src);
                customer("u", row, record)
            }
            (_, None) => {
                let row = new_row(s.note);
                state.insert(s.id, row.clone());
                let record = change("c", s.id, None, Some(row.clone()), src);
                customer("c", row, record)
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

/// The model's rows, in the queries' shapes.
struct Model {
    silver: Rows,
    dim: Rows,
    facts: Rows,
    balances: Rows,
}

/// The model's silver, dimension, fact and upsert-fact rows (`ignore_bio`: `bio` makes no
/// versions either).
fn model(events: &[(i32, Event)], ignore_bio: bool) -> Model {
    #[derive(Clone)]
    struct V {
        from: i64,
        to: Option<i64>,
        version: i64,
        deleted: bool,
        inferred: bool,
        tier: Option<String>,
        bio: Option<String>,
        tracked_bio: Option<String>,
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
                let tracked_bio = if ignore_bio { None } else { bio.clone() };
                let vs = versions.entry(*id).or_default();
                if let Some(p) = vs.last()
                    && p.tier == tier
                    && p.tracked_bio == tracked_bio
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
                    tracked_bio,
                });
            }
            Event::Fact { customer, ts, .. } => {
                let t = first_ref.entry(*customer).or_insert(*ts);
                *t = (*t).min(*ts);
            }
            Event::Balance { state, ts, .. } => {
                if let Some(customer) = state["customer_id"].as_i64() {
                    let t = first_ref.entry(customer).or_insert(*ts);
                    *t = (*t).min(*ts);
                }
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
                    tracked_bio: None,
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
                    if ignore_bio { None } else { v.bio.clone() },
                ]
            })
        })
        .collect();
    let valid_at = |customer: i64, ts: i64| {
        let vs = &versions[&customer];
        vs.iter()
            .find(|v| v.from <= ts && v.to.is_none_or(|t| ts < t))
            .or_else(|| vs.iter().min_by_key(|v| (v.from, v.version)))
            .expect("a referenced key has a row")
            .version
    };
    let facts = events
        .iter()
        .filter_map(|(_, e)| match e {
            Event::Fact {
                id, customer, ts, ..
            } => Some(vec![s(id), s(customer), s(valid_at(*customer, *ts))]),
            _ => None,
        })
        .collect();
    let mut last_balance: BTreeMap<i64, (bool, &Json, i64)> = BTreeMap::new();
    for (_, e) in events {
        if let Event::Balance {
            id,
            deleted,
            state,
            ts,
            ..
        } = e
        {
            last_balance.insert(*id, (*deleted, state, *ts));
        }
    }
    let balances = last_balance
        .iter()
        .map(|(id, (deleted, st, ts))| {
            let customer = st["customer_id"].as_i64();
            vec![
                s(id),
                s(&st["amount"]),
                st["memo"].as_str().map(str::to_owned),
                s(if *deleted { "del" } else { "live" }),
                customer.map(|c| c.to_string()),
                customer.map(|c| valid_at(c, *ts).to_string()),
            ]
        })
        .collect();
    Model {
        silver,
        dim,
        facts,
        balances,
    }
}

/// How the events arrive: per partition, some moved later and some delivered twice; landed in
/// chunks, interleaving partitions, with merge cycles in between.
#[derive(Debug, Clone)]
struct Delivery {
    delays: Vec<(usize, usize)>,
    duplicates: Vec<usize>,
    chunks: Vec<(u8, u8, bool)>,
    max_batch_rows: usize,
    positions: Positions,
    /// Afterwards, add `bio` to `ignore_columns` and replay.
    ignore_bio_later: bool,
}

fn delivery() -> impl Strategy<Value = Delivery> {
    (
        prop::collection::vec((0usize..64, 1usize..8), 0..6),
        prop::collection::vec(0usize..64, 0..4),
        prop::collection::vec((0u8..4, 1u8..5, any::<bool>()), 1..40),
        1usize..12,
        positions(),
        prop::bool::weighted(0.1),
    )
        .prop_map(
            |(delays, duplicates, chunks, max_batch_rows, positions, ignore_bio_later)| Delivery {
                delays,
                duplicates,
                chunks,
                max_batch_rows,
                positions,
                ignore_bio_later,
            },
        )
}

fn record(e: &Event) -> &Record {
    match e {
        Event::Customer { record, .. }
        | Event::Fact { record, .. }
        | Event::Balance { record, .. } => record,
    }
}

/// The topics an event lands in: customers' changes feed a plain table too.
fn topics(e: &Event) -> &'static [&'static str] {
    match e {
        Event::Customer { .. } => &[CUSTOMERS, PROFILES],
        Event::Fact { .. } => &[TRANSACTIONS],
        Event::Balance { .. } => &[BALANCES],
    }
}

async fn run_case(
    pool: &Pool,
    suffix: Option<String>,
    steps: Vec<Step>,
    d: Delivery,
) -> Result<(), String> {
    let mut events = history(&steps, &d.positions);
    let mysql = matches!(d.positions, Positions::MySql { .. });
    if mysql {
        // Debezium's own partitioning (one key, one partition, commit order in it): MySQL
        // coordinates that restart cannot be untangled from late deliveries across the restart
        // (see the lineage module).
        for (p, e) in &mut events {
            *p = match e {
                Event::Customer { id, .. } | Event::Fact { id, .. } | Event::Balance { id, .. } => {
                    (*id % 2) as i32
                }
            };
        }
    }
    // Arrival queues per (topic, partition).
    let mut queues: BTreeMap<(&'static str, i32), Vec<Record>> = BTreeMap::new();
    for (p, e) in &events {
        for t in topics(e) {
            queues.entry((t, *p)).or_default().push(record(e).clone());
        }
    }
    for q in queues.values_mut() {
        for (at, by) in d.delays.iter().filter(|_| !mysql) {
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
    let (store, root) = (bronze.store.clone(), bronze.root.clone());
    let merger = |config: Config| {
        let mut opts = MergeOptions::from_config(&config);
        opts.target_suffix = suffix.clone();
        let (pool, store, root) = (pool.clone(), store.clone(), root.clone());
        async move {
            Merger::with(pool, store, root, &config, opts)
                .await
                .map_err(|e| e.to_string())
        }
    };
    let mut m = merger(config(d.max_batch_rows, false)).await?;
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
    let t = m.target().clone();
    compare(pool, &t, &events, &model(&events, false), false).await?;
    if !d.ignore_bio_later
        || !events
            .iter()
            .any(|(_, e)| matches!(e, Event::Customer { .. }))
    {
        return Ok(());
    }
    // A config change that bends history stops the table; a replay under it is the model's.
    let changed = config(d.max_batch_rows, true);
    let mut m = merger(changed.clone()).await?;
    let st = m.catch_up().await.map_err(|e| e.to_string())?;
    if !st
        .stopped
        .get("customers")
        .is_some_and(|w| w.contains("replay"))
    {
        return Err(format!(
            "a changed ignore_columns did not stop the table: {st:?}"
        ));
    }
    let replayed =
        tidemark_warehouse::replay::with_dependents(&changed, &[CUSTOMERS.to_owned()].into());
    tidemark_warehouse::replay::drop_tables(pool, &t, &changed, &replayed)
        .await
        .map_err(|e| e.to_string())?;
    let mut m = merger(changed).await?;
    m.catch_up().await.map_err(|e| e.to_string())?;
    compare(pool, &t, &events, &model(&events, true), true)
        .await
        .map_err(|e| format!("after the replay under ignore_columns += bio: {e}"))
}

/// The warehouse's rows against the model's.
async fn compare(
    pool: &Pool,
    t: &Target,
    events: &[(i32, Event)],
    want: &Model,
    ignore_bio: bool,
) -> Result<(), String> {
    let txt = |e: &str| tidemark_e2e::warehouse::text(pool, e);
    let has = |f: fn(&Event) -> bool| events.iter().any(|(_, e)| f(e));
    let has_customers = has(|e| matches!(e, Event::Customer { .. }));
    let has_facts = has(|e| matches!(e, Event::Fact { .. }));
    let has_balances = has(|e| matches!(e, Event::Balance { .. }));
    // Upsert facts that never referenced a customer make no dimension.
    let has_refs =
        has(|e| matches!(e, Event::Balance { state, .. } if state["customer_id"].is_i64()));
    if has_customers {
        for table in ["customers", "profiles"] {
            let silver = rows(
                pool,
                &format!(
                    "SELECT {}, tier, note, bio, {}, _op FROM {} AS s ORDER BY s.id",
                    txt("id"),
                    txt("CASE WHEN _deleted THEN 'del' ELSE 'live' END"),
                    t.silver(table)
                ),
            )
            .await;
            if silver != want.silver {
                return Err(format!(
                    "silver of {table}\n got {silver:?}\nwant {:?}",
                    want.silver
                ));
            }
        }
    }
    if has_customers || has_facts || has_refs {
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
                match (has_customers, ignore_bio) {
                    (true, false) => "tier, bio",
                    (true, true) => "tier, NULL",
                    (false, _) => "NULL, NULL",
                },
                t.dim("customers")
            ),
        )
        .await;
        if dim != want.dim {
            return Err(format!("dim\n got {dim:?}\nwant {:?}", want.dim));
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
        if facts != want.facts {
            return Err(format!("facts\n got {facts:?}\nwant {:?}", want.facts));
        }
    }
    if has_balances {
        let (refs, join) = if has_customers || has_facts || has_refs {
            (
                format!("{}, {}", txt("d.id"), txt("d.version")),
                format!(
                    "LEFT JOIN {} d ON d.sk = f.customer_id_sk",
                    t.dim("customers")
                ),
            )
        } else {
            ("NULL, NULL".to_owned(), String::new())
        };
        let balances = rows(
            pool,
            &format!(
                "SELECT {}, {}, f.memo, {}, {refs} FROM {} f {join} ORDER BY f.id",
                txt("f.id"),
                txt("f.amount"),
                txt("CASE WHEN f._deleted THEN 'del' ELSE 'live' END"),
                t.fact("balances"),
            ),
        )
        .await;
        if balances != want.balances {
            return Err(format!(
                "upsert facts\n got {balances:?}\nwant {:?}",
                want.balances
            ));
        }
    }
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
    check(Which::Sqlite, cases(2000));
}

#[test]
fn silver_and_gold_equal_the_model_postgres() {
    check(Which::Postgres, cases(2000) / 5);
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
        positions: Positions::Postgres,
        ignore_bio_later: false,
    };
    let cases = [
        // An update with a TOAST placeholder before the (late) insert it follows.
        (
            vec![
                st(5, 1, 0, false, 0),
                st(0, 4, 0, false, 1),
                st(0, 4, 0, true, 0),
            ],
            Delivery {
                chunks: vec![(0, 1, true)],
                max_batch_rows: 1,
                ..one_batch.clone()
            },
        ),
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
                positions: Positions::Postgres,
                ignore_bio_later: false,
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
