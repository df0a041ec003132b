//! Warehouse names and quoting. Every identifier that comes from events is validated here and
//! quoted wherever it is used: no SQL is built from unquoted event text.

use tidemark_core::mapping::Backend;

/// Columns the merger adds; a source column may not use these names.
pub const SILVER_META: &[&str] = &[
    "_key",
    "_deleted",
    "_op",
    "_source_ts",
    "_source_pos",
    "_kafka_topic",
    "_kafka_partition",
    "_kafka_offset",
    "_merged_at",
    "_toast",
];
pub const DIM_META: &[&str] = &[
    "sk",
    "_key",
    "_start_pos",
    "valid_from",
    "valid_to",
    "is_current",
    "version",
    "is_deleted",
    "is_inferred",
    "row_hash",
];
pub const FACT_META: &[&str] = &[
    "_event_id",
    "_key",
    "_op",
    "_source_ts",
    "_source_pos",
    "_kafka_topic",
    "_kafka_partition",
    "_kafka_offset",
    "_merged_at",
    "_toast",
];

/// `"name"` with inner quotes doubled (the SQL standard; PostgreSQL and SQLite agree).
pub fn quote(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

/// A string literal (used only for names we generate, never for event text).
/// `col1, col2, …` quoted.
pub(crate) fn col_list<'a>(names: impl IntoIterator<Item = &'a str>) -> String {
    names.into_iter().map(quote).collect::<Vec<_>>().join(", ")
}

pub fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Why an identifier from an event cannot be a warehouse name (the rule config's table names
/// follow too).
pub(crate) fn check_identifier(name: &str) -> Result<(), String> {
    tidemark_core::ident::check_identifier(name, 0)
}

/// Where one merge target lives: the live tables, or a replay's side-by-side copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub backend: Backend,
    /// `silver_<suffix>`/`gold_<suffix>`/`tidemark_<suffix>` instead of the live names.
    pub suffix: Option<String>,
}

impl Target {
    /// `Err` holds the suffix that is not a valid one.
    pub fn new(backend: Backend, suffix: Option<String>) -> Result<Target, String> {
        if let Some(s) = &suffix
            && (s.is_empty()
                || s.len() > 20
                || !s
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'))
        {
            return Err(s.clone());
        }
        Ok(Target { backend, suffix })
    }

    fn space(&self, base: &str) -> String {
        match &self.suffix {
            Some(s) => format!("{base}_{s}"),
            None => base.to_owned(),
        }
    }

    /// A table in one of our namespaces, quoted.
    fn table(&self, space: &str, name: &str) -> String {
        let space = self.space(space);
        match self.backend {
            Backend::Postgres => format!("{}.{}", quote(&space), quote(name)),
            Backend::Sqlite => quote(&format!("{space}__{name}")),
        }
    }

    /// The schemas to create (PostgreSQL).
    pub fn schemas(&self) -> Vec<String> {
        ["silver", "gold", "tidemark"]
            .iter()
            .map(|s| self.space(s))
            .collect()
    }

    pub fn silver(&self, table: &str) -> String {
        self.table("silver", table)
    }

    pub fn dim(&self, table: &str) -> String {
        self.table("gold", &format!("dim_{table}"))
    }

    pub fn fact(&self, table: &str) -> String {
        self.table("gold", &format!("fact_{table}"))
    }

    /// The change log of a dimension (internal).
    pub fn changes(&self, table: &str) -> String {
        self.table("tidemark", &format!("changes_{table}"))
    }

    /// Where format 2 kept dimension key states (now on the change log's rows): dropped with
    /// its table.
    pub fn dim_state(&self, table: &str) -> String {
        self.table("tidemark", &format!("state_{table}"))
    }

    pub fn ledger(&self) -> String {
        self.table("tidemark", "ledger")
    }

    /// The topic and role each warehouse table is merged from (internal).
    pub fn claims(&self) -> String {
        self.table("tidemark", "tables")
    }

    /// Which merger holds each table group, with its fencing token (internal).
    pub fn leases(&self) -> String {
        self.table("tidemark", "leases")
    }

    /// The mergers seen recently, for their shares of the groups (internal).
    pub fn mergers(&self) -> String {
        self.table("tidemark", "mergers")
    }

    /// MySQL lineage segments (internal).
    pub fn segments(&self) -> String {
        self.table("tidemark", "source_segments")
    }

    /// Format stamps of the warehouse tables (internal).
    pub fn meta(&self) -> String {
        self.table("tidemark", "meta")
    }

    /// Registered columns of each warehouse table (internal).
    pub fn registry(&self) -> String {
        self.table("tidemark", "columns")
    }

    /// An index of a gold table by its [`Target::index_name`], quoted and qualified as
    /// `DROP INDEX` needs it.
    pub fn gold_index(&self, index: &str) -> String {
        match self.backend {
            Backend::Postgres => format!("{}.{}", quote(&self.space("gold")), quote(index)),
            Backend::Sqlite => quote(index),
        }
    }

    /// A name for an index on `table` (unquoted; PostgreSQL puts it in the table's schema).
    pub fn index_name(&self, table: &str, what: &str) -> String {
        let h = xxhash_rust::xxh3::xxh3_64(format!("{table}/{what}").as_bytes());
        format!("tm_{h:016x}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_names_are_quoted() {
        let t = Target::new(Backend::Postgres, None).unwrap();
        assert_eq!(t.silver("we\"ird"), "\"silver\".\"we\"\"ird\"");
        let t = Target::new(Backend::Sqlite, Some("blue".into())).unwrap();
        assert_eq!(t.dim("c"), "\"gold_blue__dim_c\"");
        assert!(Target::new(Backend::Sqlite, Some("x; drop".into())).is_err());
        assert!(check_identifier(&"x".repeat(64)).is_err());
    }
}
