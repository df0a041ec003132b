//! What the ingest loop does once a background flush has ended: pure, so the loop only carries
//! out the answer (commit the Kafka offset, forget the partition's buffer, or fail) and keeps
//! its logs and metrics apart.
//!
//! A flush of a partition the loop no longer owns (revoked, or re-assigned meanwhile) never
//! commits an offset or touches the partition's state: the new owner reads from the commit log.

/// How a flush ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ended {
    /// Its commit record was created; the range ends at `end`.
    Committed { end: i64 },
    /// Another writer committed the range first.
    Fenced,
    /// The segment's streamed file failed: its events are gone from memory.
    StreamFailed,
    /// The drain's timeout passed while the store was failing: the range will be re-read.
    Abandoned,
    /// Building or writing the files failed for good.
    Failed,
}

/// What the loop does about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum After {
    /// Commit this offset to Kafka (a hint for the next assignment; bronze's log decides).
    CommitOffset(i64),
    /// Drop what the partition buffered: it reads again from the commit log's position.
    Reread,
    /// Nothing to do beyond counting.
    Nothing,
    /// Stop ingest with the flush's error.
    Fail,
}

/// The answer for a flush that ended as `ended`; `owned`: the partition is still this loop's.
pub(crate) fn after(ended: Ended, owned: bool) -> After {
    match ended {
        Ended::Failed => After::Fail,
        Ended::Abandoned => After::Nothing,
        _ if !owned => After::Nothing,
        Ended::Committed { end } => After::CommitOffset(end + 1),
        Ended::Fenced | Ended::StreamFailed => After::Reread,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_committed_range_commits_the_offset_after_it_while_owned() {
        let c = Ended::Committed { end: 41 };
        assert_eq!(after(c, true), After::CommitOffset(42));
        assert_eq!(
            after(c, false),
            After::Nothing,
            "revoked: the new owner commits"
        );
    }

    #[test]
    fn a_fenced_or_failed_stream_rereads_only_an_owned_partition() {
        for e in [Ended::Fenced, Ended::StreamFailed] {
            assert_eq!(after(e, true), After::Reread);
            assert_eq!(after(e, false), After::Nothing);
        }
    }

    #[test]
    fn a_failed_flush_stops_ingest_whoever_owns_it() {
        assert_eq!(after(Ended::Failed, true), After::Fail);
        assert_eq!(after(Ended::Failed, false), After::Fail);
        assert_eq!(after(Ended::Abandoned, true), After::Nothing);
    }
}
