//! The banking domain of the demo: customers and accounts change over time (cities, tiers,
//! statuses, balances), some customers leave (their accounts are deleted, then tombstoned) and
//! a few come back, transactions are facts that reference accounts, and about one dimension
//! change in a hundred reaches Kafka late (after newer changes of the same row).
//!
//! The shape matches `schemas/source/bank.sql` as Debezium's PostgreSQL connector captures it
//! (`decimal.handling.mode=precise`, `timestamptz` as `ZonedTimestamp`): the generated stream
//! and the compose stack's real one land in the same tables.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};

use tidemark_core::event::{ChangeEvent, KafkaCoords, Op, Snapshot, Source};
use tidemark_core::schema::{Field, Kind, Logical, Schema, StructSchema};
use tidemark_core::value::{Row, TimeUnit, Timestamp, TypedRow, Value};
use tidemark_wire::encode::decimal;

/// The three source tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Table {
    Customers,
    Accounts,
    Transactions,
}

impl Table {
    pub const ALL: [Table; 3] = [Table::Customers, Table::Accounts, Table::Transactions];

    pub fn name(self) -> &'static str {
        match self {
            Table::Customers => "customers",
            Table::Accounts => "accounts",
            Table::Transactions => "transactions",
        }
    }
}

/// The merge settings that suit the stream (the same as `deploy/tidemark.toml`): balances and
/// `updated_at` alone make no new dimension version.
pub fn tables_toml(prefix: &str) -> String {
    format!(
        r#"[[tables]]
source = "{prefix}.public.customers"
kind = "dimension"
key = ["id"]
ignore_columns = ["updated_at"]

[[tables]]
source = "{prefix}.public.accounts"
kind = "dimension"
key = ["id"]
ignore_columns = ["balance"]

[[tables]]
source = "{prefix}.public.transactions"
kind = "fact"
references = {{ account_id = "{prefix}.public.accounts" }}
"#
    )
}

/// One record for Kafka: a change event, or the tombstone after a delete.
#[derive(Debug, Clone)]
pub struct Emitted {
    pub table: Table,
    /// The row's primary key (`id`).
    pub id: i64,
    /// `None`: a tombstone.
    pub event: Option<ChangeEvent>,
}

impl Emitted {
    /// `c`/`u`/`d`/`r`, or `tombstone`.
    pub fn kind(&self) -> &'static str {
        self.event.as_ref().map_or("tombstone", |e| e.op.code())
    }
}

/// How big and how messy the stream is.
#[derive(Debug, Clone)]
pub struct BankOptions {
    /// Debezium's `topic.prefix`: topics are `<prefix>.public.<table>`.
    pub topic_prefix: String,
    /// Customers in the initial snapshot (accounts: about 1.5 per customer).
    pub customers: usize,
    /// Share of dimension updates delivered late, 0–1.
    pub late_ratio: f64,
    pub seed: u64,
}

impl Default for BankOptions {
    fn default() -> Self {
        BankOptions {
            topic_prefix: "bank".into(),
            customers: 200,
            late_ratio: 0.01,
            seed: 42,
        }
    }
}

#[derive(Debug, Clone)]
struct Customer {
    name: String,
    email: String,
    city: &'static str,
    tier: &'static str,
    status: &'static str,
    updated_at: i64,
}

#[derive(Debug, Clone)]
struct Account {
    customer_id: i64,
    currency: &'static str,
    balance_cents: i128,
    status: &'static str,
    opened_at: i64,
}

const FIRST: &[&str] = &[
    "Ana", "Bruno", "Carla", "Diogo", "Eva", "Filipe", "Greta", "Hugo", "Inês", "João", "Klara",
    "Luís", "Marta", "Nuno", "Olga", "Pedro", "Rita", "Sofia", "Tomás", "Vera",
];
const LAST: &[&str] = &[
    "Almeida", "Braga", "Costa", "Dias", "Esteves", "Ferreira", "Gomes", "Lopes", "Martins",
    "Nunes", "Pereira", "Silva", "Sousa", "Teixeira",
];
const CITIES: &[&str] = &[
    "Lisbon",
    "Porto",
    "Madrid",
    "Paris",
    "Berlin",
    "Rome",
    "Amsterdam",
];
const TIERS: &[&str] = &["standard", "silver", "gold", "platinum"];
const CURRENCIES: &[&str] = &["EUR", "EUR", "EUR", "USD", "GBP"];
const KINDS: &[&str] = &["card", "transfer", "atm", "direct_debit"];

const INITIAL_LSN: i64 = 0x0100_0000;
const INITIAL_TX_ID: i64 = 700;

/// The generator: call [`Bank::next_batch`] for the snapshot, then one source transaction at a
/// time.
#[derive(Debug)]
pub struct Bank {
    opts: BankOptions,
    rng: StdRng,
    schemas: BTreeMap<Table, Schema>,
    key_schema: Arc<StructSchema>,
    customers: BTreeMap<i64, Customer>,
    /// Customers who left and may come back.
    left: Vec<i64>,
    accounts: BTreeMap<i64, Account>,
    next_customer: i64,
    next_account: i64,
    next_transaction: i64,
    lsn: i64,
    last_commit_lsn: i64,
    tx_id: i64,
    snapshot_done: bool,
    step: u64,
    /// Late events and the step after which they are released.
    held: VecDeque<(u64, Emitted)>,
}

fn field(
    name: &str,
    kind: Kind,
    optional: bool,
    logical: Logical,
    type_name: Option<&str>,
) -> Field {
    Field {
        name: name.into(),
        schema: Schema {
            kind,
            optional,
            logical,
            name: type_name.map(str::to_owned),
        },
    }
}

fn zoned(name: &str) -> Field {
    field(
        name,
        Kind::String,
        false,
        Logical::ZonedTimestamp,
        Some("io.debezium.time.ZonedTimestamp"),
    )
}

fn money(name: &str) -> Field {
    field(
        name,
        Kind::Bytes,
        false,
        Logical::Decimal {
            scale: 2,
            precision: Some(14),
        },
        Some("org.apache.kafka.connect.data.Decimal"),
    )
}

fn text(name: &str) -> Field {
    field(name, Kind::String, false, Logical::None, None)
}

fn int64(name: &str) -> Field {
    field(name, Kind::Int64, false, Logical::None, None)
}

fn struct_schema(name: String, fields: Vec<Field>) -> Schema {
    Schema {
        kind: Kind::Struct(Arc::new(StructSchema::new(Some(name.clone()), fields))),
        // Row images are optional in the envelope (`before` of a create is null).
        optional: true,
        logical: Logical::None,
        name: Some(name),
    }
}

/// The value (row) schema of a table as Debezium names it.
pub fn row_schema(prefix: &str, table: Table) -> Schema {
    let fields = match table {
        Table::Customers => vec![
            int64("id"),
            text("name"),
            text("email"),
            text("city"),
            text("tier"),
            text("status"),
            zoned("updated_at"),
        ],
        Table::Accounts => vec![
            int64("id"),
            int64("customer_id"),
            text("currency"),
            money("balance"),
            text("status"),
            zoned("opened_at"),
        ],
        Table::Transactions => vec![
            int64("id"),
            int64("account_id"),
            money("amount"),
            text("kind"),
            zoned("created_at"),
        ],
    };
    struct_schema(format!("{prefix}.public.{}.Value", table.name()), fields)
}

/// The key schema (`id`) of a table.
pub fn key_schema(prefix: &str, table: Table) -> Schema {
    let mut s = struct_schema(
        format!("{prefix}.public.{}.Key", table.name()),
        vec![int64("id")],
    );
    s.optional = false;
    s
}

fn ts(ms: i64) -> Value {
    Value::Timestamp(Timestamp::from_epoch(ms, TimeUnit::Millis))
}

impl Bank {
    pub fn new(opts: BankOptions) -> Bank {
        let schemas = Table::ALL
            .iter()
            .map(|t| (*t, row_schema(&opts.topic_prefix, *t)))
            .collect();
        let key_schema = key_schema(&opts.topic_prefix, Table::Customers)
            .as_struct()
            .expect("a struct")
            .clone();
        Bank {
            rng: StdRng::seed_from_u64(opts.seed),
            schemas,
            key_schema,
            customers: BTreeMap::new(),
            left: Vec::new(),
            accounts: BTreeMap::new(),
            next_customer: 1,
            next_account: 1,
            next_transaction: 1,
            lsn: INITIAL_LSN,
            last_commit_lsn: 0,
            tx_id: INITIAL_TX_ID,
            snapshot_done: false,
            step: 0,
            held: VecDeque::new(),
            opts,
        }
    }

    pub fn options(&self) -> &BankOptions {
        &self.opts
    }

    /// Continues after a stream of which each table's topic already holds `records` records
    /// (Kafka offsets count every record ever written, whatever retention removed): ids start
    /// above any id those records can hold and positions above any LSN they can carry, so a
    /// second `generate` on the same topics never lands as redeliveries or late changes. Call it
    /// before the first batch.
    pub fn start_after(&mut self, records: &BTreeMap<Table, i64>) {
        let n = |t| records.get(&t).copied().unwrap_or(0).max(0);
        let total: i64 = Table::ALL.iter().map(|t| n(*t)).sum();
        // Each table's records create at most one id each.
        self.next_customer = n(Table::Customers) + 1;
        self.next_account = n(Table::Accounts) + 1;
        self.next_transaction = n(Table::Transactions) + 1;
        // A record moves the LSN by one event and at most one commit (56 bytes each); twice that
        // leaves room for steps that emitted nothing.
        self.lsn = INITIAL_LSN + 224 * (total + 1);
        self.tx_id = INITIAL_TX_ID + total + 1;
    }

    /// The first ids and LSN this generator uses: `(customer, account, transaction, lsn)`.
    pub fn starts(&self) -> (i64, i64, i64, i64) {
        (
            self.next_customer,
            self.next_account,
            self.next_transaction,
            self.lsn,
        )
    }

    /// `<prefix>.public.<table>`.
    pub fn topic(&self, table: Table) -> String {
        format!("{}.public.{}", self.opts.topic_prefix, table.name())
    }

    pub fn row_schema(&self, table: Table) -> &Schema {
        &self.schemas[&table]
    }

    /// The key row of `id` (every table is keyed by `id`).
    pub fn key_row(&self, id: i64) -> Row {
        Row::Typed(TypedRow {
            schema: self.key_schema.clone(),
            values: vec![Value::Int(id)],
        })
    }

    /// The next records: the whole snapshot first, then one source transaction (plus any late
    /// record now due). `now_ms` is the source commit time.
    pub fn next_batch(&mut self, now_ms: i64) -> Vec<Emitted> {
        if !self.snapshot_done {
            self.snapshot_done = true;
            return self.snapshot(now_ms);
        }
        self.step += 1;
        let mut out = Vec::new();
        self.transaction(now_ms, &mut out);
        while self.held.front().is_some_and(|(due, _)| *due <= self.step) {
            out.extend(self.held.pop_front().map(|(_, e)| e));
        }
        out
    }

    /// Late records not yet released (the end of a bounded run releases them).
    pub fn drain_late(&mut self) -> Vec<Emitted> {
        self.held.drain(..).map(|(_, e)| e).collect()
    }

    fn snapshot(&mut self, now_ms: i64) -> Vec<Emitted> {
        let n = self.opts.customers.max(1);
        let mut out = Vec::new();
        for _ in 0..n {
            let (id, c) = self.new_customer(now_ms - 86_400_000);
            self.customers.insert(id, c);
        }
        let ids: Vec<i64> = self.customers.keys().copied().collect();
        for (i, cid) in ids.iter().enumerate() {
            let accounts = if i % 2 == 0 { 2 } else { 1 };
            for _ in 0..accounts {
                let (id, a) = self.new_account(*cid, now_ms - 86_400_000);
                self.accounts.insert(id, a);
            }
        }
        // Debezium's snapshot: every record at one LSN, no commit LSN, `snapshot` first … last.
        let total = self.customers.len() + self.accounts.len();
        let mut i = 0;
        let snap = |i: usize| match i {
            0 => Snapshot::First,
            x if x + 1 == total => Snapshot::Last,
            _ => Snapshot::True,
        };
        for (id, c) in self.customers.clone() {
            let after = self.customer_row(id, &c);
            let e = self.event(
                Table::Customers,
                Op::Read,
                None,
                Some(after),
                now_ms,
                Some(snap(i)),
            );
            out.push(Emitted {
                table: Table::Customers,
                id,
                event: Some(e),
            });
            i += 1;
        }
        for (id, a) in self.accounts.clone() {
            let after = self.account_row(id, &a);
            let e = self.event(
                Table::Accounts,
                Op::Read,
                None,
                Some(after),
                now_ms,
                Some(snap(i)),
            );
            out.push(Emitted {
                table: Table::Accounts,
                id,
                event: Some(e),
            });
            i += 1;
        }
        self.commit();
        out
    }

    fn new_customer(&mut self, now_ms: i64) -> (i64, Customer) {
        let id = self.next_customer;
        self.next_customer += 1;
        (id, self.customer_values(id, now_ms))
    }

    fn customer_values(&mut self, id: i64, now_ms: i64) -> Customer {
        let first = FIRST[self.rng.random_range(0..FIRST.len())];
        let last = LAST[self.rng.random_range(0..LAST.len())];
        Customer {
            name: format!("{first} {last}"),
            email: format!(
                "{}.{}{id}@example.com",
                first.to_lowercase(),
                last.to_lowercase()
            ),
            city: CITIES[self.rng.random_range(0..CITIES.len())],
            tier: TIERS[self.rng.random_range(0..2)],
            status: "active",
            updated_at: now_ms,
        }
    }

    fn new_account(&mut self, customer_id: i64, now_ms: i64) -> (i64, Account) {
        let id = self.next_account;
        self.next_account += 1;
        let a = Account {
            customer_id,
            currency: CURRENCIES[self.rng.random_range(0..CURRENCIES.len())],
            balance_cents: i128::from(self.rng.random_range(0..500_000_i64)),
            status: "open",
            opened_at: now_ms,
        };
        (id, a)
    }

    fn customer_row(&self, id: i64, c: &Customer) -> Row {
        self.row(
            Table::Customers,
            vec![
                Value::Int(id),
                Value::String(c.name.clone()),
                Value::String(c.email.clone()),
                Value::String(c.city.into()),
                Value::String(c.tier.into()),
                Value::String(c.status.into()),
                ts(c.updated_at),
            ],
        )
    }

    fn account_row(&self, id: i64, a: &Account) -> Row {
        self.row(
            Table::Accounts,
            vec![
                Value::Int(id),
                Value::Int(a.customer_id),
                Value::String(a.currency.into()),
                decimal(a.balance_cents, 2),
                Value::String(a.status.into()),
                ts(a.opened_at),
            ],
        )
    }

    fn row(&self, table: Table, values: Vec<Value>) -> Row {
        Row::Typed(TypedRow {
            schema: self.schemas[&table].as_struct().expect("a struct").clone(),
            values,
        })
    }

    /// A change event at the next LSN of the current source transaction.
    fn event(
        &mut self,
        table: Table,
        op: Op,
        before: Option<Row>,
        after: Option<Row>,
        now_ms: i64,
        snapshot: Option<Snapshot>,
    ) -> ChangeEvent {
        let in_snapshot = snapshot.is_some();
        if !in_snapshot {
            self.lsn += 56;
        }
        // Like Debezium: no last commit LSN for snapshot reads and the first streamed transaction.
        let commit = if in_snapshot || self.last_commit_lsn == 0 {
            "null".to_owned()
        } else {
            format!("\"{}\"", self.last_commit_lsn)
        };
        ChangeEvent {
            op,
            key: None,
            before,
            after,
            source: Source {
                version: Some("3.1.0.Final".into()),
                connector: Some("postgresql".into()),
                name: Some(self.opts.topic_prefix.clone()),
                ts_ms: Some(now_ms),
                snapshot: Some(snapshot.unwrap_or(Snapshot::False)),
                db: Some("bank".into()),
                sequence: Some(format!("[{commit},\"{}\"]", self.lsn)),
                schema: Some("public".into()),
                table: Some(table.name().into()),
                tx_id: Some(self.tx_id),
                lsn: Some(self.lsn),
                ..Default::default()
            },
            ts_ms: Some(now_ms + 3),
            ts_us: None,
            ts_ns: None,
            transaction: None,
            kafka: KafkaCoords {
                topic: self.topic(table),
                partition: 0,
                offset: 0,
                timestamp_ms: None,
            },
            schema: None,
        }
    }

    /// Ends the current source transaction.
    fn commit(&mut self) {
        self.lsn += 56;
        self.last_commit_lsn = self.lsn;
        self.tx_id += 1;
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> Option<T> {
        (!items.is_empty()).then(|| items[self.rng.random_range(0..items.len())])
    }

    fn random_customer(&mut self) -> Option<i64> {
        let n = self.customers.len();
        if n == 0 {
            return None;
        }
        let i = self.rng.random_range(0..n);
        self.customers.keys().nth(i).copied()
    }

    fn random_open_account(&mut self) -> Option<i64> {
        // A few tries: most accounts are open.
        for _ in 0..8 {
            let n = self.accounts.len();
            if n == 0 {
                return None;
            }
            let i = self.rng.random_range(0..n);
            let (id, a) = self.accounts.iter().nth(i).expect("in range");
            if a.status == "open" {
                return Some(*id);
            }
        }
        None
    }

    /// One source transaction.
    fn transaction(&mut self, now_ms: i64, out: &mut Vec<Emitted>) {
        let roll = self.rng.random_range(0..100);
        match roll {
            0..71 => self.payment(now_ms, out),
            71..79 => self.update_customer(now_ms, out, |c, city, _| c.city = city),
            79..84 => self.update_customer(now_ms, out, |c, _, tier| c.tier = tier),
            // Only the ignored column: no new version.
            84..88 => self.update_customer(now_ms, out, |_, _, _| {}),
            88..91 => self.update_customer(now_ms, out, |c, _, _| {
                c.status = if c.status == "active" {
                    "suspended"
                } else {
                    "active"
                }
            }),
            91..94 => self.flip_account(now_ms, out),
            94..97 => self.join(now_ms, out),
            97..98 => self.leave(now_ms, out),
            98 => self.come_back(now_ms, out),
            _ => self.join(now_ms, out),
        }
        self.commit();
    }

    fn payment(&mut self, now_ms: i64, out: &mut Vec<Emitted>) {
        let Some(account) = self.random_open_account() else {
            return self.join(now_ms, out);
        };
        let cents = match i128::from(self.rng.random_range(-20_000_i64..20_000)) {
            0 => 100,
            c => c,
        };
        let kind = self.pick(KINDS).expect("kinds");
        let id = self.next_transaction;
        self.next_transaction += 1;
        let after = self.row(
            Table::Transactions,
            vec![
                Value::Int(id),
                Value::Int(account),
                decimal(cents, 2),
                Value::String(kind.into()),
                ts(now_ms),
            ],
        );
        let e = self.event(
            Table::Transactions,
            Op::Create,
            None,
            Some(after),
            now_ms,
            None,
        );
        out.push(Emitted {
            table: Table::Transactions,
            id,
            event: Some(e),
        });
        let old = self.accounts[&account].clone();
        let mut new = old.clone();
        new.balance_cents += cents;
        self.update_account(account, old, new, now_ms, out);
    }

    fn update_account(
        &mut self,
        id: i64,
        old: Account,
        new: Account,
        now_ms: i64,
        out: &mut Vec<Emitted>,
    ) {
        let before = self.account_row(id, &old);
        let after = self.account_row(id, &new);
        self.accounts.insert(id, new);
        let e = self.event(
            Table::Accounts,
            Op::Update,
            Some(before),
            Some(after),
            now_ms,
            None,
        );
        self.emit_maybe_late(
            Emitted {
                table: Table::Accounts,
                id,
                event: Some(e),
            },
            out,
        );
    }

    fn update_customer(
        &mut self,
        now_ms: i64,
        out: &mut Vec<Emitted>,
        change: impl FnOnce(&mut Customer, &'static str, &'static str),
    ) {
        let Some(id) = self.random_customer() else {
            return self.join(now_ms, out);
        };
        let city = self.pick(CITIES).expect("cities");
        let tier = self.pick(TIERS).expect("tiers");
        let old = self.customers[&id].clone();
        let mut new = old.clone();
        change(&mut new, city, tier);
        new.updated_at = now_ms;
        let before = self.customer_row(id, &old);
        let after = self.customer_row(id, &new);
        self.customers.insert(id, new);
        let e = self.event(
            Table::Customers,
            Op::Update,
            Some(before),
            Some(after),
            now_ms,
            None,
        );
        self.emit_maybe_late(
            Emitted {
                table: Table::Customers,
                id,
                event: Some(e),
            },
            out,
        );
    }

    fn flip_account(&mut self, now_ms: i64, out: &mut Vec<Emitted>) {
        let n = self.accounts.len();
        if n == 0 {
            return self.join(now_ms, out);
        }
        let i = self.rng.random_range(0..n);
        let (id, old) = self
            .accounts
            .iter()
            .nth(i)
            .map(|(k, v)| (*k, v.clone()))
            .expect("in range");
        let mut new = old.clone();
        new.status = if old.status == "open" {
            "frozen"
        } else {
            "open"
        };
        self.update_account(id, old, new, now_ms, out);
    }

    /// A new customer opens an account.
    fn join(&mut self, now_ms: i64, out: &mut Vec<Emitted>) {
        let (id, c) = self.new_customer(now_ms);
        self.insert_customer(id, c, now_ms, out);
    }

    fn insert_customer(&mut self, id: i64, c: Customer, now_ms: i64, out: &mut Vec<Emitted>) {
        let after = self.customer_row(id, &c);
        self.customers.insert(id, c);
        let e = self.event(
            Table::Customers,
            Op::Create,
            None,
            Some(after),
            now_ms,
            None,
        );
        out.push(Emitted {
            table: Table::Customers,
            id,
            event: Some(e),
        });
        let (aid, a) = self.new_account(id, now_ms);
        let after = self.account_row(aid, &a);
        self.accounts.insert(aid, a);
        let e = self.event(Table::Accounts, Op::Create, None, Some(after), now_ms, None);
        out.push(Emitted {
            table: Table::Accounts,
            id: aid,
            event: Some(e),
        });
    }

    /// A customer leaves: their accounts, then the customer, are deleted (each followed by its
    /// tombstone, as Debezium does with `tombstones.on.delete`).
    fn leave(&mut self, now_ms: i64, out: &mut Vec<Emitted>) {
        if self.customers.len() <= self.opts.customers / 2 {
            return self.join(now_ms, out);
        }
        let Some(id) = self.random_customer() else {
            return;
        };
        let owned: Vec<i64> = self
            .accounts
            .iter()
            .filter(|(_, a)| a.customer_id == id)
            .map(|(k, _)| *k)
            .collect();
        for aid in owned {
            let a = self.accounts.remove(&aid).expect("owned");
            let before = self.account_row(aid, &a);
            let e = self.event(
                Table::Accounts,
                Op::Delete,
                Some(before),
                None,
                now_ms,
                None,
            );
            out.push(Emitted {
                table: Table::Accounts,
                id: aid,
                event: Some(e),
            });
            out.push(Emitted {
                table: Table::Accounts,
                id: aid,
                event: None,
            });
        }
        let c = self.customers.remove(&id).expect("picked");
        let before = self.customer_row(id, &c);
        let e = self.event(
            Table::Customers,
            Op::Delete,
            Some(before),
            None,
            now_ms,
            None,
        );
        out.push(Emitted {
            table: Table::Customers,
            id,
            event: Some(e),
        });
        out.push(Emitted {
            table: Table::Customers,
            id,
            event: None,
        });
        self.left.push(id);
    }

    /// A customer who left comes back under the same id.
    fn come_back(&mut self, now_ms: i64, out: &mut Vec<Emitted>) {
        if self.left.is_empty() {
            return self.join(now_ms, out);
        }
        let i = self.rng.random_range(0..self.left.len());
        let id = self.left.swap_remove(i);
        let mut c = self.customer_values(id, now_ms);
        c.tier = "standard";
        self.insert_customer(id, c, now_ms, out);
    }

    fn emit_maybe_late(&mut self, e: Emitted, out: &mut Vec<Emitted>) {
        if self.rng.random_bool(self.opts.late_ratio.clamp(0.0, 1.0)) {
            let due = self.step + self.rng.random_range(20..200);
            // Keep the queue ordered by due step.
            let at = self.held.partition_point(|(d, _)| *d <= due);
            self.held.insert(at, (due, e));
        } else {
            out.push(e);
        }
    }
}
