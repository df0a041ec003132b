//! SQL plumbing: names and quoting, the two backends, the column registry, the ledger and the
//! table claims.

pub mod claims;
pub mod conn;
pub mod ledger;
pub mod names;
pub mod schema;
