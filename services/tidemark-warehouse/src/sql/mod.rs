//! SQL plumbing: names and quoting, the two backends, the column registry and the ledger.

pub mod conn;
pub mod ledger;
pub mod names;
pub mod schema;
