//! Leases: several merger processes on one warehouse split the table groups between them.
//!
//! A group is a dimension with the facts that reference it (they are applied in order within
//! one merger), or a table alone ([`groups`]). `tidemark.leases` says which merger holds each
//! group until when, with a fencing token that grows with every change of holder;
//! `tidemark.mergers` lists the mergers seen recently with the groups each wants (its config),
//! from which every merger computes the same assignment ([`assign`]). Every cycle a merger
//! renews what it holds, gives back what is no longer assigned to it and takes the free or
//! expired groups that are ([`Leases::settle`]). Times are the warehouse's clock.
//!
//! Fencing: a batch's transaction renews its group's lease under the token the merger acquired
//! it with, after the rows and before the ledger ([`Leases::fence`]); a merger that was paused
//! or cut off past its lease finds the token moved or the lease expired and rolls back, so it
//! never applies after losing a group. On PostgreSQL the renewal locks the lease row until
//! commit, so a takeover waits for a batch in flight instead of racing it.
//!
//! Liveness only (never correctness, which the fence and the ledger carry): a merger that died
//! on this host (its process is gone) gives its groups up at once; elsewhere they move when the
//! lease expires.

use std::collections::{BTreeMap, BTreeSet};

use tidemark_core::mapping::Backend;

use super::conn::{Pool, Tx};
use super::names::Target;
use crate::cell::Cell;
use crate::spec::TableSpec;

/// The groups of `specs` (by topic): table name → group name (the smallest table name in it).
pub fn groups(specs: &BTreeMap<String, TableSpec>) -> BTreeMap<String, String> {
    let mut parent: BTreeMap<String, String> = specs
        .values()
        .map(|s| (s.name.clone(), s.name.clone()))
        .collect();
    fn root(parent: &BTreeMap<String, String>, mut n: String) -> String {
        while parent[&n] != n {
            n = parent[&n].clone();
        }
        n
    }
    for s in specs.values() {
        for dim in s.references.values() {
            let Some(d) = specs.get(dim) else { continue };
            let (a, b) = (root(&parent, s.name.clone()), root(&parent, d.name.clone()));
            let (lo, hi) = if a < b { (a, b) } else { (b, a) };
            parent.insert(hi, lo);
        }
    }
    parent
        .keys()
        .map(|n| (n.clone(), root(&parent, n.clone())))
        .collect()
}

/// Which live merger should hold each group, from what each wants (its configured tables): a
/// group goes to the merger wanting it that has the fewest so far (ties by id), so mergers with
/// the same config split evenly and one configured alone for a table gets it. Every merger
/// computes the same answer from the same `tidemark.mergers`.
pub fn assign(live: &BTreeMap<String, BTreeSet<String>>) -> BTreeMap<String, String> {
    let groups: BTreeSet<&String> = live.values().flatten().collect();
    let mut load: BTreeMap<&String, usize> = live.keys().map(|m| (m, 0)).collect();
    let mut out = BTreeMap::new();
    for g in groups {
        let pick = live
            .iter()
            .filter(|(_, w)| w.contains(g))
            .map(|(m, _)| m)
            .min_by_key(|m| (load[m], (*m).clone()));
        if let Some(m) = pick {
            *load.get_mut(m).expect("a live merger") += 1;
            out.insert(g.clone(), m.clone());
        }
    }
    out
}

/// This process's name in `tidemark.leases`: host, process id and a random part (a restarted
/// process is a new merger). Mergers opened one after another in one process (a replay, then
/// the live merge) take over each other's leases at once.
pub(crate) fn identity() -> String {
    static ID: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    ID.get_or_init(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_else(|_| "localhost".into());
        format!("{host}/{}/{:08x}", std::process::id(), rand_part())
    })
    .clone()
}

/// The PostgreSQL `application_name` of a merger's sessions: `tidemark <pid>/<random part>` of
/// its identity (a host name could push the whole identity past the 63 bytes kept).
pub fn session_name(holder: &str) -> String {
    let tail: Vec<&str> = holder.rsplitn(3, '/').take(2).collect();
    format!(
        "tidemark {}/{}",
        tail.get(1).unwrap_or(&""),
        tail.first().unwrap_or(&"")
    )
}

fn rand_part() -> u32 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    t ^ std::process::id().rotate_left(16)
}

/// Ends the PostgreSQL sessions of a merger whose lease was taken over. The fence already keeps
/// it from committing; this frees what its open transaction holds when it cannot end it itself:
/// a paused process in the middle of a `COPY` keeps its session busy (the server waits for
/// data), so `idle_in_transaction_session_timeout` never fires and the new holder would wait on
/// its uncommitted rows forever. Needs the same role, or `pg_signal_backend`; without it, a
/// warning.
async fn end_sessions(pool: &Pool, previous: &str) {
    if pool.backend() != Backend::Postgres {
        return;
    }
    let ended = async {
        let mut tx = pool.begin().await?;
        let rows = tx
            .fetch(
                "SELECT pg_terminate_backend(pid)::text FROM pg_stat_activity \
                 WHERE application_name = $1 AND pid <> pg_backend_pid()",
                &[Cell::Text(session_name(previous))],
            )
            .await?;
        tx.commit().await?;
        Ok::<usize, sqlx::Error>(rows.len())
    };
    match ended.await {
        Ok(0) => {}
        Ok(n) => tracing::info!(
            previous,
            sessions = n,
            "ended the sessions of the merger whose lease was taken over"
        ),
        Err(e) => {
            tracing::warn!(previous, error = %e, "could not end the sessions of the merger whose lease was taken over; they end when it resumes or its connection drops")
        }
    }
}

/// Whether `holder` is a merger on this host whose process is gone.
fn died_here(holder: &str, me: &str) -> bool {
    let host = |id: &str| id.split('/').next().unwrap_or("").to_owned();
    if host(holder) != host(me) {
        return false;
    }
    let Some(pid) = holder
        .split('/')
        .nth(1)
        .and_then(|p| p.parse::<i32>().ok())
        .and_then(rustix::process::Pid::from_raw)
    else {
        return false;
    };
    matches!(
        rustix::process::test_kill_process(pid),
        Err(rustix::io::Errno::SRCH)
    )
}

/// The warehouse's clock in ms since the epoch, as SQL.
fn now_ms(backend: Backend) -> &'static str {
    match backend {
        Backend::Postgres => "(extract(epoch from clock_timestamp()) * 1000)::bigint",
        Backend::Sqlite => "CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)",
    }
}

/// Creates the lease and merger tables.
pub async fn bootstrap(tx: &mut Tx, target: &Target) -> Result<(), sqlx::Error> {
    for sql in [
        format!(
            "CREATE TABLE IF NOT EXISTS {} (grp TEXT NOT NULL PRIMARY KEY, holder TEXT NOT NULL, \
             token BIGINT NOT NULL, expires_ms BIGINT NOT NULL)",
            target.leases()
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {} (id TEXT NOT NULL PRIMARY KEY, seen_ms BIGINT NOT NULL, \
             wants TEXT NOT NULL)",
            target.mergers()
        ),
    ] {
        tx.exec(&sql, &[]).await?;
    }
    Ok(())
}

/// One merger's leases.
#[derive(Debug)]
pub struct Leases {
    me: String,
    lease_ms: i64,
    /// Held groups with the token they were acquired under.
    held: BTreeMap<String, i64>,
    /// Wanted groups other mergers merge, as last logged.
    elsewhere: usize,
}

impl Leases {
    pub fn new(lease: std::time::Duration) -> Leases {
        Leases {
            me: identity(),
            lease_ms: i64::try_from(lease.as_millis()).unwrap_or(i64::MAX),
            held: BTreeMap::new(),
            elsewhere: 0,
        }
    }

    pub fn id(&self) -> &str {
        &self.me
    }

    pub fn holds(&self, group: &str) -> bool {
        self.held.contains_key(group)
    }

    /// Forgets a group whose fence failed.
    pub fn lost(&mut self, group: &str) {
        if self.held.remove(group).is_some() {
            tracing::warn!(group, merger = %self.me, "lease lost to another merger");
        }
    }

    /// Renews, gives back and takes groups so this merger holds the groups of `wanted` (the ones
    /// its config merges) that the assignment gives it.
    pub async fn settle(
        &mut self,
        pool: &Pool,
        target: &Target,
        wanted: &BTreeSet<String>,
    ) -> Result<(), sqlx::Error> {
        let mut tx = pool.begin().await?;
        let now = now_ms(tx.backend());
        let (p1, p2) = (tx.param(1), tx.param(2));
        let wants = serde_json::to_string(wanted).unwrap_or_default();
        tx.exec(
            &format!(
                "INSERT INTO {} (id, seen_ms, wants) VALUES ({p1}, {now}, {p2}) ON CONFLICT (id) \
                 DO UPDATE SET seen_ms = excluded.seen_ms, wants = excluded.wants",
                target.mergers()
            ),
            &[Cell::Text(self.me.clone()), Cell::Text(wants)],
        )
        .await?;
        tx.exec(
            &format!(
                "DELETE FROM {} WHERE seen_ms < {now} - 10 * {p1}",
                target.mergers()
            ),
            &[Cell::Int(self.lease_ms)],
        )
        .await?;
        let live: BTreeMap<String, BTreeSet<String>> = tx
            .fetch(
                &format!(
                    "SELECT id, wants FROM {} WHERE seen_ms >= {now} - {p1}",
                    target.mergers()
                ),
                &[Cell::Int(self.lease_ms)],
            )
            .await?
            .into_iter()
            .filter_map(|r| {
                let id = r[0].clone()?;
                let wants = serde_json::from_str(r[1].as_deref()?).unwrap_or_default();
                Some((id, wants))
            })
            .filter(|(id, _)| *id == self.me || !died_here(id, &self.me))
            .chain([(self.me.clone(), wanted.clone())])
            .collect();
        let rows = tx
            .fetch(
                &format!(
                    "SELECT grp, holder, {}, CASE WHEN expires_ms < {now} THEN '1' ELSE '0' END FROM {}",
                    tx.text("token"),
                    target.leases()
                ),
                &[],
            )
            .await?;
        tx.commit().await?;
        let assigned: BTreeSet<String> = assign(&live)
            .into_iter()
            .filter(|(_, m)| *m == self.me)
            .map(|(g, _)| g)
            .collect();
        let mut free: Vec<String> = assigned.iter().cloned().collect();
        let mut mine = BTreeMap::new();
        for r in rows {
            let (Some(g), Some(holder), Some(token)) = (&r[0], &r[1], &r[2]) else {
                continue;
            };
            let expired = r[3].as_deref() == Some("1");
            let known = self
                .held
                .get(g)
                .filter(|t| token.parse::<i64>().ok() == Some(**t));
            if *holder == self.me && !expired && known.is_some() {
                mine.insert(g.clone(), *known.unwrap_or(&0));
                free.retain(|f| f != g);
            } else if *holder != self.me && !expired && !died_here(holder, &self.me) {
                free.retain(|f| f != g);
            }
        }
        self.held = mine;
        // Said when it changes, so `merge --once` that finds its tables taken says why it did
        // nothing.
        let elsewhere = wanted.len() - assigned.len();
        if elsewhere != self.elsewhere {
            self.elsewhere = elsewhere;
            tracing::info!(
                merger = %self.me,
                groups = wanted.len(),
                elsewhere,
                "table groups held by other mergers on this warehouse"
            );
        }
        self.give_back(pool, target, &assigned).await?;
        for g in free {
            self.take(pool, target, &g).await?;
        }
        self.renew(pool, target).await
    }

    /// Gives back the groups no longer assigned to this merger (another merger joined).
    async fn give_back(
        &mut self,
        pool: &Pool,
        target: &Target,
        assigned: &BTreeSet<String>,
    ) -> Result<(), sqlx::Error> {
        let extra: Vec<(String, i64)> = self
            .held
            .iter()
            .filter(|(g, _)| !assigned.contains(*g))
            .map(|(g, t)| (g.clone(), *t))
            .collect();
        for (g, token) in extra {
            self.held.remove(&g);
            let mut tx = pool.begin().await?;
            let (p1, p2, p3) = (tx.param(1), tx.param(2), tx.param(3));
            tx.exec(
                &format!(
                    "UPDATE {} SET expires_ms = 0 WHERE grp = {p1} AND holder = {p2} AND token = {p3}",
                    target.leases()
                ),
                &[
                    Cell::Text(g.clone()),
                    Cell::Text(self.me.clone()),
                    Cell::Int(token),
                ],
            )
            .await?;
            tx.commit().await?;
            tracing::info!(group = g, merger = %self.me, "lease handed back");
        }
        Ok(())
    }

    /// Takes `group` if it is free, expired or held by a merger that died here.
    async fn take(&mut self, pool: &Pool, target: &Target, group: &str) -> Result<(), sqlx::Error> {
        let mut tx = pool.begin().await?;
        let backend = tx.backend();
        if backend == Backend::Postgres {
            // A lease row locked by a batch in flight (or a paused merger's) is skipped, not
            // waited on.
            tx.exec("SET LOCAL lock_timeout = '500ms'", &[]).await?;
        }
        let now = now_ms(backend);
        let (p1, p2, p3, p4) = (tx.param(1), tx.param(2), tx.param(3), tx.param(4));
        let leases = target.leases();
        let current = tx
            .fetch(
                &format!(
                    "SELECT holder, CASE WHEN expires_ms < {now} THEN '1' ELSE '0' END, {} \
                     FROM {leases} WHERE grp = {p1}",
                    tx.text("token")
                ),
                &[Cell::Text(group.to_owned())],
            )
            .await?;
        let seen: Option<i64> = current.first().and_then(|r| r[2].as_deref()?.parse().ok());
        let takeable = match current.first() {
            None => true,
            Some(r) => {
                r[1].as_deref() == Some("1")
                    || r[0]
                        .as_deref()
                        .is_some_and(|h| h == self.me || died_here(h, &self.me))
            }
        };
        let previous = current
            .first()
            .and_then(|r| r[0].clone())
            .filter(|h| *h != self.me);
        if !takeable {
            return Ok(());
        }
        // Compare-and-set on the token seen: of two mergers taking one group at once, one wins.
        let sql = format!(
            "INSERT INTO {leases} (grp, holder, token, expires_ms) VALUES ({p1}, {p2}, 1, {now} + {p3}) \
             ON CONFLICT (grp) DO UPDATE SET holder = excluded.holder, token = {leases}.token + 1, \
             expires_ms = excluded.expires_ms WHERE {leases}.token = {p4}"
        );
        let binds = [
            Cell::Text(group.to_owned()),
            Cell::Text(self.me.clone()),
            Cell::Int(self.lease_ms),
            Cell::Int(seen.unwrap_or(-1)),
        ];
        match tx.exec(&sql, &binds).await {
            Ok(_) => {}
            Err(e) if lock_timeout(&e) => return Ok(()),
            Err(e) => return Err(e),
        }
        let want = seen.map_or(1, |t| t + 1);
        let won = !tx
            .fetch(
                &format!(
                    "SELECT grp FROM {leases} WHERE grp = {p1} AND holder = {p2} AND token = {p3}"
                ),
                &[
                    Cell::Text(group.to_owned()),
                    Cell::Text(self.me.clone()),
                    Cell::Int(want),
                ],
            )
            .await?
            .is_empty();
        tx.commit().await?;
        if won {
            tracing::info!(group, merger = %self.me, token = want, "lease taken");
            self.held.insert(group.to_owned(), want);
            if let Some(previous) = previous {
                end_sessions(pool, &previous).await;
            }
        }
        Ok(())
    }

    /// Extends every held lease in one transaction; forgets those whose token moved.
    async fn renew(&mut self, pool: &Pool, target: &Target) -> Result<(), sqlx::Error> {
        if self.held.is_empty() {
            return Ok(());
        }
        let mut tx = pool.begin().await?;
        let now = now_ms(tx.backend());
        let (p1, p2) = (tx.param(1), tx.param(2));
        let leases = target.leases();
        tx.exec(
            &format!(
                "UPDATE {leases} SET expires_ms = {now} + {p2} WHERE holder = {p1} AND expires_ms >= {now}"
            ),
            &[Cell::Text(self.me.clone()), Cell::Int(self.lease_ms)],
        )
        .await?;
        let still: BTreeSet<(String, String)> = tx
            .fetch(
                &format!(
                    "SELECT grp, {} FROM {leases} WHERE holder = {p1} AND expires_ms >= {now}",
                    tx.text("token")
                ),
                &[Cell::Text(self.me.clone())],
            )
            .await?
            .into_iter()
            .filter_map(|r| Some((r[0].clone()?, r[1].clone()?)))
            .collect();
        tx.commit().await?;
        let lost: Vec<String> = self
            .held
            .iter()
            .filter(|(g, t)| !still.contains(&((*g).clone(), t.to_string())))
            .map(|(g, _)| g.clone())
            .collect();
        for g in lost {
            self.lost(&g);
        }
        Ok(())
    }

    /// In a batch's transaction: whether this merger still holds `group` under its token
    /// (and extends the lease). On PostgreSQL the lease row stays locked until commit.
    pub async fn fence(
        &self,
        tx: &mut Tx,
        target: &Target,
        group: &str,
    ) -> Result<bool, sqlx::Error> {
        let Some(token) = self.held.get(group) else {
            return Ok(false);
        };
        let now = now_ms(tx.backend());
        let (p1, p2, p3, p4) = (tx.param(1), tx.param(2), tx.param(3), tx.param(4));
        let n = tx
            .exec(
                &format!(
                    "UPDATE {} SET expires_ms = {now} + {p4} WHERE grp = {p1} AND holder = {p2} \
                     AND token = {p3} AND expires_ms >= {now}",
                    target.leases()
                ),
                &[
                    Cell::Text(group.to_owned()),
                    Cell::Text(self.me.clone()),
                    Cell::Int(*token),
                    Cell::Int(self.lease_ms),
                ],
            )
            .await?;
        Ok(n == 1)
    }
}

fn lock_timeout(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.code().as_deref() == Some("55P03"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dimension_and_its_facts_are_one_group() {
        let config = tidemark_core::config::Config::from_toml_and_env(
            r#"
[[tables]]
source = "s.customers"
kind = "dimension"
key = ["id"]
[[tables]]
source = "s.transactions"
kind = "fact"
references = { customer_id = "s.customers" }
[[tables]]
source = "s.branches"
"#,
            std::iter::empty(),
        )
        .unwrap();
        let specs: BTreeMap<String, TableSpec> = config
            .tables
            .iter()
            .map(|t| (t.source.clone(), TableSpec::for_topic(&config, &t.source)))
            .collect();
        let g = groups(&specs);
        assert_eq!(g["transactions"], g["customers"]);
        assert_ne!(g["branches"], g["customers"]);
        let live = |ms: &[(&str, &[&str])]| -> BTreeMap<String, BTreeSet<String>> {
            ms.iter()
                .map(|(m, w)| (m.to_string(), w.iter().map(|g| g.to_string()).collect()))
                .collect()
        };
        let same = assign(&live(&[
            ("a", &["g1", "g2", "g3"]),
            ("b", &["g1", "g2", "g3"]),
        ]));
        assert_eq!(same.values().filter(|m| *m == "a").count(), 2, "{same:?}");
        assert_eq!(same.values().filter(|m| *m == "b").count(), 1, "{same:?}");
        // Split by config: each merger gets what only it wants.
        let split = assign(&live(&[("a", &["g1", "g2"]), ("b", &["g3"])]));
        assert_eq!(
            (
                split["g1"].as_str(),
                split["g2"].as_str(),
                split["g3"].as_str()
            ),
            ("a", "a", "b")
        );
    }

    #[test]
    fn a_merger_that_died_here_is_recognised() {
        let me = identity();
        assert!(!died_here(&me, &me), "this process is alive");
        let host = me.split('/').next().unwrap();
        // Pids are below 2^22 on Linux.
        assert!(died_here(&format!("{host}/4194999/0"), &me));
        assert!(
            !died_here("elsewhere/4194999/0", &me),
            "another host: wait for expiry"
        );
    }

    #[tokio::test]
    async fn a_merger_whose_lease_moved_or_expired_cannot_commit() {
        let pool = Pool::connect("sqlite::memory:", None).await.unwrap();
        let target = Target::new(Backend::Sqlite, None).unwrap();
        let mut tx = pool.begin().await.unwrap();
        bootstrap(&mut tx, &target).await.unwrap();
        tx.commit().await.unwrap();
        let mut l = Leases::new(std::time::Duration::from_millis(3_000));
        let wanted: BTreeSet<String> = ["g".to_owned()].into();
        l.settle(&pool, &target, &wanted).await.unwrap();
        assert!(l.holds("g"));
        let fence = |l: &Leases| {
            let (pool, target) = (pool.clone(), target.clone());
            let l = Leases {
                me: l.me.clone(),
                lease_ms: l.lease_ms,
                held: l.held.clone(),
                elsewhere: 0,
            };
            async move {
                let mut tx = pool.begin().await.unwrap();
                let ok = l.fence(&mut tx, &target, "g").await.unwrap();
                tx.rollback().await.unwrap();
                ok
            }
        };
        assert!(fence(&l).await);
        let mut tx = pool.begin().await.unwrap();
        let leases = target.leases();
        tx.exec(&format!("UPDATE {leases} SET expires_ms = 0"), &[])
            .await
            .unwrap();
        tx.commit().await.unwrap();
        assert!(!fence(&l).await, "expired: a paused merger");
        let mut tx = pool.begin().await.unwrap();
        tx.exec(
            &format!("UPDATE {leases} SET holder = 'elsewhere/1/0', token = token + 1, expires_ms = expires_ms + 99999999999999"),
            &[],
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
        assert!(!fence(&l).await, "taken over: the token moved");
        l.settle(&pool, &target, &wanted).await.unwrap();
        assert!(!l.holds("g"), "another merger's live lease is left alone");
    }
}
