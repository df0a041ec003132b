//! What the merger knows about a table: its configuration (kind, key, ignored columns,
//! references, declared types) and the names it gets in the warehouse.

use std::collections::{BTreeMap, BTreeSet};

use tidemark_core::config::{Config, TableKind};
use tidemark_core::mapping::ColType;

use crate::cell::Cell;
use crate::change::Change;

/// The [`TableSpec::role`] of a topic no `[[tables]]` entry names.
pub(crate) const UNCONFIGURED_ROLE: &str = "unconfigured (silver only)";

#[derive(Debug, Clone, PartialEq)]
pub struct TableSpec {
    pub topic: String,
    pub name: String,
    pub kind: Option<TableKind>,
    /// Configured business key; empty: the Kafka record key's columns.
    pub key: Vec<String>,
    pub ignore: BTreeSet<String>,
    /// Fact column → referenced dimension topic.
    pub references: BTreeMap<String, String>,
    pub declared: BTreeMap<String, ColType>,
    pub upsert: bool,
    /// Named by a `[[tables]]` entry (else: silver only, under the topic's last segment).
    pub configured: bool,
}

impl TableSpec {
    /// The spec of a topic: configured, or bronze and silver only under the topic's last segment.
    pub fn for_topic(config: &Config, topic: &str) -> TableSpec {
        match config.tables.iter().find(|t| t.source == topic) {
            Some(t) => TableSpec {
                topic: topic.to_owned(),
                name: t.warehouse_name().to_owned(),
                kind: t.kind,
                key: t.key.clone(),
                ignore: t.ignore_columns.iter().cloned().collect(),
                references: t.references.clone(),
                declared: t.declared_types(),
                upsert: t.upsert,
                configured: true,
            },
            None => TableSpec {
                topic: topic.to_owned(),
                name: topic.rsplit('.').next().unwrap_or(topic).to_owned(),
                kind: None,
                key: Vec::new(),
                ignore: BTreeSet::new(),
                references: BTreeMap::new(),
                declared: BTreeMap::new(),
                upsert: false,
                configured: false,
            },
        }
    }

    /// What decides the history this table's rows get (kind, key, ignored columns, upsert,
    /// references), as stable text: the merger records it with the table and stops the table
    /// when it changes, since merging on under another role would bend history (a replay
    /// rebuilds the table under the new one).
    pub fn role(&self) -> String {
        if !self.configured {
            return UNCONFIGURED_ROLE.into();
        }
        let kind = match self.kind {
            Some(TableKind::Dimension) => "dimension",
            Some(TableKind::Fact) if self.upsert => "upsert fact",
            Some(TableKind::Fact) => "fact",
            None => "table",
        };
        let mut out = kind.to_owned();
        if !self.key.is_empty() {
            out.push_str(&format!(" key [{}]", self.key.join(", ")));
        }
        if !self.ignore.is_empty() {
            let ignored: Vec<&str> = self.ignore.iter().map(String::as_str).collect();
            out.push_str(&format!(" ignoring [{}]", ignored.join(", ")));
        }
        for (col, dim) in &self.references {
            out.push_str(&format!(" {col} → {dim}"));
        }
        out
    }

    pub fn is_dimension(&self) -> bool {
        self.kind == Some(TableKind::Dimension)
    }

    pub fn is_fact(&self) -> bool {
        self.kind == Some(TableKind::Fact)
    }

    /// The key column names of a change: configured, else the record key's.
    pub fn key_names(&self, change: &Change) -> Vec<String> {
        if self.key.is_empty() {
            change.record_key.keys().cloned().collect()
        } else {
            self.key.clone()
        }
    }

    /// The key values of a change, `None` when it has no complete key.
    pub fn key_of(&self, change: &Change, names: &[String]) -> Option<Vec<Cell>> {
        if names.is_empty() {
            return None;
        }
        names
            .iter()
            .map(|n| {
                let from_key = change.record_key.get(n).filter(|c| !c.is_null());
                let from_image = || {
                    [change.after.as_ref(), change.before.as_ref()]
                        .into_iter()
                        .flatten()
                        .find_map(|i| i.values.get(n).filter(|c| !c.is_null()))
                };
                from_key.or_else(from_image).cloned()
            })
            .collect()
    }
}
