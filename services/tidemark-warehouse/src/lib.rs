//! The merger: reads bronze through its commit log and applies it to a SQL warehouse as silver
//! (latest state per key) and gold (SCD2 dimensions, facts), exactly once.
//!
//! Layout: [`merger`] runs cycles (per table: claim, read a batch, apply, advance the ledger, in
//! one transaction); [`bronze_fetch`] reads a table's next batch (ahead of time while the
//! one before applies); [`bronze_read`] reads commit records and files back as [`change::Change`]s,
//! ordered by [`change::position_key`] (MySQL through the lineage segments of [`lineage`]);
//! [`apply`] writes silver, dimensions and facts;
//! [`fact_hold`] stops a fact table's batch where it would run ahead of its dimensions;
//! [`history`] and [`silver`] are the pure rules; [`sql`] holds names, the two backends, the
//! ledger, the column registry, the table claims and the lineage segments; [`replay`] rebuilds
//! tables from bronze.
//!
//! Invariants:
//! - The ledger advances in the transaction that applied the rows: nothing is applied twice or
//!   skipped, across crashes and competing mergers (its advance is conditional).
//! - Order is source commit order ([`change::position_key`]), never arrival order.
//! - A warehouse table is merged from one topic under one role ([`sql::claims`]); a claim that
//!   disagrees stops the table instead of bending its history.
//! - Data problems (a bad file, a gap in bronze, an incompatible type, a bad name) stop only
//!   their table; unreachable peers fail the cycle, which is retried.

pub mod apply;
pub mod atomic;
pub mod bronze_fetch;
pub mod bronze_read;
pub mod cell;
pub mod change;
pub mod fact_hold;
pub mod freshness;
pub mod heartbeat_read;
pub mod history;
pub mod lineage;
pub mod merger;
pub mod replay;
pub mod silver;
pub mod spec;
pub mod sql;
pub mod txn_read;
