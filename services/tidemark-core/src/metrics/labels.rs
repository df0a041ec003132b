//! The values metric labels take. Each is an enum whose `ALL` pre-creates the series (dashboards
//! and alerts see them at 0 before the first event) and whose `as_str` emits them, so the two
//! can never drift apart. Debezium ops are `crate::event::Op` (`Op::ALL`, `Op::code`).

/// An enum of label values: `ALL`, `as_str`, and `Display` as the label.
macro_rules! label_enum {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $($(#[$vdoc])* $variant),+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }

            /// The value whose label is `label`.
            pub fn parse(label: &str) -> Option<$name> {
                $name::ALL.iter().copied().find(|v| v.as_str() == label)
            }
        }

        /// A label compares equal to its text.
        impl PartialEq<&str> for $name {
            fn eq(&self, label: &&str) -> bool {
                self.as_str() == *label
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

label_enum! {
    /// Why a record became a dead letter (`reason` of `tidemark_dead_letters_total`).
    DeadLetterReason {
        InvalidJson => "invalid_json",
        BadField => "bad_field",
        BadSchema => "bad_schema",
        MissingOp => "missing_op",
        UnknownOp => "unknown_op",
        BadEnvelope => "bad_envelope",
        BadAvroWire => "bad_avro_wire",
        BadAvro => "bad_avro",
        SchemaRegistry => "schema_registry",
        DecoderPanic => "decoder_panic",
    }
}

label_enum! {
    /// What ingest failed on (`reason` of `tidemark_errors_total{component="ingest"}`).
    IngestFault {
        Kafka => "kafka",
        ObjectStore => "object_store",
        SchemaRegistry => "schema_registry",
    }
}

label_enum! {
    /// Why a merge cycle failed (`reason` of `tidemark_merge_failures_total` and of
    /// `tidemark_errors_total{component="merge"}`).
    MergeFault {
        Warehouse => "warehouse",
        Bronze => "bronze",
        LedgerConflict => "ledger_conflict",
    }
}

label_enum! {
    /// Dimension history events (`event` of `tidemark_scd2_events_total`).
    Scd2Event {
        VersionOpened => "version_opened",
        VersionUpdated => "version_updated",
        VersionRemoved => "version_removed",
        LateSpliced => "late_spliced",
        Redelivered => "redelivered",
        InferredMember => "inferred_member",
    }
}

/// Rows the merger wrote, as `(layer, action)` of `tidemark_merge_rows_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RowsWritten {
    SilverUpserted,
    DimInserted,
    DimUpdated,
    DimRemoved,
    FactInserted,
}

impl RowsWritten {
    /// `(layer, action)`.
    fn labels(self) -> (&'static str, &'static str) {
        match self {
            RowsWritten::SilverUpserted => ("silver", "upserted"),
            RowsWritten::DimInserted => ("gold_dim", "inserted"),
            RowsWritten::DimUpdated => ("gold_dim", "updated"),
            RowsWritten::DimRemoved => ("gold_dim", "removed"),
            RowsWritten::FactInserted => ("gold_fact", "inserted"),
        }
    }

    pub fn layer(self) -> &'static str {
        self.labels().0
    }

    pub fn action(self) -> &'static str {
        self.labels().1
    }
}

label_enum! {
    /// What ingest's memory gauge shows (`kind` of `tidemark_ingest_memory_bytes`).
    MemoryKind {
        Budget => "budget",
        Resident => "resident",
        Held => "held",
    }
}

label_enum! {
    /// Why a source transaction was applied incomplete (`reason` of
    /// `tidemark_source_transaction_fallbacks_total`).
    TxnFallback {
        Timeout => "timeout",
        TooLarge => "too_large",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_label_parses_back() {
        for r in DeadLetterReason::ALL {
            assert_eq!(DeadLetterReason::parse(r.as_str()), Some(*r));
        }
        assert_eq!(DeadLetterReason::parse("nope"), None);
        assert_eq!(RowsWritten::DimUpdated.layer(), "gold_dim");
        assert_eq!(RowsWritten::DimUpdated.action(), "updated");
    }
}
