//! What ingest does to hold less memory, as a pure choice over what each partition holds: the
//! loop carries it out (waits for a flush, writes a segment). Kept apart from the loop so the
//! order of relief is unit-tested like `Segment`'s rolling.

/// What one partition holds, as the choice sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Held {
    /// Bytes of its segment being buffered, if it holds any record.
    pub segment: Option<u64>,
    /// Bytes of its flush in flight, if one runs.
    pub flushing: Option<u64>,
}

/// One step towards less memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Relief<K> {
    /// Wait for this partition's flush: a flush takes more than the segment it writes until
    /// it ends, so the largest one in flight goes first.
    AwaitFlush(K),
    /// Wait for the flushes of partitions no longer assigned.
    AwaitDetached,
    /// Start writing this partition's segment (the largest).
    Flush(K),
    /// Nothing is held.
    Nothing,
}

/// The next step of relief over `parts`, with `detached` flushes of revoked partitions.
pub(crate) fn next<'a, K: Clone + 'a>(
    parts: impl Iterator<Item = (&'a K, Held)> + Clone,
    detached: bool,
) -> Relief<K> {
    if let Some(k) = largest_flush(parts.clone()) {
        return Relief::AwaitFlush(k);
    }
    if detached {
        return Relief::AwaitDetached;
    }
    parts
        .filter_map(|(k, h)| Some((k, h.segment?)))
        .max_by_key(|(_, b)| *b)
        .map_or(Relief::Nothing, |(k, _)| Relief::Flush(k.clone()))
}

/// The partition with the largest flush in flight.
pub(crate) fn largest_flush<'a, K: Clone + 'a>(
    parts: impl Iterator<Item = (&'a K, Held)>,
) -> Option<K> {
    parts
        .filter_map(|(k, h)| Some((k, h.flushing?)))
        .max_by_key(|(_, b)| *b)
        .map(|(k, _)| k.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(segment: u64, flushing: Option<u64>) -> Held {
        Held {
            segment: (segment > 0).then_some(segment),
            flushing,
        }
    }

    #[test]
    fn flushes_in_flight_are_awaited_before_segments_are_written() {
        let parts = [
            ("a", held(900, None)),
            ("b", held(10, Some(50))),
            ("c", held(0, Some(70))),
        ];
        let it = || parts.iter().map(|(k, h)| (k, *h));
        assert_eq!(next(it(), true), Relief::AwaitFlush("c"));
        let parts = [("a", held(900, None)), ("b", held(10, None))];
        let it = || parts.iter().map(|(k, h)| (k, *h));
        assert_eq!(next(it(), true), Relief::AwaitDetached);
        assert_eq!(next(it(), false), Relief::Flush("a"));
    }

    #[test]
    fn nothing_held_is_nothing_to_do() {
        let parts = [("a", held(0, None))];
        assert_eq!(
            next(parts.iter().map(|(k, h)| (k, *h)), false),
            Relief::<&str>::Nothing
        );
    }
}
