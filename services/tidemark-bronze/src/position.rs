//! Where a partition's consumption stands, and what to do with its next message: pure, so the
//! ingest loop only carries out the answer (seek, start a segment, take or skip the record).
//!
//! Bronze's commit log, not Kafka's committed offset, says where a partition resumes: on its
//! first message after assignment the loop asks the log, and seeks when Kafka positioned the
//! consumer elsewhere. Messages before the seek's target, and messages already buffered
//! (redelivered after a seek), are skipped.

/// A partition's consumption state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Position {
    /// Assigned; the commit log has not been asked yet.
    Unresolved,
    /// Seeking to the commit log's next offset: older messages are ignored.
    Seeking(i64),
    Ready,
}

/// What to do with a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// Take the record; start a new segment at this offset first when one is given.
    Take { new_segment_at: Option<i64> },
    /// Seek the consumer to this offset and start a new segment there; skip the record.
    Seek(i64),
    /// Skip the record: before the seek's target, or already buffered.
    Skip,
}

/// The step for a message at `offset` and the partition's position after it.
/// - `log_next`: for an `Unresolved` partition, the commit log's next offset (`None`: no chain
///   yet, which starts where Kafka positioned us).
/// - `buffered_next`: the offset after the partition's segment (its start when empty).
pub(crate) fn step(
    pos: Position,
    offset: i64,
    log_next: Option<i64>,
    buffered_next: i64,
) -> (Position, Step) {
    match pos {
        Position::Unresolved => match log_next {
            Some(next) if next != offset => (Position::Seeking(next), Step::Seek(next)),
            _ => (
                Position::Ready,
                Step::Take {
                    new_segment_at: Some(offset),
                },
            ),
        },
        Position::Seeking(next) if offset < next => (pos, Step::Skip),
        Position::Seeking(_) => (
            Position::Ready,
            Step::Take {
                new_segment_at: None,
            },
        ),
        Position::Ready if offset < buffered_next => (pos, Step::Skip),
        Position::Ready => (
            pos,
            Step::Take {
                new_segment_at: None,
            },
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TAKE: Step = Step::Take {
        new_segment_at: None,
    };

    #[test]
    fn a_new_partition_starts_where_kafka_or_the_commit_log_says() {
        let fresh = Step::Take {
            new_segment_at: Some(7),
        };
        assert_eq!(
            step(Position::Unresolved, 7, None, 0),
            (Position::Ready, fresh)
        );
        assert_eq!(
            step(Position::Unresolved, 7, Some(7), 0),
            (Position::Ready, fresh)
        );
        assert_eq!(
            step(Position::Unresolved, 7, Some(12), 0),
            (Position::Seeking(12), Step::Seek(12))
        );
        assert_eq!(
            step(Position::Unresolved, 20, Some(12), 0),
            (Position::Seeking(12), Step::Seek(12)),
            "Kafka ahead of bronze: seek back, nothing is skipped"
        );
    }

    #[test]
    fn a_seek_skips_what_comes_before_its_target() {
        let seeking = Position::Seeking(12);
        assert_eq!(step(seeking, 9, None, 12), (seeking, Step::Skip));
        assert_eq!(step(seeking, 12, None, 12), (Position::Ready, TAKE));
        // Offsets never delivered (compacted topics): taken from the first one that comes.
        assert_eq!(step(seeking, 14, None, 12), (Position::Ready, TAKE));
    }

    #[test]
    fn redelivered_records_are_skipped() {
        assert_eq!(
            step(Position::Ready, 4, None, 5),
            (Position::Ready, Step::Skip)
        );
        assert_eq!(step(Position::Ready, 5, None, 5), (Position::Ready, TAKE));
        assert_eq!(step(Position::Ready, 9, None, 5), (Position::Ready, TAKE));
    }
}
