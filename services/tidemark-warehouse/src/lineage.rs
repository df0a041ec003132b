//! MySQL order across server lineages. Binlog coordinates (file, position, row) order changes
//! only within one server's binlog: after a failover (another server, its own numbering) or a
//! `RESET MASTER` they restart, and newer changes would look older. So the MySQL order key is
//! `(segment start, coordinates)`, where a *segment* is a stretch of a source's history written
//! by one lineage (a GTID server uuid, or a server id) with coordinates that only grow:
//!
//! - a lineage first seen starts a segment at its change's source time;
//! - a lineage that comes back after another one wrote (a failback) starts a new segment;
//! - coordinates that go backwards while the source time moves forward (`RESET MASTER`) start a
//!   new segment too, and are reported as a regression (logged with both positions, counted);
//! - a change older than its segment's newest source time (delivered late) stays in it;
//! - snapshot reads (server id 0, no GTID) sit in the segment of the server they were read from,
//!   at their coordinates, so a re-snapshot sorts after the history before it; a change streamed
//!   while a snapshot ran (older by time than the reads, which carry their read time, newer by
//!   coordinates) joins the snapshot's segment;
//! - a change older than every segment of its lineage, with greater coordinates, is from the era
//!   before the coordinates restarted: it starts a segment of its own, earlier.
//!
//! Segments are kept per topic, whose changes the merger reads in Kafka order (Debezium's
//! commit order per key). What it cannot untangle is a topic whose changes of one key arrive out
//! of order across the restart itself (a repartitioned topic, a replay of older bronze into the
//! same table): snapshot reads name no server, and a change of the old era seen only after the
//! new era can be taken for the new era's. Without such late deliveries across the restart it
//! does not arise.
//!
//! Segments are stored in the warehouse (`tidemark.source_segments`) so every batch and merger
//! agrees; an assignment does not move once made (a change maps to the latest segment of its own
//! lineage that started at or before its time).

use std::collections::{BTreeMap, BTreeSet};

/// A change's MySQL position, as far as ordering goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MySqlPos {
    /// Where segments are kept: the topic (each is read in its own Kafka order).
    pub source: String,
    /// GTID server uuid / MariaDB domain, `server-<id>`, or [`SNAPSHOT`].
    pub lineage: String,
    /// (binlog file number, position, row).
    pub coords: (u64, u64, u64),
    pub ts_ms: i64,
}

/// The lineage of snapshot reads (server id 0, no GTID): they join the current segment.
pub(crate) const SNAPSHOT: &str = "snapshot";

/// One stored segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    pub start_ms: i64,
    pub lineage: String,
    /// Newest coordinates and source time seen in it.
    pub max: (u64, u64, u64),
    pub max_ts_ms: i64,
}

/// A position that went backwards while the source time moved forward.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Regression {
    pub source: String,
    pub from: (String, (u64, u64, u64), i64),
    pub to: (String, (u64, u64, u64), i64),
}

impl Regression {
    /// `(lineage, coordinates, source time)` as a user reads it in a log line.
    pub fn describe(p: &(String, (u64, u64, u64), i64)) -> String {
        let (lineage, (file, pos, row), ts_ms) = p;
        format!("{lineage} binlog file {file} position {pos} row {row} (source ts_ms {ts_ms})")
    }
}

/// The segments of every source, and what changed since they were loaded.
#[derive(Debug, Clone, Default)]
pub struct Lineages {
    /// Per source, by start (unique within a source).
    segments: BTreeMap<String, Vec<Segment>>,
    /// Segments to write back: (source, start).
    dirty: BTreeSet<(String, i64)>,
    pub regressions: Vec<Regression>,
}

/// What [`Lineages::assign`] decided.
enum Act {
    Open(Option<(String, (u64, u64, u64), i64)>),
    Grow(usize),
    Late(i64),
}

impl Lineages {
    pub fn from_segments(rows: impl IntoIterator<Item = (String, Segment)>) -> Lineages {
        let mut l = Lineages::default();
        for (source, s) in rows {
            l.segments.entry(source).or_default().push(s);
        }
        for segs in l.segments.values_mut() {
            segs.sort_by_key(|s| s.start_ms);
        }
        l
    }

    /// The order key of a MySQL change, assigning it a segment.
    pub fn key(&mut self, p: &MySqlPos) -> String {
        let start = self.assign(p);
        let (f, pos, row) = p.coords;
        format!("my:{:016x}:{f:016x}:{pos:016x}:{row:08x}", start.max(0))
    }

    /// Segments changed since the last call, to store.
    pub fn take_dirty(&mut self) -> Vec<(String, Segment)> {
        let out = self
            .dirty
            .iter()
            .filter_map(|(src, start)| {
                let s = self
                    .segments
                    .get(src)?
                    .iter()
                    .find(|s| s.start_ms == *start)?;
                Some((src.clone(), s.clone()))
            })
            .collect();
        self.dirty.clear();
        out
    }

    fn decide(&self, p: &MySqlPos) -> Act {
        let segs = self.segments.get(&p.source).map_or(&[][..], Vec::as_slice);
        let compatible =
            |s: &Segment| s.lineage == p.lineage || s.lineage == SNAPSHOT || p.lineage == SNAPSHOT;
        // The latest segment of this lineage that started at or before the change.
        let Some(i) = segs
            .iter()
            .rposition(|s| compatible(s) && s.start_ms <= p.ts_ms)
            .or_else(|| segs.iter().position(compatible))
        else {
            return Act::Open(None);
        };
        let s = &segs[i];
        if p.ts_ms < s.start_ms {
            // Older than every segment of its lineage. Snapshot reads carry the time they were
            // read, so a change streamed while the snapshot ran can be older than the reads but
            // after them in the binlog: it joins them. Otherwise greater coordinates mean the era
            // before the coordinates restarted.
            return if s.lineage == SNAPSHOT && p.lineage != SNAPSHOT && p.coords >= s.max {
                Act::Grow(i)
            } else if p.coords > s.max {
                Act::Open(None)
            } else {
                Act::Late(s.start_ms)
            };
        }
        // Another lineage wrote after this segment, and this change is newer than all of it.
        let resumed = p.ts_ms > s.max_ts_ms
            && segs[i + 1..]
                .iter()
                .any(|later| !compatible(later) && later.start_ms <= p.ts_ms);
        if resumed {
            Act::Open(None)
        } else if p.coords >= s.max {
            Act::Grow(i)
        } else if p.ts_ms > s.max_ts_ms {
            Act::Open(Some((s.lineage.clone(), s.max, s.max_ts_ms)))
        } else {
            Act::Late(s.start_ms) // delivered late: it belongs where it was written
        }
    }

    fn assign(&mut self, p: &MySqlPos) -> i64 {
        match self.decide(p) {
            Act::Late(start) => start,
            Act::Open(regressed_from) => self.open(p, regressed_from),
            Act::Grow(i) => {
                let s = &mut self.segments.get_mut(&p.source).expect("decided on it")[i];
                s.max = p.coords;
                s.max_ts_ms = s.max_ts_ms.max(p.ts_ms);
                if s.lineage == SNAPSHOT {
                    // The server a snapshot was read from.
                    s.lineage = p.lineage.clone();
                }
                let start = s.start_ms;
                self.dirty.insert((p.source.clone(), start));
                start
            }
        }
    }

    fn open(
        &mut self,
        p: &MySqlPos,
        regressed_from: Option<(String, (u64, u64, u64), i64)>,
    ) -> i64 {
        if let Some(from) = regressed_from {
            self.regressions.push(Regression {
                source: p.source.clone(),
                from,
                to: (p.lineage.clone(), p.coords, p.ts_ms),
            });
        }
        let segs = self.segments.entry(p.source.clone()).or_default();
        let mut start = p.ts_ms;
        // Starts are unique within a source: two lineages first seen in one millisecond.
        while segs.iter().any(|s| s.start_ms == start) {
            start += 1;
        }
        segs.push(Segment {
            start_ms: start,
            lineage: p.lineage.clone(),
            max: p.coords,
            max_ts_ms: p.ts_ms,
        });
        segs.sort_by_key(|s| s.start_ms);
        self.dirty.insert((p.source.clone(), start));
        start
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(lineage: &str, file: u64, pos: u64, ts: i64) -> MySqlPos {
        MySqlPos {
            source: "db".into(),
            lineage: lineage.into(),
            coords: (file, pos, 0),
            ts_ms: ts,
        }
    }

    #[test]
    fn a_failover_to_lower_coordinates_sorts_after_the_old_primary() {
        let mut l = Lineages::default();
        let old = l.key(&at("server-1", 9, 500, 1_000));
        let new = l.key(&at("server-2", 1, 4, 2_000));
        assert!(new > old);
        // A late change of the old primary still sorts before the new one's.
        let late = l.key(&at("server-1", 9, 400, 900));
        assert!(late < old && late < new);
        let later_old = l.key(&at("server-1", 9, 600, 1_500));
        assert!(later_old < new, "written before the failover");
        assert!(l.regressions.is_empty());
    }

    #[test]
    fn reset_master_is_a_regression_and_a_new_segment() {
        let mut l = Lineages::default();
        let a = l.key(&at("server-1", 7, 900, 1_000));
        let b = l.key(&at("server-1", 1, 4, 5_000));
        assert!(b > a);
        assert_eq!(l.regressions.len(), 1);
        let c = l.key(&at("server-1", 1, 100, 5_100));
        assert!(c > b);
    }

    #[test]
    fn snapshot_reads_join_their_server_and_a_resnapshot_sorts_last() {
        let mut l = Lineages::default();
        let snap = l.key(&at(SNAPSHOT, 3, 100, 10_000));
        // Streamed during the snapshot: earlier source time than the read, later position.
        let streamed = l.key(&at("server-1", 3, 200, 9_000));
        assert!(streamed > snap);
        let resnap = l.key(&at(SNAPSHOT, 3, 900, 20_000));
        assert!(resnap > streamed);
        let after = l.key(&at("server-1", 3, 950, 20_500));
        assert!(after > resnap);
    }

    #[test]
    fn the_era_before_a_reset_delivered_after_it_sorts_first() {
        let mut l = Lineages::default();
        let after = l.key(&at("server-1", 1, 14, 2_000));
        let before = l.key(&at("server-1", 9, 1000, 1_000));
        assert!(before < after);
        let late_after = l.key(&at("server-1", 1, 10, 1_900));
        assert!(before < late_after && late_after < after);
    }

    #[test]
    fn a_failback_starts_a_new_segment() {
        let mut l = Lineages::default();
        let a1 = l.key(&at("uuid-a", 5, 100, 1_000));
        let b = l.key(&at("uuid-b", 1, 10, 2_000));
        let a2 = l.key(&at("uuid-a", 5, 200, 3_000));
        assert!(a1 < b && b < a2);
    }

    #[test]
    fn stored_segments_give_the_same_keys() {
        let mut l = Lineages::default();
        let k1 = l.key(&at("server-1", 9, 500, 1_000));
        l.key(&at("server-2", 1, 4, 2_000));
        let stored = l.take_dirty();
        let mut again = Lineages::from_segments(stored);
        assert_eq!(again.key(&at("server-1", 9, 500, 1_000)), k1);
        assert!(again.key(&at("server-2", 1, 5, 2_100)) > k1);
    }
}
