//! The merger: reads bronze through its commit log and applies it to a SQL warehouse as silver
//! (latest state per key) and gold (SCD2 dimensions, facts), exactly once.
//!
//! Layout:
//! - [`merger`]: the cycles. Per table: claim, read a batch, apply, fence the lease, advance the
//!   ledger, in one transaction; in atomic mode (`merger/atomic_cycle.rs`) all tables, cut at
//!   whole source transactions, in one transaction.
//! - [`bronze_fetch`] reads a table's next batch (ahead of time while the one before applies);
//!   [`bronze_read`] reads commit records and files back as [`change::Change`]s, ordered by
//!   [`change::position_key`] (MySQL through the lineage segments of [`lineage`]);
//!   [`txn_read`] and [`heartbeat_read`] read the connector's transaction and heartbeat records.
//! - Pure planning, unit-tested without a database: [`history`] (versions, late changes),
//!   [`silver`] (latest state, TOAST), [`atomic`] (the cut at source transactions),
//!   [`fact_hold`] (facts that would run ahead of their dimensions), `apply/dim_plan.rs`.
//! - [`apply`] writes silver, dimensions and facts through [`sql`]: names and quoting, the two
//!   backends and their placeholders, the ledger, the column registry, table claims, leases
//!   with fencing tokens, lineage segments.
//! - [`stop`]: why a table stopped (a kind that says where the fix lies, and the message).
//! - [`replay`] rebuilds tables from bronze; [`freshness`] tracks how far behind each table is.
//!
//! Invariants:
//! - The ledger advances in the transaction that applied the rows: nothing is applied twice or
//!   skipped, across crashes and competing mergers (its advance is conditional).
//! - Order is source commit order ([`change::position_key`]), never arrival order.
//! - A warehouse table is merged from one topic under one role ([`sql::claims`]); a claim that
//!   disagrees stops the table instead of bending its history.
//! - Data problems (a bad file, a gap in bronze, an incompatible type, a bad name) stop only
//!   their table; unreachable peers fail the cycle, which is retried.
//! - A merger applies a table group only under its lease's fencing token, checked in the
//!   transaction that advances the ledger.
//! - In atomic mode a reader sees only source commit points: a cycle includes a source
//!   transaction only once bronze holds every event its END record counts (or it timed out).

pub(crate) mod apply;
pub(crate) mod atomic;
pub(crate) mod bronze_fetch;
pub mod bronze_read;
pub(crate) mod cell;
pub(crate) mod change;
pub(crate) mod fact_hold;
pub(crate) mod freshness;
pub(crate) mod heartbeat_read;
pub(crate) mod history;
pub(crate) mod lineage;
pub mod merger;
pub mod replay;
pub(crate) mod silver;
pub(crate) mod spec;
pub mod sql;
pub mod stop;
pub mod txn_read;
