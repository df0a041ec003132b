//! The cases real connectors produce that bend history if the merger gets them wrong (issue
//! "merger correctness"): re-snapshots and the first transaction after a snapshot, other
//! connectors' positions, upsert facts with deletes and NULL references. Each runs on SQLite and
//! PostgreSQL.

use serde_json::{Value as Json, json};
use tidemark_core::config::Config;
use tidemark_e2e::bronze_fixture::{BronzeFixture, change, change_with_source, pg_source};
use tidemark_e2e::on_both;
use tidemark_e2e::warehouse::{Which, fresh, rows, table, text, v, versions};
use tidemark_warehouse::merger::Merger;
use tidemark_warehouse::sql::conn::Pool;

const CUSTOMERS: &str = "bank.public.customers";
const BALANCES: &str = "bank.public.balances";
const ORDERS: &str = "shop.dbo.orders";
const SALES: &str = "shop.dbo.sales";

const TABLES: &str = r#"
[[tables]]
source = "bank.public.customers"
kind = "dimension"
key = ["id"]
[[tables]]
source = "bank.public.accounts"
kind = "dimension"
key = ["id"]
[[tables]]
source = "bank.public.balances"
kind = "fact"
key = ["id"]
upsert = true
references = { account_id = "bank.public.accounts" }
[[tables]]
source = "shop.dbo.sales"
kind = "fact"
"#;

async fn merger(pool: &Pool, bronze: &BronzeFixture) -> Merger {
    bronze.merger(pool, &config_of(TABLES)).await
}

fn customer(id: i64, tier: &str) -> Json {
    json!({"id": id, "tier": tier})
}

/// Streamed history, then a re-snapshot (`sequence` = `[null, lsn]`: one read equal to the
/// current row, one changed), then the first transaction after it (also a null commit LSN),
/// then an ordinary one.
async fn resnapshot_and_first_transaction_take_their_place(pool: Pool) {
    let mut bronze = BronzeFixture::new();
    let up = |op: &str, id: i64, tier: &str, src: Json| {
        change_with_source(op, &json!(id), None, Some(customer(id, tier)), src)
    };
    bronze
        .land(
            CUSTOMERS,
            0,
            &[
                up("r", 1, "silver", pg_source(None, 1000, 1000, true)),
                up("r", 2, "silver", pg_source(None, 1000, 1000, true)),
                up("u", 1, "gold", pg_source(None, 1100, 1100, false)),
                up("u", 2, "gold", pg_source(Some(1150), 1200, 1200, false)),
            ],
        )
        .await;
    let mut m = merger(&pool, &bronze).await;
    m.catch_up().await.expect("merge");
    // `snapshot.mode=always` after a restart: reads at the new snapshot's LSN.
    bronze
        .land(
            CUSTOMERS,
            0,
            &[
                up("r", 1, "gold", pg_source(None, 5000, 5000, true)),
                up("r", 2, "platinum", pg_source(None, 5000, 5000, true)),
                up("u", 1, "bronze", pg_source(None, 5100, 5100, false)),
                up("u", 2, "iron", pg_source(Some(5150), 5200, 5200, false)),
            ],
        )
        .await;
    m.catch_up().await.expect("merge");
    assert_eq!(
        versions(&pool, "customers", 1, "tier").await,
        vec![
            v(&["1", "1000", "1100", "", "", "", "silver"]),
            v(&["2", "1100", "5100", "", "", "", "gold"]),
            v(&["3", "5100", "NULL", "cur", "", "", "bronze"]),
        ],
        "a re-snapshot read equal to the current row makes no version"
    );
    assert_eq!(
        versions(&pool, "customers", 2, "tier").await,
        vec![
            v(&["1", "1000", "1200", "", "", "", "silver"]),
            v(&["2", "1200", "5000", "", "", "", "gold"]),
            v(&["3", "5000", "5200", "", "", "", "platinum"]),
            v(&["4", "5200", "NULL", "cur", "", "", "iron"]),
        ]
    );
    let silver = rows(
        &pool,
        &format!(
            "SELECT {}, tier FROM {} ORDER BY id",
            text(&pool, "id"),
            table(&pool, "silver", "customers")
        ),
    )
    .await;
    assert_eq!(silver, vec![v(&["1", "bronze"]), v(&["2", "iron"])]);

    // The same on a table that is not configured (silver only).
    bronze
        .land(
            "bank.public.branches",
            0,
            &[
                up("u", 1, "old", pg_source(Some(900), 950, 950, false)),
                up("r", 1, "snap", pg_source(None, 5000, 5000, true)),
            ],
        )
        .await;
    bronze
        .land(
            "bank.public.branches",
            0,
            &[up("r", 1, "resnap", pg_source(None, 6000, 6000, true))],
        )
        .await;
    m.catch_up().await.expect("merge");
    let silver = rows(
        &pool,
        &format!("SELECT tier FROM {}", table(&pool, "silver", "branches")),
    )
    .await;
    assert_eq!(silver, vec![v(&["resnap"])]);
}
on_both!(
    resnapshot_and_first_transaction_take_their_place,
    resnapshot_sqlite,
    resnapshot_postgres
);

fn sqlserver(commit: &str, change: &str, serial: i64, ts_ms: i64) -> Json {
    json!({"connector": "sqlserver", "ts_ms": ts_ms, "db": "shop", "schema": "dbo",
           "change_lsn": change, "commit_lsn": commit, "event_serial_no": serial})
}

fn oracle(scn: &str, commit_scn: &str, ts_ms: i64) -> Json {
    json!({"connector": "oracle", "ts_ms": ts_ms, "db": "SHOP", "schema": "DBO",
           "scn": scn, "commit_scn": commit_scn})
}

/// SQL Server and Oracle positions order silver, and a redelivery (same position, another
/// offset) is not a second fact.
async fn sql_server_and_oracle_positions_order_changes(pool: Pool) {
    let mut bronze = BronzeFixture::new();
    let row = |v: &str| Some(json!({"id": 1, "status": v}));
    // Kafka order differs from commit order: the later commit arrives first.
    bronze
        .land(
            ORDERS,
            0,
            &[
                change_with_source(
                    "u",
                    &json!(1),
                    None,
                    row("shipped"),
                    sqlserver("0000002a:00000100:0003", "0000002a:000000f0:0002", 1, 900),
                ),
                change_with_source(
                    "u",
                    &json!(1),
                    None,
                    row("paid"),
                    sqlserver("00000029:00000100:0003", "00000029:000000f0:0002", 1, 1000),
                ),
            ],
        )
        .await;
    bronze
        .land(
            "shop.DBO.orders_ora",
            0,
            &[
                change_with_source("u", &json!(1), None, row("b"), oracle("900", "1000", 10)),
                change_with_source("u", &json!(1), None, row("a"), oracle("950", "999", 20)),
            ],
        )
        .await;
    let sale = |src: Json| {
        change_with_source(
            "c",
            &json!(5),
            None,
            Some(json!({"id": 5, "amount": 3})),
            src,
        )
    };
    bronze
        .land(
            SALES,
            0,
            &[
                sale(sqlserver(
                    "0000002a:00000100:0003",
                    "0000002a:000000f0:0002",
                    1,
                    900,
                )),
                // Debezium is at least once: the same change again, at a later offset.
                sale(sqlserver(
                    "0000002a:00000100:0003",
                    "0000002a:000000f0:0002",
                    1,
                    900,
                )),
            ],
        )
        .await;
    let mut m = merger(&pool, &bronze).await;
    m.catch_up().await.expect("merge");
    let status = |t: &'static str| {
        let pool = pool.clone();
        async move {
            rows(
                &pool,
                &format!("SELECT status FROM {}", table(&pool, "silver", t)),
            )
            .await
        }
    };
    assert_eq!(status("orders").await, vec![v(&["shipped"])]);
    assert_eq!(status("orders_ora").await, vec![v(&["b"])]);
    let facts = rows(
        &pool,
        &format!(
            "SELECT {} FROM {}",
            text(&pool, "count(*)"),
            table(&pool, "fact", "sales")
        ),
    )
    .await;
    assert_eq!(facts, vec![v(&["1"])], "a redelivered fact is one row");
}
on_both!(
    sql_server_and_oracle_positions_order_changes,
    other_connectors_sqlite,
    other_connectors_postgres
);

/// `(id, amount, referenced account id or NULL)` of the upsert fact table.
async fn balances(pool: &Pool) -> Vec<Vec<Option<String>>> {
    rows(
        pool,
        &format!(
            "SELECT {}, {}, {} FROM {} f LEFT JOIN {} d ON d.sk = f.account_id_sk ORDER BY f.id",
            text(pool, "f.id"),
            text(pool, "f.amount"),
            text(pool, "d.id"),
            table(pool, "fact", "balances"),
            table(pool, "dim", "accounts"),
        ),
    )
    .await
}

/// Upsert facts: a batch mixing a delete and a TOAST row with ordinary rows resolves every
/// row's surrogate key; a reference set to NULL clears it.
async fn upsert_facts_resolve_every_row(pool: Pool) {
    let mut bronze = BronzeFixture::new();
    let bal =
        |id: i64, acct: Json, amount: Json| json!({"id": id, "account_id": acct, "amount": amount});
    bronze
        .land(
            BALANCES,
            0,
            &[
                change(
                    "c",
                    &json!(1),
                    None,
                    Some(bal(1, json!(7), json!(10))),
                    100,
                    1000,
                ),
                change(
                    "c",
                    &json!(2),
                    None,
                    Some(bal(2, json!(8), json!(20))),
                    110,
                    1100,
                ),
                change(
                    "c",
                    &json!(3),
                    None,
                    Some(bal(3, json!(9), json!(30))),
                    120,
                    1200,
                ),
            ],
        )
        .await;
    let mut m = merger(&pool, &bronze).await;
    m.catch_up().await.expect("merge");
    // One batch, three kinds of rows: new ones, a delete alone, a TOAST placeholder alone.
    bronze
        .land(
            BALANCES,
            0,
            &[
                change(
                    "c",
                    &json!(4),
                    None,
                    Some(bal(4, json!(9), json!(40))),
                    125,
                    1250,
                ),
                change(
                    "d",
                    &json!(3),
                    Some(bal(3, json!(9), json!(30))),
                    None,
                    130,
                    1300,
                ),
                change(
                    "u",
                    &json!(2),
                    None,
                    Some(bal(2, json!(7), json!("__debezium_unavailable_value"))),
                    140,
                    1400,
                ),
                change(
                    "c",
                    &json!(5),
                    None,
                    Some(bal(5, json!(8), json!(50))),
                    145,
                    1450,
                ),
            ],
        )
        .await;
    m.catch_up().await.expect("merge");
    assert_eq!(
        balances(&pool).await,
        vec![
            v(&["1", "10", "7"]),
            v(&["2", "20", "7"]),
            v(&["3", "30", "9"]),
            v(&["4", "40", "9"]),
            v(&["5", "50", "8"]),
        ]
    );
    bronze
        .land(
            BALANCES,
            0,
            &[change(
                "u",
                &json!(1),
                None,
                Some(bal(1, Json::Null, json!(11))),
                150,
                1500,
            )],
        )
        .await;
    m.catch_up().await.expect("merge");
    assert_eq!(
        balances(&pool).await[0],
        v(&["1", "11", "NULL"]),
        "a NULL reference has no surrogate key"
    );
}
on_both!(
    upsert_facts_resolve_every_row,
    upsert_facts_sqlite,
    upsert_facts_postgres
);

fn config_of(toml: &str) -> Config {
    Config::from_toml_and_env(toml, std::iter::empty()).expect("test config")
}

async fn merger_with(pool: &Pool, bronze: &BronzeFixture, config: &Config) -> Merger {
    bronze.merger(pool, config).await
}

/// Another empty warehouse of the same backend.
async fn another(pool: &Pool) -> Pool {
    let which = match pool {
        Pool::Postgres(_) => Which::Postgres,
        Pool::Sqlite(_) => Which::Sqlite,
    };
    fresh(which).await.expect("a second warehouse").0
}

/// Customers (a dimension), accounts (a dimension), balances (an upsert fact on accounts) and
/// branches (configured nowhere), with a late account change.
async fn bank_bronze() -> BronzeFixture {
    let mut bronze = BronzeFixture::new();
    let acct = |bal: i64| json!({"id": 7, "balance": bal});
    bronze
        .land(
            CUSTOMERS,
            0,
            &[
                change("c", &json!(1), None, Some(customer(1, "silver")), 100, 1000),
                change("u", &json!(1), None, Some(customer(1, "gold")), 300, 3000),
            ],
        )
        .await;
    bronze
        .land(
            "bank.public.accounts",
            0,
            &[
                change("c", &json!(7), None, Some(acct(10)), 110, 1100),
                change("u", &json!(7), None, Some(acct(20)), 310, 3100),
            ],
        )
        .await;
    bronze
        .land(
            "bank.public.accounts",
            1,
            &[change("u", &json!(7), None, Some(acct(15)), 210, 2100)],
        )
        .await;
    bronze
        .land(
            BALANCES,
            0,
            &[change(
                "c",
                &json!(1),
                None,
                Some(json!({"id": 1, "account_id": 7, "amount": 5})),
                250,
                2500,
            )],
        )
        .await;
    bronze
        .land(
            "bank.public.branches",
            0,
            &[change(
                "c",
                &json!(3),
                None,
                Some(customer(3, "x")),
                120,
                1200,
            )],
        )
        .await;
    bronze
}

/// What a bank warehouse holds, comparable across warehouses.
async fn bank_state(pool: &Pool) -> Vec<Vec<Option<String>>> {
    let mut out = versions(pool, "customers", 1, "tier").await;
    out.extend(versions(pool, "accounts", 7, "balance").await);
    out.extend(balances(pool).await);
    for (t, col) in [
        ("customers", "tier"),
        ("accounts", "balance"),
        ("branches", "tier"),
    ] {
        out.extend(
            rows(
                pool,
                &format!(
                    "SELECT {}, {}, _source_pos FROM {} ORDER BY id",
                    text(pool, "id"),
                    text(pool, col),
                    table(pool, "silver", t)
                ),
            )
            .await,
        );
    }
    out
}

const SPLIT_A: &str = r#"
[[tables]]
source = "bank.public.customers"
kind = "dimension"
key = ["id"]
"#;

const SPLIT_B: &str = r#"
[merge]
unconfigured_topics = false
[[tables]]
source = "bank.public.accounts"
kind = "dimension"
key = ["id"]
[[tables]]
source = "bank.public.balances"
kind = "fact"
key = ["id"]
upsert = true
references = { account_id = "bank.public.accounts" }
"#;

/// Two mergers with disjoint tables on one warehouse build what one merger builds, whichever
/// starts first; a third that configures a table differently stops it and says why.
async fn split_mergers_share_a_warehouse(pool: Pool) {
    let mut bronze = bank_bronze().await;
    let one = another(&pool).await;
    let union = format!(
        "{SPLIT_A}{}",
        SPLIT_B.replace("unconfigured_topics = false", "")
    );
    merger_with(&one, &bronze, &config_of(&union))
        .await
        .catch_up()
        .await
        .expect("one merger");
    let expected = bank_state(&one).await;
    assert_eq!(expected.len(), 2 + 3 + 1 + 3, "{expected:?}");

    // A starts first and merges every topic it sees, B's too (as unconfigured tables).
    let mut a = merger_with(&pool, &bronze, &config_of(SPLIT_A)).await;
    a.catch_up().await.expect("merger A");
    let mut b = merger_with(&pool, &bronze, &config_of(SPLIT_B)).await;
    let st = b.catch_up().await.expect("merger B");
    assert!(st.stopped.is_empty(), "{st:?}");
    let st = a.catch_up().await.expect("merger A again");
    assert!(st.tables.is_empty() && st.stopped.is_empty(), "{st:?}");
    assert_eq!(bank_state(&pool).await, expected);

    let mut c = merger_with(
        &pool,
        &bronze,
        &config_of(
            "[[tables]]\nsource = \"bank.public.accounts\"\nkind = \"dimension\"\nkey = [\"id\"]\nignore_columns = [\"balance\"]",
        ),
    )
    .await;
    bronze
        .land(
            "bank.public.accounts",
            0,
            &[change(
                "u",
                &json!(7),
                None,
                Some(json!({"id": 7, "balance": 30})),
                400,
                4000,
            )],
        )
        .await;
    let st = c.catch_up().await.expect("merger C");
    let why = &st.stopped["accounts"];
    assert!(
        why.contains("was merged as dimension key [id]") && why.contains("replay"),
        "{why}"
    );
}
on_both!(
    split_mergers_share_a_warehouse,
    split_mergers_sqlite,
    split_mergers_postgres
);

/// Names that would collide are found before any SQL runs: the table stops alone, with a
/// message that names the fix, and the other tables go on.
async fn colliding_names_stop_their_table(pool: Pool) {
    let mut bronze = BronzeFixture::new();
    for (topic, tier) in [("shop.eu.customers", "eu"), ("shop.us.customers", "us")] {
        bronze
            .land(
                topic,
                0,
                &[change(
                    "c",
                    &json!(1),
                    None,
                    Some(customer(1, tier)),
                    100,
                    1000,
                )],
            )
            .await;
    }
    bronze
        .land(
            "bank.public.ledgers",
            0,
            &[change_with_source(
                "c",
                &json!(1),
                None,
                Some(json!({"version": 1, "id": 1})),
                pg_source(Some(1), 2, 1000, false),
            )],
        )
        .await;
    bronze
        .land(
            SALES,
            0,
            &[change(
                "c",
                &json!(1),
                None,
                Some(json!({"id": 1, "_event_id": "x"})),
                100,
                1000,
            )],
        )
        .await;
    bronze
        .land(
            "bank.public.accounts",
            0,
            &[change(
                "c",
                &json!(1),
                None,
                Some(json!({"id": 1})),
                100,
                1000,
            )],
        )
        .await;
    let config = config_of(&format!(
        "{TABLES}[[tables]]\nsource = \"bank.public.ledgers\"\nkind = \"dimension\"\nkey = [\"version\"]\n"
    ));
    let mut m = merger_with(&pool, &bronze, &config).await;
    let st = m.catch_up().await.expect("merge goes on");
    assert!(
        st.stopped["customers"].contains("shop.us.customers")
            && st.stopped["customers"].contains("name ="),
        "{st:?}"
    );
    assert!(st.stopped["ledgers"].contains("\"version\""), "{st:?}");
    assert!(st.stopped["sales"].contains("\"_event_id\""), "{st:?}");
    let got = rows(
        &pool,
        &format!("SELECT tier FROM {}", table(&pool, "silver", "customers")),
    )
    .await;
    assert_eq!(got, vec![v(&["eu"])], "the first topic keeps its table");
    assert_eq!(
        versions(&pool, "accounts", 1, "id").await.len(),
        1,
        "other tables go on"
    );
}
on_both!(
    colliding_names_stop_their_table,
    colliding_names_sqlite,
    colliding_names_postgres
);

/// A committed file changed after its commit, and a commit record gone from the middle of a
/// chain: each stops its own table with a message naming the file or range; others go on.
async fn damaged_bronze_stops_only_its_table(pool: Pool) {
    use object_store::ObjectStore as _;
    let mut bronze = BronzeFixture::new();
    for lsn in [100, 200, 300] {
        for topic in [CUSTOMERS, "bank.public.accounts"] {
            let row = json!({"id": 1, "tier": format!("t{lsn}")});
            bronze
                .land(
                    topic,
                    0,
                    &[change(
                        "u",
                        &json!(1),
                        None,
                        Some(row),
                        lsn,
                        lsn as i64 * 10,
                    )],
                )
                .await;
        }
    }
    bronze
        .land(
            "bank.public.branches",
            0,
            &[change(
                "c",
                &json!(3),
                None,
                Some(customer(3, "x")),
                120,
                1200,
            )],
        )
        .await;
    let chain = |topic: &'static str| {
        let (store, root) = (bronze.store.clone(), bronze.root.clone());
        async move {
            tidemark_bronze::commit_log::read_chain(store.as_ref(), &root, topic, 0)
                .await
                .unwrap()
                .records
        }
    };
    let damaged = chain(CUSTOMERS).await[1].files[0].path.clone();
    let good = chain(CUSTOMERS).await[0].files[0].path.clone();
    let other = bronze
        .store
        .get(&damaged.as_str().into())
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let good_bytes = bronze
        .store
        .get(&good.as_str().into())
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_ne!(other, good_bytes);
    bronze
        .store
        .put(&damaged.as_str().into(), good_bytes.into())
        .await
        .unwrap();
    let second = chain("bank.public.accounts").await[1].start;
    bronze
        .store
        .delete(&tidemark_bronze::layout::commit_record(
            &bronze.root,
            "bank.public.accounts",
            0,
            second,
        ))
        .await
        .unwrap();

    let mut m = merger(&pool, &bronze).await;
    let st = m.catch_up().await.expect("merging goes on");
    let why = &st.stopped["customers"];
    assert!(why.contains(&damaged) && why.contains("hash"), "{why}");
    let why = &st.stopped["accounts"];
    assert!(
        why.contains("in no commit record") && why.contains(&format!("{second}..={second}")),
        "{why}"
    );
    let got = rows(
        &pool,
        &format!("SELECT tier FROM {}", table(&pool, "silver", "branches")),
    )
    .await;
    assert_eq!(got, vec![v(&["x"])], "other tables go on");
    let metrics = tidemark_core::metrics::global().render();
    for t in ["customers", "accounts"] {
        assert!(
            metrics.contains(&format!("tidemark_table_stopped{{table=\"{t}\"}} 1")),
            "a stop found while reading bronze is a stopped table: {t}"
        );
    }
}
on_both!(
    damaged_bronze_stops_only_its_table,
    damaged_bronze_sqlite,
    damaged_bronze_postgres
);

/// A TOAST placeholder resolves to the value in force at its position on every table kind, also
/// when the change that holds that value arrives late, after the placeholder was merged.
async fn toast_placeholders_take_the_value_in_force(pool: Pool) {
    const TOAST: &str = "__debezium_unavailable_value";
    let mut bronze = BronzeFixture::new();
    let row = |note: &str| json!({"id": 1, "account_id": 7, "amount": 1, "note": note});
    for topic in ["bank.public.notes", SALES, BALANCES] {
        bronze
            .land(
                topic,
                0,
                &[
                    change("c", &json!(1), None, Some(row("first")), 100, 1000),
                    change("u", &json!(1), None, Some(row(TOAST)), 300, 3000),
                ],
            )
            .await;
    }
    let mut m = merger(&pool, &bronze).await;
    m.catch_up().await.expect("merge");
    // The change between them arrives late (another partition, a re-read).
    for topic in ["bank.public.notes", SALES, BALANCES] {
        bronze
            .land(
                topic,
                1,
                &[change("u", &json!(1), None, Some(row("second")), 200, 2000)],
            )
            .await;
    }
    m.catch_up().await.expect("merge");
    let notes = |sql: String| {
        let pool = pool.clone();
        async move { rows(&pool, &sql).await }
    };
    for t in ["notes", "sales", "balances"] {
        assert_eq!(
            notes(format!("SELECT note FROM {}", table(&pool, "silver", t))).await,
            vec![v(&["second"])],
            "silver of {t}"
        );
    }
    assert_eq!(
        notes(format!(
            "SELECT note FROM {}",
            table(&pool, "fact", "balances")
        ))
        .await,
        vec![v(&["second"])],
        "upsert fact"
    );
    assert_eq!(
        notes(format!(
            "SELECT note FROM {} ORDER BY _source_pos",
            table(&pool, "fact", "sales")
        ))
        .await,
        vec![v(&["first"]), v(&["second"]), v(&["second"])],
        "fact rows"
    );
}
on_both!(
    toast_placeholders_take_the_value_in_force,
    toast_outside_dimensions_sqlite,
    toast_outside_dimensions_postgres
);

/// A Debezium JSON record (with its schema) of `bank.public.rates`: `id` and `rate` are
/// decimals of the given scales, unscaled values in base64 big-endian bytes.
fn rate_record(
    id: (&str, u32),
    rate: (&str, u32),
    lsn: u64,
) -> tidemark_e2e::bronze_fixture::Record {
    let dec = |field: &str, scale: u32| {
        json!({"type": "bytes", "optional": false, "name": "org.apache.kafka.connect.data.Decimal",
               "version": 1, "parameters": {"scale": scale.to_string()}, "field": field})
    };
    let row_schema = |name: &str| {
        json!({"type": "struct", "optional": true, "name": name, "field": name.rsplit('.').next().unwrap(),
               "fields": [dec("id", id.1), dec("rate", rate.1)]})
    };
    let mut after = row_schema("bank.public.rates.Value");
    after["field"] = json!("after");
    let mut before = row_schema("bank.public.rates.Value");
    before["field"] = json!("before");
    let schema = json!({"type": "struct", "name": "bank.public.rates.Envelope", "optional": false, "fields": [
        before, after,
        {"type": "struct", "field": "source", "optional": false, "fields": [
            {"type": "string", "field": "connector", "optional": true},
            {"type": "int64", "field": "ts_ms", "optional": true},
            {"type": "int64", "field": "lsn", "optional": true}]},
        {"type": "string", "field": "op", "optional": false},
        {"type": "int64", "field": "ts_ms", "optional": true}]});
    let value = json!({"schema": schema, "payload": {
        "before": null, "after": {"id": id.0, "rate": rate.0},
        "source": {"connector": "postgresql", "ts_ms": lsn as i64 * 10, "lsn": lsn},
        "op": "u", "ts_ms": lsn as i64 * 10}});
    (None, Some(value.to_string()))
}

/// Widening a decimal's scale (`12.50` then `12.500`) is not a change: no version, one key.
async fn a_wider_decimal_scale_is_the_same_value(pool: Pool) {
    let mut bronze = BronzeFixture::new();
    // id 1.0 (scale 1: unscaled 10), rate 12.50 (scale 2: 1250).
    bronze
        .land(
            "bank.public.rates",
            0,
            &[rate_record(("Cg==", 1), ("BOI=", 2), 100)],
        )
        .await;
    // id 1.00 (scale 2: 100), rate 12.500 (scale 3: 12500).
    bronze
        .land(
            "bank.public.rates",
            0,
            &[rate_record(("ZA==", 2), ("MNQ=", 3), 200)],
        )
        .await;
    let config = config_of(&format!(
        "{TABLES}[[tables]]\nsource = \"bank.public.rates\"\nkind = \"dimension\"\nkey = [\"id\"]\n"
    ));
    let mut m = merger_with(&pool, &bronze, &config).await;
    let st = m.catch_up().await.expect("merge");
    assert!(st.stopped.is_empty(), "{st:?}");
    let count = |t: String| {
        let pool = pool.clone();
        async move {
            rows(
                &pool,
                &format!("SELECT {} FROM {t}", text(&pool, "count(*)")),
            )
            .await
        }
    };
    assert_eq!(
        count(table(&pool, "silver", "rates")).await,
        vec![v(&["1"])],
        "one key"
    );
    assert_eq!(
        count(table(&pool, "dim", "rates")).await,
        vec![v(&["1"])],
        "one version"
    );
}
on_both!(
    a_wider_decimal_scale_is_the_same_value,
    decimal_scale_sqlite,
    decimal_scale_postgres
);

/// A fact whose reference does not fit the dimension's key stops the fact, not the dimension.
async fn a_mismatched_reference_stops_the_fact(pool: Pool) {
    let mut bronze = BronzeFixture::new();
    let acct = |bal: i64| json!({"id": 7, "balance": bal});
    bronze
        .land(
            "bank.public.accounts",
            0,
            &[change("c", &json!(7), None, Some(acct(1)), 100, 1000)],
        )
        .await;
    let mut m = merger(&pool, &bronze).await;
    m.catch_up().await.expect("merge");
    bronze
        .land(
            BALANCES,
            0,
            &[change(
                "c",
                &json!(1),
                None,
                Some(json!({"id": 1, "account_id": "seven", "amount": 5})),
                110,
                1100,
            )],
        )
        .await;
    bronze
        .land(
            "bank.public.accounts",
            0,
            &[change("u", &json!(7), None, Some(acct(2)), 120, 1200)],
        )
        .await;
    let st = m.catch_up().await.expect("merge goes on");
    let why = &st.stopped["balances"];
    assert!(why.contains("reference \"account_id\""), "{why}");
    assert!(!st.stopped.contains_key("accounts"), "{st:?}");
    assert_eq!(versions(&pool, "accounts", 7, "balance").await.len(), 2);
}
on_both!(
    a_mismatched_reference_stops_the_fact,
    mismatched_reference_sqlite,
    mismatched_reference_postgres
);

/// Column names reach the column registry through binds: with
/// `standard_conforming_strings = off` a name ending in a backslash is still just a name.
#[tokio::test]
async fn registry_names_are_bound_not_quoted() {
    let Some(url) = tidemark_e2e::postgres::fresh_database().await else {
        return;
    };
    let db = url.rsplit('/').next().unwrap().to_owned();
    let admin = Pool::connect(&url, None).await.unwrap();
    let mut tx = admin.begin().await.unwrap();
    tx.exec(
        &format!("ALTER DATABASE \"{db}\" SET standard_conforming_strings = off"),
        &[],
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    admin.close().await;
    let pool = Pool::connect(&url, None).await.unwrap();
    let mut bronze = BronzeFixture::new();
    bronze
        .land(
            "bank.public.odd",
            0,
            &[change(
                "c",
                &json!(1),
                None,
                Some(json!({"id": 1, "a\\": "x"})),
                100,
                1000,
            )],
        )
        .await;
    let mut m = merger(&pool, &bronze).await;
    let st = m.catch_up().await.expect("merge");
    assert!(st.stopped.is_empty(), "{st:?}");
    let got = rows(&pool, "SELECT \"a\\\" FROM silver.odd").await;
    assert_eq!(got, vec![v(&["x"])]);
}

fn mysql(server_id: i64, gtid: Option<&str>, file: &str, pos: i64, ts_ms: i64) -> Json {
    json!({"connector": "mysql", "name": "shop", "ts_ms": ts_ms, "db": "inventory",
           "server_id": server_id, "gtid": gtid, "file": file, "pos": pos, "row": 0,
           "snapshot": if server_id == 0 { "true" } else { "false" }})
}

/// MySQL coordinates restart after a failover (another server, its own binlog numbering) and
/// after `RESET MASTER`: the later changes still order after the earlier ones, and late changes
/// of the old primary stay before them.
async fn mysql_failover_and_reset_master_keep_commit_order(pool: Pool) {
    let mut bronze = BronzeFixture::new();
    let up = |tier: &str, src: Json| {
        change_with_source("u", &json!(1), None, Some(customer(1, tier)), src)
    };
    let a = "3e11fa47-71ca-11e1-9e33-c80aa9429562";
    let b = "0b3ac4ea-71ca-11e1-9e33-c80aa9429562";
    for topic in ["shop.inventory.items", "shop.inventory.members"] {
        bronze
            .land(
                topic,
                0,
                &[
                    up("snap", mysql(0, None, "mysql-bin.000009", 100, 900)),
                    up(
                        "a1",
                        mysql(1, Some(&format!("{a}:10")), "mysql-bin.000009", 500, 1000),
                    ),
                    up(
                        "a2",
                        mysql(1, Some(&format!("{a}:11")), "mysql-bin.000009", 600, 1100),
                    ),
                ],
            )
            .await;
    }
    let config = config_of(&format!(
        "{TABLES}[[tables]]\nsource = \"shop.inventory.members\"\nkind = \"dimension\"\nkey = [\"id\"]\n"
    ));
    let mut m = merger_with(&pool, &bronze, &config).await;
    m.catch_up().await.expect("merge");
    for topic in ["shop.inventory.items", "shop.inventory.members"] {
        // The new primary: lower coordinates, later commits.
        bronze
            .land(
                topic,
                0,
                &[up(
                    "b1",
                    mysql(2, Some(&format!("{b}:1")), "mysql-bin.000001", 400, 2000),
                )],
            )
            .await;
        // A change of the old primary delivered late (another partition).
        bronze
            .land(
                topic,
                1,
                &[up(
                    "a-late",
                    mysql(1, Some(&format!("{a}:9")), "mysql-bin.000009", 400, 950),
                )],
            )
            .await;
    }
    m.catch_up().await.expect("merge");
    for topic in ["shop.inventory.items", "shop.inventory.members"] {
        // RESET MASTER on the new primary: coordinates and GTIDs restart again.
        bronze
            .land(
                topic,
                0,
                &[up(
                    "b2",
                    mysql(2, Some(&format!("{b}:1")), "mysql-bin.000001", 4, 3000),
                )],
            )
            .await;
    }
    m.catch_up().await.expect("merge");
    for t in ["items", "members"] {
        let got = rows(
            &pool,
            &format!("SELECT tier FROM {}", table(&pool, "silver", t)),
        )
        .await;
        assert_eq!(got, vec![v(&["b2"])], "silver of {t}");
    }
    let tiers: Vec<String> = versions(&pool, "members", 1, "tier")
        .await
        .into_iter()
        .map(|r| r[6].clone().unwrap_or_default())
        .collect();
    assert_eq!(tiers, ["snap", "a-late", "a1", "a2", "b1", "b2"]);
    let metrics = tidemark_core::metrics::global().render();
    for t in ["items", "members"] {
        assert!(
            metrics.contains(&format!(
                "tidemark_source_position_regressions_total{{table=\"{t}\"}} 1"
            )),
            "the RESET MASTER is counted for {t}"
        );
    }
}
on_both!(
    mysql_failover_and_reset_master_keep_commit_order,
    mysql_failover_sqlite,
    mysql_failover_postgres
);

/// A schemaless column that is null in its first file is not typed yet: the integers that come
/// later make it bigint instead of stopping the table.
async fn a_column_first_seen_null_takes_the_type_of_its_values(pool: Pool) {
    let mut bronze = BronzeFixture::new();
    let row = |x: Json| json!({"id": 1, "x": x});
    bronze
        .land(
            "bank.public.things",
            0,
            &[change(
                "c",
                &json!(1),
                None,
                Some(row(Json::Null)),
                100,
                1000,
            )],
        )
        .await;
    let mut m = merger(&pool, &bronze).await;
    m.catch_up().await.expect("merge");
    bronze
        .land(
            "bank.public.things",
            0,
            &[change("u", &json!(1), None, Some(row(json!(5))), 110, 1100)],
        )
        .await;
    let st = m.catch_up().await.expect("merge");
    assert!(st.stopped.is_empty(), "{st:?}");
    let got = rows(
        &pool,
        &format!(
            "SELECT {} FROM {}",
            text(&pool, "x + 1"),
            table(&pool, "silver", "things")
        ),
    )
    .await;
    assert_eq!(got, vec![v(&["6"])]);
}
on_both!(
    a_column_first_seen_null_takes_the_type_of_its_values,
    null_first_sqlite,
    null_first_postgres
);

/// Which account version each `sales` fact points at, by fact id.
async fn sale_versions(pool: &Pool) -> Vec<Vec<Option<String>>> {
    rows(
        pool,
        &format!(
            "SELECT {}, {} FROM {} f LEFT JOIN {} d ON d.sk = f.account_id_sk ORDER BY f.id",
            text(pool, "f.id"),
            text(pool, "d.version"),
            table(pool, "fact", "sales"),
            table(pool, "dim", "accounts"),
        ),
    )
    .await
}

/// One merger, fed in turns: a fact newer than every account version, then account changes
/// older than it. Re-pointing skips dimension changes newer than every fact (the merger keeps
/// the newest fact's time), so the marks must follow each fact batch.
async fn facts_ahead_of_their_dimension_are_repointed(pool: Pool) {
    let config = config_of(
        r#"
[[tables]]
source = "bank.public.accounts"
kind = "dimension"
key = ["id"]
[[tables]]
source = "shop.dbo.sales"
kind = "fact"
references = { account_id = "bank.public.accounts" }
"#,
    );
    const ACCOUNTS: &str = "bank.public.accounts";
    let mut bronze = BronzeFixture::new();
    let account = |lsn: u64, ts: i64, tier: &str| {
        change(
            "u",
            &json!(1),
            None,
            Some(json!({"id": 1, "tier": tier})),
            lsn,
            ts,
        )
    };
    let sale = |id: i64, lsn: u64, ts: i64| {
        change(
            "c",
            &json!(id),
            None,
            Some(json!({"id": id, "account_id": 1})),
            lsn,
            ts,
        )
    };
    let mut m = bronze.merger(&pool, &config).await;
    let b = &mut bronze;
    turn(&mut m, b, ACCOUNTS, &[account(100, 1_000, "a")]).await;
    // A fact at 3000: its account's version 1 (the mark is read from the table here).
    turn(&mut m, b, SALES, &[sale(1, 300, 3_000)]).await;
    turn(&mut m, b, ACCOUNTS, &[account(200, 2_000, "b")]).await;
    assert_eq!(sale_versions(&pool).await, vec![v(&["1", "2"])]);
    // A fact at 5000 raises the known mark; a version from 4000 moves it.
    turn(&mut m, b, SALES, &[sale(2, 500, 5_000)]).await;
    turn(&mut m, b, ACCOUNTS, &[account(400, 4_000, "c")]).await;
    assert_eq!(
        sale_versions(&pool).await,
        vec![v(&["1", "2"]), v(&["2", "3"])]
    );
    // A version after every fact moves none.
    turn(&mut m, b, ACCOUNTS, &[account(600, 6_000, "d")]).await;
    assert_eq!(
        sale_versions(&pool).await,
        vec![v(&["1", "2"]), v(&["2", "3"])]
    );
}

/// Lands `records` on `topic` and merges everything.
async fn turn(
    m: &mut Merger,
    bronze: &mut BronzeFixture,
    topic: &str,
    records: &[tidemark_e2e::bronze_fixture::Record],
) {
    bronze.land(topic, 0, records).await;
    let st = m.catch_up().await.expect("merge");
    assert!(st.stopped.is_empty(), "{st:?}");
}
on_both!(
    facts_ahead_of_their_dimension_are_repointed,
    facts_ahead_sqlite,
    facts_ahead_postgres
);

/// A table behind on two partitions: one batch of `max_batch_rows` advances both (the first
/// partition used to take the whole budget), so facts waiting for the slowest move on.
async fn a_batch_reads_every_partition(pool: Pool) {
    let mut config = config_of(TABLES);
    config.merge.max_batch_rows = 10;
    let mut bronze = BronzeFixture::new();
    for (partition, first_id) in [(0, 1), (1, 101)] {
        for file in 0..4 {
            let records: Vec<_> = (0..5)
                .map(|i| {
                    let id = first_id + file * 5 + i;
                    let lsn = (id * 8) as u64;
                    change(
                        "c",
                        &json!(id),
                        None,
                        Some(customer(id, "t")),
                        lsn,
                        1000 + id,
                    )
                })
                .collect();
            bronze.land(CUSTOMERS, partition, &records).await;
        }
    }
    let mut m = bronze.merger(&pool, &config).await;
    let st = m.cycle().await.expect("one cycle");
    assert_eq!(st.changes(), 10, "one batch of max_batch_rows");
    let sql = format!(
        "SELECT {} FROM {}",
        text(&pool, "count(*)"),
        table(&pool, "silver", "customers")
    );
    let per_partition = |cond: &str| format!("{sql} WHERE {cond}");
    for cond in ["id < 100", "id > 100"] {
        assert_eq!(
            rows(&pool, &per_partition(cond)).await,
            vec![v(&["5"])],
            "{cond}: each partition's share"
        );
    }
}
on_both!(
    a_batch_reads_every_partition,
    every_partition_sqlite,
    every_partition_postgres
);
