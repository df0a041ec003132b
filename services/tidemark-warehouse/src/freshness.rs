//! Freshness on a quiet source, from Debezium heartbeats.
//!
//! A heartbeat with source time `H` is sent after every change the connector emitted before
//! `H`. The warehouse holds all of a table's changes up to `H` when bronze holds them all and the
//! merger applied them. Bronze holds a partition's records at most `bronze.max_age` after ingest
//! read them, and ingest reads every partition it is assigned; so a partition whose bronze was
//! quiet (no new commit record) for longer than that bound, over a stretch that began after the
//! heartbeat landed, had nothing pending when the heartbeat was read: it had no backlog (a
//! backlog lands a commit at least every `max_age`) and nothing unflushed. Ingest that stops
//! lands no heartbeats either, so freshness then grows as it should.
//!
//! Pure: the merger gathers the times, [`complete_through`] decides.

use std::collections::BTreeMap;

/// The newest heartbeat of one connector in bronze.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Heartbeat {
    /// Source time the heartbeat carries (`ts_ms`).
    pub ts_ms: i64,
    /// When its commit record landed.
    pub landed_ms: i64,
}

/// The connector prefix of a heartbeat topic (`__debezium-heartbeat.bank` → `bank`).
pub(crate) fn connector_of<'a>(heartbeat_prefix: &str, topic: &'a str) -> Option<&'a str> {
    topic
        .strip_prefix(heartbeat_prefix)?
        .strip_prefix('.')
        .filter(|p| !p.is_empty())
}

/// The heartbeats of one connector as they were read, oldest first: the newest one only
/// helps once the quiet stretch after its landing has passed, so the earlier ones are kept
/// until then.
#[derive(Debug, Clone, Default)]
pub(crate) struct HeartbeatLog(Vec<Heartbeat>);

impl HeartbeatLog {
    pub(crate) fn push(&mut self, h: Heartbeat) {
        if self.0.last().is_none_or(|l| h.ts_ms > l.ts_ms) {
            self.0.push(h);
        }
    }

    /// The newest heartbeat that landed at or before `window_start`; older ones are dropped.
    pub(crate) fn usable(&mut self, window_start: i64) -> Option<Heartbeat> {
        let landed = self.0.partition_point(|h| h.landed_ms <= window_start);
        let usable = landed.checked_sub(1)?;
        self.0.drain(..usable);
        self.0.first().copied()
    }
}

/// The heartbeat that covers `topic` (`bank.public.accounts` is covered by connector `bank`):
/// the longest connector prefix wins.
pub(crate) fn heartbeat_for<'a>(
    topic: &str,
    heartbeats: &'a BTreeMap<String, Heartbeat>,
) -> Option<&'a Heartbeat> {
    heartbeats
        .iter()
        .filter(|(c, _)| topic.len() > c.len() && topic.starts_with(c.as_str()))
        .filter(|(c, _)| topic.as_bytes()[c.len()] == b'.')
        .max_by_key(|(c, _)| c.len())
        .map(|(_, h)| h)
}

/// The source time a table is complete through by `heartbeat`, if it is: every partition of the
/// table is merged to the end of its bronze, and each was quiet (its last commit record older
/// than `now - quiet`) over a stretch of `quiet` that began after the heartbeat landed.
/// `last_commits` holds each partition's last commit time (or when the merger started, for one
/// it has not seen commit since).
pub(crate) fn complete_through(
    heartbeat: &Heartbeat,
    merged_to_end: bool,
    last_commits: &[i64],
    now_ms: i64,
    quiet_ms: i64,
) -> Option<i64> {
    let window_start = now_ms - quiet_ms;
    let quiet = last_commits.iter().all(|c| *c < window_start);
    (merged_to_end && quiet && heartbeat.landed_ms <= window_start).then_some(heartbeat.ts_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HB: Heartbeat = Heartbeat {
        ts_ms: 10_000,
        landed_ms: 10_500,
    };

    #[test]
    fn a_quiet_merged_table_is_complete_through_the_heartbeat() {
        assert_eq!(
            complete_through(&HB, true, &[1_000, 2_000], 20_000, 6_000),
            Some(10_000)
        );
    }

    #[test]
    fn not_before_the_quiet_stretch_after_the_heartbeat_has_passed() {
        // Data read just before the heartbeat may still be unflushed.
        assert_eq!(complete_through(&HB, true, &[1_000], 15_000, 6_000), None);
    }

    #[test]
    fn a_partition_that_landed_recently_may_be_catching_up() {
        // A backlog lands a commit at least every max_age: a recent one means maybe more.
        assert_eq!(
            complete_through(&HB, true, &[1_000, 18_000], 20_000, 6_000),
            None
        );
    }

    #[test]
    fn unmerged_bronze_is_not_complete() {
        assert_eq!(complete_through(&HB, false, &[1_000], 20_000, 6_000), None);
    }

    #[test]
    fn the_log_gives_the_newest_heartbeat_whose_quiet_stretch_has_passed() {
        let mut log = HeartbeatLog::default();
        for (ts, landed) in [(1_000, 1_200), (2_000, 2_200), (3_000, 3_200)] {
            log.push(Heartbeat {
                ts_ms: ts,
                landed_ms: landed,
            });
        }
        assert_eq!(log.usable(1_000), None);
        assert_eq!(log.usable(2_500).map(|h| h.ts_ms), Some(2_000));
        assert_eq!(log.usable(2_500).map(|h| h.ts_ms), Some(2_000));
        assert_eq!(log.usable(9_000).map(|h| h.ts_ms), Some(3_000));
    }

    #[test]
    fn topics_find_their_connector() {
        assert_eq!(
            connector_of("__debezium-heartbeat", "__debezium-heartbeat.bank"),
            Some("bank")
        );
        assert_eq!(connector_of("__debezium-heartbeat", "bank.public.x"), None);
        let hbs: BTreeMap<String, Heartbeat> = [
            ("bank".to_owned(), HB),
            (
                "bank.eu".to_owned(),
                Heartbeat {
                    ts_ms: 1,
                    landed_ms: 1,
                },
            ),
        ]
        .into();
        assert_eq!(heartbeat_for("bank.public.accounts", &hbs), Some(&HB));
        assert_eq!(
            heartbeat_for("bank.eu.public.accounts", &hbs)
                .unwrap()
                .ts_ms,
            1
        );
        assert_eq!(heartbeat_for("banking.public.accounts", &hbs), None);
    }
}
