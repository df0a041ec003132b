//! SQL plumbing: names and quoting, the two backends, the column registry and the ledger.

pub mod conn;
pub mod names;
pub mod schema;
pub mod ledger;
