//! The merger: reads bronze through its commit log and applies it to a SQL warehouse as silver
//! (latest state per key) and gold (SCD2 dimensions, facts), exactly once.

pub mod apply;
pub mod bronze_read;
pub mod cell;
pub mod change;
pub mod history;
pub mod merger;
pub mod replay;
pub mod silver;
pub mod spec;
pub mod sql;
