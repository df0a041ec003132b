//! SQL plumbing: names and quoting, the two backends, the column registry, the ledger, the
//! table claims, the leases that split tables between mergers and the MySQL lineage segments.

pub mod claims;
pub mod conn;
pub mod leases;
pub mod ledger;
pub mod names;
pub mod schema;
pub mod segments;
