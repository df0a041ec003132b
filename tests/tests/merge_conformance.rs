//! The merger's warehouse contract, run identically on SQLite and a real PostgreSQL:
//! SCD2 rules, late and redelivered events, deletes and re-inserts, TOAST placeholders, facts
//! with references and inferred members, schema evolution, hostile identifiers.

use serde_json::json;
use tidemark_core::config::Config;
use tidemark_e2e::bronze_fixture::{BronzeFixture, change, truncate};
use tidemark_e2e::on_both;
use tidemark_e2e::warehouse::{rows, table, text, v, versions};
use tidemark_warehouse::merger::Merger;
use tidemark_warehouse::sql::conn::Pool;

const CUSTOMERS: &str = "bank.public.customers";
const ACCOUNTS: &str = "bank.public.accounts";
const TRANSACTIONS: &str = "bank.public.transactions";

fn config() -> Config {
    Config::from_toml_and_env(
        r#"
[[tables]]
source = "pg.public.type_samples"
key = ["id"]
[[tables]]
source = "my.shop.shifts"
key = ["id"]
[[tables]]
source = "bank.public.weird"
name = "we\"ird"
[[tables]]
source = "bank.public.customers"
kind = "dimension"
key = ["id"]
ignore_columns = ["updated_at"]
[[tables]]
source = "bank.public.accounts"
kind = "dimension"
key = ["id"]
[[tables]]
source = "bank.public.transactions"
kind = "fact"
references = { account_id = "bank.public.accounts" }
[[tables]]
source = "bank.public.balances"
kind = "fact"
key = ["id"]
upsert = true
references = { account_id = "bank.public.accounts" }
"#,
        std::iter::empty(),
    )
    .expect("test config")
}

async fn merger(pool: &Pool, bronze: &BronzeFixture) -> Merger {
    bronze.merger(pool, &config()).await
}

async fn scd2_rules(pool: Pool) {
    let mut bronze = BronzeFixture::new();
    let id = json!(1);
    let row =
        |tier: &str, upd: i64| json!({"id": 1, "name": "Ann", "tier": tier, "updated_at": upd});
    bronze
        .land(
            CUSTOMERS,
            0,
            &[
                change("c", &id, None, Some(row("silver", 1)), 100, 1000),
                // Two changes of one key in one batch: two versions.
                change(
                    "u",
                    &id,
                    Some(row("silver", 1)),
                    Some(row("gold", 1)),
                    110,
                    1100,
                ),
                // Only an ignored column: no version.
                change(
                    "u",
                    &id,
                    Some(row("gold", 1)),
                    Some(row("gold", 2)),
                    120,
                    1200,
                ),
            ],
        )
        .await;
    let mut m = merger(&pool, &bronze).await;
    m.catch_up().await.expect("merge");
    assert_eq!(
        versions(&pool, "customers", 1, "tier").await,
        vec![
            v(&["1", "1000", "1100", "", "", "", "silver"]),
            v(&["2", "1100", "NULL", "cur", "", "", "gold"]),
        ]
    );

    bronze
        .land(
            CUSTOMERS,
            0,
            &[
                change("d", &id, Some(json!({"id": 1})), None, 130, 1300),
                (Some(r#"{"id":1}"#.into()), None), // tombstone
                change("c", &id, None, Some(row("platinum", 3)), 140, 1400),
                // Redelivered (same source position): nothing changes.
                change(
                    "u",
                    &id,
                    Some(row("silver", 1)),
                    Some(row("gold", 1)),
                    110,
                    1100,
                ),
            ],
        )
        .await;
    m.catch_up().await.expect("merge");
    // A late change lands in its place and splits the version it falls in.
    bronze
        .land(
            CUSTOMERS,
            1,
            &[change("u", &id, None, Some(row("bronze", 1)), 105, 1050)],
        )
        .await;
    m.catch_up().await.expect("merge");
    assert_eq!(
        versions(&pool, "customers", 1, "tier").await,
        vec![
            v(&["1", "1000", "1050", "", "", "", "silver"]),
            v(&["2", "1050", "1100", "", "", "", "bronze"]),
            v(&["3", "1100", "1300", "", "", "", "gold"]),
            v(&["4", "1300", "1400", "", "del", "", "gold"]),
            v(&["5", "1400", "NULL", "cur", "", "", "platinum"]),
        ]
    );
    let silver = rows(
        &pool,
        &format!(
            "SELECT tier, _op, {} FROM {}",
            text(&pool, "CASE WHEN _deleted THEN 'del' ELSE 'live' END"),
            table(&pool, "silver", "customers")
        ),
    )
    .await;
    assert_eq!(silver, vec![v(&["platinum", "c", "live"])]);

    // Applying the same bronze again (ledger rewound) changes nothing.
    let before = versions(&pool, "customers", 1, "tier").await;
    let mut tx = pool.begin().await.unwrap();
    tx.exec(&format!("DELETE FROM {}", m.target().ledger()), &[])
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let again = m.catch_up().await.expect("merge");
    assert!(again.tables["customers"].dim.redelivered >= 5, "{again:?}");
    assert_eq!(versions(&pool, "customers", 1, "tier").await, before);
}
on_both!(scd2_rules, scd2_rules_sqlite, scd2_rules_postgres);

async fn facts_resolve_to_the_version_valid_at_their_time(pool: Pool) {
    let mut bronze = BronzeFixture::new();
    let tx_row = |id: i64, amount: i64| json!({"id": id, "account_id": 7, "amount": amount});
    // A fact before its account exists: an inferred member.
    bronze
        .land(
            TRANSACTIONS,
            0,
            &[change("c", &json!(1), None, Some(tx_row(1, 5)), 200, 2000)],
        )
        .await;
    let mut m = merger(&pool, &bronze).await;
    m.catch_up().await.expect("merge");
    assert_eq!(
        versions(&pool, "accounts", 7, "id").await,
        vec![v(&["0", "2000", "NULL", "cur", "", "inf", "7"])]
    );
    let acct = |bal: i64| json!({"id": 7, "balance": bal});
    bronze
        .land(
            ACCOUNTS,
            0,
            &[
                change("c", &json!(7), None, Some(acct(10)), 250, 2500),
                change("u", &json!(7), None, Some(acct(20)), 300, 3000),
            ],
        )
        .await;
    bronze
        .land(
            TRANSACTIONS,
            0,
            &[change("c", &json!(2), None, Some(tx_row(2, 6)), 350, 3500)],
        )
        .await;
    m.catch_up().await.expect("merge");
    let facts = || async {
        rows(
            &pool,
            &format!(
                "SELECT {}, {} FROM {} f JOIN {} d ON d.sk = f.account_id_sk ORDER BY f.id",
                text(&pool, "f.id"),
                text(&pool, "d.balance"),
                table(&pool, "fact", "transactions"),
                table(&pool, "dim", "accounts"),
            ),
        )
        .await
    };
    // The inferred member is completed with the first version's values.
    assert_eq!(facts().await, vec![v(&["1", "10"]), v(&["2", "20"])]);
    // A late account change between version 2 and the fact moves the fact.
    bronze
        .land(
            ACCOUNTS,
            1,
            &[change("u", &json!(7), None, Some(acct(15)), 320, 3200)],
        )
        .await;
    m.catch_up().await.expect("merge");
    assert_eq!(facts().await, vec![v(&["1", "10"]), v(&["2", "15"])]);
    assert_eq!(
        versions(&pool, "accounts", 7, "balance").await,
        vec![
            v(&["0", "2000", "2500", "", "", "inf", "10"]),
            v(&["1", "2500", "3000", "", "", "", "10"]),
            v(&["2", "3000", "3200", "", "", "", "20"]),
            v(&["3", "3200", "NULL", "cur", "", "", "15"]),
        ]
    );
}
on_both!(
    facts_resolve_to_the_version_valid_at_their_time,
    facts_sqlite,
    facts_postgres
);

/// Facts older than every version of an account with a history: the first adds an inferred
/// member before the history (version 0, the first version's values), an even older one moves
/// its start, a younger one changes nothing; no real version changes, and every fact points at
/// the version valid at its time (the member for all three).
async fn references_older_than_a_history_add_or_move_its_inferred_member(pool: Pool) {
    let mut bronze = BronzeFixture::new();
    let acct = |bal: i64| json!({"id": 7, "balance": bal});
    let history: Vec<_> = (0..5)
        .map(|i| {
            change(
                "u",
                &json!(7),
                None,
                Some(acct(10 * (i + 1))),
                100 + i as u64 * 8,
                5000 + i * 1000,
            )
        })
        .collect();
    bronze.land(ACCOUNTS, 0, &history).await;
    let mut m = merger(&pool, &bronze).await;
    m.catch_up().await.expect("merge");
    let real = versions(&pool, "accounts", 7, "balance").await;
    assert_eq!(real.len(), 5);
    let tx_row = |id: i64| json!({"id": id, "account_id": 7, "amount": 1});
    let facts =
        |id: i64, pos: u64, ts: i64| change("c", &json!(id), None, Some(tx_row(id)), pos, ts);
    let member = |from: &str| v(&["0", from, "5000", "", "", "inf", "10"]);
    // Older than the history: the member is added before it.
    bronze.land(TRANSACTIONS, 0, &[facts(1, 200, 3000)]).await;
    m.catch_up().await.expect("merge");
    let mut expected = vec![member("3000")];
    expected.extend(real.iter().cloned());
    assert_eq!(versions(&pool, "accounts", 7, "balance").await, expected);
    // Older still: the member starts earlier; younger than it: nothing changes.
    bronze
        .land(TRANSACTIONS, 0, &[facts(2, 210, 2000), facts(3, 220, 4000)])
        .await;
    m.catch_up().await.expect("merge");
    expected[0] = member("2000");
    assert_eq!(versions(&pool, "accounts", 7, "balance").await, expected);
    let pointed = rows(
        &pool,
        &format!(
            "SELECT {}, {} FROM {} f JOIN {} d ON d.sk = f.account_id_sk ORDER BY f.id",
            text(&pool, "f.id"),
            text(&pool, "d.version"),
            table(&pool, "fact", "transactions"),
            table(&pool, "dim", "accounts"),
        ),
    )
    .await;
    assert_eq!(
        pointed,
        vec![v(&["1", "0"]), v(&["2", "0"]), v(&["3", "0"])]
    );
}
on_both!(
    references_older_than_a_history_add_or_move_its_inferred_member,
    inferred_before_history_sqlite,
    inferred_before_history_postgres
);

async fn toast_evolution_and_stopped_tables(pool: Pool) {
    let mut bronze = BronzeFixture::new();
    let id = json!(2);
    bronze
        .land(
            CUSTOMERS,
            0,
            &[
                change(
                    "c",
                    &id,
                    None,
                    Some(json!({"id": 2, "bio": "long text", "score": 1})),
                    100,
                    1000,
                ),
                change(
                    "u",
                    &id,
                    None,
                    Some(json!({"id": 2, "bio": "__debezium_unavailable_value", "score": 2})),
                    110,
                    1100,
                ),
            ],
        )
        .await;
    let mut m = merger(&pool, &bronze).await;
    m.catch_up().await.expect("merge");
    // A TOAST placeholder keeps the stored value; the next batch has one too.
    bronze
        .land(
            CUSTOMERS,
            0,
            &[change(
                "u",
                &id,
                None,
                Some(json!({"id": 2, "bio": "__debezium_unavailable_value", "score": 2.5, "email": "a@b"})),
                120,
                1200,
            )],
        )
        .await;
    let st = m.catch_up().await.expect("merge");
    assert!(st.stopped.is_empty(), "{st:?}");
    let silver = rows(
        &pool,
        &format!(
            "SELECT bio, {}, email FROM {}",
            text(&pool, "score"),
            table(&pool, "silver", "customers")
        ),
    )
    .await;
    assert_eq!(
        silver,
        vec![v(&["long text", "2.5", "a@b"])],
        "widened bigint meeting a double → numeric (lossless), new column"
    );
    let dim_bios = rows(
        &pool,
        &format!(
            "SELECT bio FROM {} ORDER BY version",
            table(&pool, "dim", "customers")
        ),
    )
    .await;
    assert_eq!(
        dim_bios,
        vec![v(&["long text"]), v(&["long text"]), v(&["long text"])]
    );

    // An incompatible change stops that table only.
    bronze
        .land(
            CUSTOMERS,
            0,
            &[change(
                "u",
                &id,
                None,
                Some(json!({"id": 2, "score": "high"})),
                130,
                1300,
            )],
        )
        .await;
    bronze
        .land(
            ACCOUNTS,
            0,
            &[change(
                "c",
                &json!(9),
                None,
                Some(json!({"id": 9, "balance": 1})),
                140,
                1400,
            )],
        )
        .await;
    let s = m.catch_up().await.expect("merge");
    let why = &s.stopped["customers"];
    assert!(
        why.contains("score") && why.contains("numeric") && why.contains("text"),
        "{why}"
    );
    assert_eq!(s.tables["accounts"].changes, 1, "other tables go on");
    // Truncate soft-deletes silver rows older than it.
    bronze.land(ACCOUNTS, 0, &[truncate(150, 1500)]).await;
    m.catch_up().await.expect("merge");
    let acc = rows(
        &pool,
        &format!(
            "SELECT _op, {} FROM {}",
            text(&pool, "CASE WHEN _deleted THEN 'del' ELSE 'live' END"),
            table(&pool, "silver", "accounts")
        ),
    )
    .await;
    assert_eq!(acc, vec![v(&["t", "del"])]);
}
on_both!(
    toast_evolution_and_stopped_tables,
    toast_evolution_sqlite,
    toast_evolution_postgres
);

async fn hostile_identifiers_are_quoted(pool: Pool) {
    let mut bronze = BronzeFixture::new();
    let mut tx = pool.begin().await.unwrap();
    tx.exec("CREATE TABLE y (a INTEGER)", &[]).await.unwrap();
    tx.commit().await.unwrap();
    let evil = "x\"; drop table y; --";
    bronze
        .land(
            "bank.public.weird",
            0,
            &[change(
                "c",
                &json!(1),
                None,
                Some(json!({"id": 1, evil: "boom"})),
                100,
                1000,
            )],
        )
        .await;
    let mut m = merger(&pool, &bronze).await;
    let s = m.catch_up().await.expect("merge");
    assert!(s.stopped.is_empty(), "{:?}", s.stopped);
    let got = rows(
        &pool,
        &format!(
            "SELECT \"x\"\"; drop table y; --\" FROM {}",
            table(&pool, "silver", "we\"ird")
        ),
    )
    .await;
    assert_eq!(got, vec![v(&["boom"])]);
    assert!(
        rows(&pool, "SELECT 'still here' FROM y").await.is_empty(),
        "y exists and is empty"
    );
}
on_both!(
    hostile_identifiers_are_quoted,
    hostile_identifiers_sqlite,
    hostile_identifiers_postgres
);

async fn upsert_facts_keep_one_row_per_key(pool: Pool) {
    let mut bronze = BronzeFixture::new();
    let bal = |v: i64| json!({"id": 1, "account_id": 7, "amount": v});
    bronze
        .land(
            "bank.public.balances",
            0,
            &[
                change("c", &json!(1), None, Some(bal(10)), 100, 1000),
                change("u", &json!(1), None, Some(bal(30)), 300, 3000),
                // Older than the stored row: ignored.
                change("u", &json!(1), None, Some(bal(20)), 200, 2000),
            ],
        )
        .await;
    let mut m = merger(&pool, &bronze).await;
    m.catch_up().await.expect("merge");
    let got = rows(
        &pool,
        &format!(
            "SELECT {}, {}, {} FROM {} f JOIN {} d ON d.sk = f.account_id_sk",
            text(&pool, "f.id"),
            text(&pool, "f.amount"),
            text(&pool, "CASE WHEN d.is_inferred THEN 'inf' ELSE '' END"),
            table(&pool, "fact", "balances"),
            table(&pool, "dim", "accounts"),
        ),
    )
    .await;
    assert_eq!(got, vec![v(&["1", "30", "inf"])]);
}
on_both!(
    upsert_facts_keep_one_row_per_key,
    upsert_facts_sqlite,
    upsert_facts_postgres
);

/// Every Debezium logical type (the decoder's fixture) lands typed in the warehouse: PostgreSQL
/// columns get numeric, date, time, timestamp(tz), jsonb, uuid types and the values read back
/// equal the fixture's documented values on both backends.
async fn logical_types_arrive_typed(pool: Pool) {
    let fixture = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../services/tidemark-wire/tests/fixtures/debezium/constructed/pg_logical_types_create_envelope.json"
    ))
    .unwrap();
    let mut bronze = BronzeFixture::new();
    bronze
        .land(
            "pg.public.type_samples",
            0,
            &[(Some(r#"{"id":1}"#.into()), Some(fixture))],
        )
        .await;
    let mut m = merger(&pool, &bronze).await;
    let s = m.catch_up().await.expect("merge");
    assert!(s.stopped.is_empty(), "{:?}", s.stopped);
    let cols = [
        "price",
        "balance",
        "amount",
        "d",
        "t3",
        "t6",
        "ts3",
        "ts6",
        "ts_pos_inf",
        "ts_nanos",
        "tstz",
        "doc",
        "uid",
        "mood",
        "int_arr",
        "txt_arr",
        "bio",
    ];
    let select = cols
        .iter()
        .map(|c| text(&pool, &format!("\"{c}\"")))
        .collect::<Vec<_>>()
        .join(", ");
    let got = rows(
        &pool,
        &format!(
            "SELECT {select} FROM {}",
            table(&pool, "silver", "type_samples")
        ),
    )
    .await;
    assert_eq!(got.len(), 1);
    // Backends spell times and JSON differently; compare values.
    let norm = |c: &str, v: &Option<String>| -> Option<String> {
        let v = v.as_ref()?;
        if matches!(c, "doc" | "int_arr" | "txt_arr") {
            return Some(
                serde_json::from_str::<serde_json::Value>(v)
                    .unwrap()
                    .to_string(),
            );
        }
        let v = v.trim_end_matches("+00:00").trim_end_matches("+00");
        Some(match v.split_once('.') {
            Some((a, frac)) => {
                let frac = frac.trim_end_matches('0');
                if frac.is_empty() {
                    a.to_owned()
                } else {
                    format!("{a}.{frac}")
                }
            }
            None => v.to_owned(),
        })
    };
    let want = [
        Some("1234.56"),
        Some("-1234.567"),
        Some("-1.2345"),
        Some("2018-06-20"),
        Some("15:13:16.945"),
        Some("15:13:16.945104"),
        Some("2018-06-20 15:13:16.945"),
        Some("2018-06-20 15:13:16.945104"),
        Some("infinity"),
        Some("2018-06-20 15:13:16.945104"),
        Some("2018-06-20 15:13:16.945104"),
        Some(r#"{"a":1,"b":[true,null]}"#),
        Some("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
        Some("happy"),
        Some("[1,2,null]"),
        Some(r#"["x","y"]"#),
        None, // TOAST placeholder on insert: no value to keep, never the placeholder text
    ];
    for ((c, g), w) in cols.iter().zip(&got[0]).zip(want) {
        assert_eq!(norm(c, g).as_deref(), w, "column {c}");
    }
    if matches!(pool, Pool::Postgres(_)) {
        let types = rows(
            &pool,
            "SELECT column_name::text, data_type::text FROM information_schema.columns \
             WHERE table_schema = 'silver' AND table_name = 'type_samples' \
             AND column_name IN ('price', 'd', 'ts6', 'tstz', 'doc', 'uid') ORDER BY column_name",
        )
        .await;
        assert_eq!(
            types,
            vec![
                v(&["d", "date"]),
                v(&["doc", "jsonb"]),
                v(&["price", "numeric"]),
                v(&["ts6", "timestamp without time zone"]),
                v(&["tstz", "timestamp with time zone"]),
                v(&["uid", "uuid"]),
            ]
        );
    }
}
on_both!(
    logical_types_arrive_typed,
    logical_types_sqlite,
    logical_types_postgres
);

/// MySQL TIME spans ±838 hours: it lands as a duration and reads back unwrapped (an interval on
/// PostgreSQL, MySQL's own spelling on SQLite), never as a time of day modulo 24 h.
async fn mysql_times_past_a_day_stay_durations(pool: Pool) {
    let event = |id: i64, micros: i64| {
        format!(
            r#"{{"schema":{{"type":"struct","name":"my.shop.shifts.Envelope","fields":[
                {{"type":"struct","optional":true,"field":"before","name":"my.shop.shifts.Value","fields":[
                    {{"type":"int32","field":"id"}},
                    {{"type":"int64","optional":true,"name":"io.debezium.time.MicroTime","field":"length"}}]}},
                {{"type":"struct","optional":true,"field":"after","name":"my.shop.shifts.Value","fields":[
                    {{"type":"int32","field":"id"}},
                    {{"type":"int64","optional":true,"name":"io.debezium.time.MicroTime","field":"length"}}]}},
                {{"type":"struct","field":"source","name":"io.debezium.connector.mysql.Source","fields":[
                    {{"type":"string","field":"connector"}},{{"type":"string","field":"file"}},
                    {{"type":"int64","field":"pos"}},{{"type":"int64","field":"server_id"}}]}},
                {{"type":"string","field":"op"}}]}},
              "payload":{{"before":null,"after":{{"id":{id},"length":{micros}}},
                "source":{{"connector":"mysql","file":"bin.000001","pos":{pos},"server_id":1}},"op":"c"}}}}"#,
            pos = 100 + id
        )
    };
    let dir = tempfile::tempdir().unwrap();
    let mut bronze = BronzeFixture::on_disk(dir.path());
    let records: Vec<_> = [
        (1, 360_000_000_000i64),
        (2, -3_020_399_000_000),
        (3, 45_296_500_000),
    ]
    .iter()
    .map(|(id, us)| (Some(format!(r#"{{"id":{id}}}"#)), Some(event(*id, *us))))
    .collect();
    bronze.land("my.shop.shifts", 0, &records).await;
    // DuckDB reads the file (a time of day past 24 h made it refuse one): exact microseconds.
    tidemark_e2e::readers::duckdb_script(
        r#"
import duckdb, sys
rows = duckdb.connect().execute(f"select after.length from read_parquet('{sys.argv[1]}/my.shop.shifts/*/*.parquet') order by after.id").fetchall()
assert rows == [(360000000000,), (-3020399000000,), (45296500000,)], rows
"#,
        dir.path(),
    );
    let mut m = merger(&pool, &bronze).await;
    let s = m.catch_up().await.expect("merge");
    assert!(s.stopped.is_empty(), "{:?}", s.stopped);
    let got = rows(
        &pool,
        &format!(
            "SELECT {} FROM {} ORDER BY id",
            text(&pool, "length"),
            table(&pool, "silver", "shifts")
        ),
    )
    .await;
    // Backends spell fractions differently (PostgreSQL drops trailing zeros); compare values.
    let got: Vec<String> = got
        .into_iter()
        .map(|r| {
            let t = r[0].clone().unwrap();
            match t.split_once('.') {
                Some((whole, frac)) if frac.trim_end_matches('0').is_empty() => whole.to_owned(),
                Some((whole, frac)) => format!("{whole}.{}", frac.trim_end_matches('0')),
                None => t,
            }
        })
        .collect();
    assert_eq!(got, ["100:00:00", "-838:59:59", "12:34:56.5"]);
    if matches!(pool, Pool::Postgres(_)) {
        let ty = rows(
            &pool,
            "SELECT data_type::text FROM information_schema.columns \
             WHERE table_schema = 'silver' AND table_name = 'shifts' AND column_name = 'length'",
        )
        .await;
        assert_eq!(ty, vec![v(&["interval"])]);
    }
}
on_both!(
    mysql_times_past_a_day_stay_durations,
    mysql_durations_sqlite,
    mysql_durations_postgres
);

/// The README's "as of" queries return the version valid at an instant on both backends: on
/// PostgreSQL with a timestamptz literal, on SQLite with the instant in the stored form (an ISO
/// `T…Z` literal compared as text would pick the wrong version) or through `julianday`.
async fn as_of_queries_pick_the_version_valid_then(pool: Pool) {
    let mut bronze = BronzeFixture::new();
    let id = json!(1);
    let row = |tier: &str| json!({"id": 1, "name": "Ann", "tier": tier, "updated_at": 1});
    let hour = 3_600_000;
    let t0 = 1_700_000_000_000; // 2023-11-14 22:13:20 UTC
    bronze
        .land(
            CUSTOMERS,
            0,
            &[
                change("c", &id, None, Some(row("silver")), 100, t0),
                change(
                    "u",
                    &id,
                    Some(row("silver")),
                    Some(row("gold")),
                    110,
                    t0 + hour,
                ),
                change(
                    "u",
                    &id,
                    Some(row("gold")),
                    Some(row("platinum")),
                    120,
                    t0 + 2 * hour,
                ),
            ],
        )
        .await;
    merger(&pool, &bronze)
        .await
        .catch_up()
        .await
        .expect("merge");
    let dim = table(&pool, "dim", "customers");
    // 2023-11-14 23:43:20 UTC: between the second and the third change.
    let queries: Vec<String> = match pool {
        Pool::Postgres(_) => vec![format!(
            "SELECT tier FROM {dim} WHERE id = 1 \
             AND valid_from <= timestamptz '2023-11-14T23:43:20Z' \
             AND (valid_to IS NULL OR valid_to > timestamptz '2023-11-14T23:43:20Z')"
        )],
        _ => vec![
            format!(
                "SELECT tier FROM {dim} WHERE id = 1 \
                 AND valid_from <= '2023-11-14 23:43:20.000000+00:00' \
                 AND (valid_to IS NULL OR valid_to > '2023-11-14 23:43:20.000000+00:00')"
            ),
            format!(
                "SELECT tier FROM {dim} WHERE id = 1 \
                 AND julianday(valid_from) <= julianday('2023-11-14T23:43:20Z') \
                 AND (valid_to IS NULL OR julianday(valid_to) > julianday('2023-11-14T23:43:20Z'))"
            ),
        ],
    };
    for q in queries {
        assert_eq!(rows(&pool, &q).await, vec![v(&["gold"])], "{q}");
    }
}
on_both!(
    as_of_queries_pick_the_version_valid_then,
    as_of_sqlite,
    as_of_postgres
);
