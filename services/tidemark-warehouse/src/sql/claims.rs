//! Which topic each warehouse table is merged from, and under which role
//! ([`TableSpec::role`]): `tidemark.tables`, written with a table's first batch and checked in
//! every batch's transaction. It is what keeps history straight when configs disagree: two topics
//! whose tables share a name, two mergers that configure one topic differently (or one as an
//! unconfigured silver table), a config changed under a table that was already merged.

use super::conn::Tx;
use super::names::Target;
use crate::cell::Cell;
use crate::spec::TableSpec;
use crate::stop::{StopKind, StopReason};

/// Why a batch of `spec` may not be applied here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Another role (a configured one) holds the topic and this merger merges it only because
    /// it merges unconfigured topics: not ours, skip quietly.
    NotOurs,
    /// The table was merged as an unconfigured (silver only) table and is now configured: its
    /// tables are rebuilt from bronze under the configured role.
    TakeOver { held: String },
    /// The table stops, with what to do.
    Stop(StopReason),
}

/// Creates the claims table.
pub async fn bootstrap(tx: &mut Tx, target: &Target) -> Result<(), sqlx::Error> {
    tx.exec(
        &format!(
            "CREATE TABLE IF NOT EXISTS {} (tbl TEXT NOT NULL PRIMARY KEY, topic TEXT NOT NULL, \
             role TEXT NOT NULL, claimed_at TEXT NOT NULL)",
            target.claims()
        ),
        &[],
    )
    .await?;
    Ok(())
}

/// Every claim: warehouse table → (topic, role).
pub async fn read(
    pool: &super::conn::Pool,
    target: &Target,
) -> Result<std::collections::BTreeMap<String, (String, String)>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let rows = tx
        .fetch(
            &format!("SELECT tbl, topic, role FROM {}", target.claims()),
            &[],
        )
        .await?;
    tx.rollback().await?;
    Ok(rows
        .into_iter()
        .filter_map(|r| Some((r[0].clone()?, (r[1].clone()?, r[2].clone()?))))
        .collect())
}

/// Claims `spec`'s table for its topic and role, or says why not.
pub async fn hold(
    tx: &mut Tx,
    target: &Target,
    spec: &TableSpec,
    related: &[String],
) -> Result<Result<(), Refusal>, sqlx::Error> {
    let (p1, p2, p3, p4) = (tx.param(1), tx.param(2), tx.param(3), tx.param(4));
    let role = spec.role();
    tx.exec(
        &format!(
            "INSERT INTO {} (tbl, topic, role, claimed_at) VALUES ({p1}, {p2}, {p3}, {p4}) \
             ON CONFLICT (tbl) DO NOTHING",
            target.claims()
        ),
        &[
            Cell::Text(spec.name.clone()),
            Cell::Text(spec.topic.clone()),
            Cell::Text(role.clone()),
            Cell::Text(chrono::Utc::now().to_rfc3339()),
        ],
    )
    .await?;
    // The rows stay locked until the batch commits: batches of one table (and of a fact and the
    // dimensions it writes inferred members to) take turns, in one lock order, across mergers,
    // and a takeover waits for a batch under way.
    let lock = match tx.backend() {
        tidemark_core::mapping::Backend::Postgres => " FOR UPDATE",
        tidemark_core::mapping::Backend::Sqlite => "",
    };
    let mut names: Vec<String> = related.to_vec();
    names.push(spec.name.clone());
    names.sort();
    names.dedup();
    let params: Vec<String> = (1..=names.len()).map(|i| tx.param(i)).collect();
    let rows = tx
        .fetch(
            &format!(
                "SELECT tbl, topic, role FROM {} WHERE tbl IN ({}) ORDER BY tbl{lock}",
                target.claims(),
                params.join(", ")
            ),
            &names.into_iter().map(Cell::Text).collect::<Vec<_>>(),
        )
        .await?;
    let (topic, held) = rows
        .into_iter()
        .find(|r| r[0].as_deref() == Some(spec.name.as_str()))
        .and_then(|r| Some((r[1].clone()?, r[2].clone()?)))
        .unwrap_or_default();
    Ok(judge(spec, &role, &topic, &held))
}

/// The decision of [`hold`], given the stored claim (pure, for tests).
pub fn judge(spec: &TableSpec, role: &str, topic: &str, held: &str) -> Result<(), Refusal> {
    if topic != spec.topic {
        return Err(Refusal::Stop(StopReason::new(
            StopKind::Claim,
            format!(
                "its warehouse name {:?} is already taken by topic {topic}; give one of them its \
                 own name with [[tables]] source = \"{}\", name = \"…\"",
                spec.name, spec.topic
            ),
        )));
    }
    if held == role {
        return Ok(());
    }
    if !spec.configured {
        return Err(Refusal::NotOurs);
    }
    if held == crate::spec::UNCONFIGURED_ROLE {
        return Err(Refusal::TakeOver {
            held: held.to_owned(),
        });
    }
    Err(Refusal::Stop(StopReason::new(
        StopKind::Claim,
        format!(
            "topic {topic} was merged as {held}, but this config merges it as {role}; merging on would \
         bend its history. If another merger merges it, configure it in one of them only; if the \
         config changed, rebuild the table under the new one: `tidemark replay --in-place --tables {topic}` \
         (or side by side with --target-suffix)"
        ),
    )))
}

/// Records `spec`'s role as the holder of its table (after a takeover).
pub async fn set_role(tx: &mut Tx, target: &Target, spec: &TableSpec) -> Result<(), sqlx::Error> {
    let (p1, p2) = (tx.param(1), tx.param(2));
    tx.exec(
        &format!(
            "UPDATE {} SET role = {p1} WHERE tbl = {p2}",
            target.claims()
        ),
        &[Cell::Text(spec.role()), Cell::Text(spec.name.clone())],
    )
    .await?;
    Ok(())
}

/// Forgets the claim of a table (before a replay rebuilds it).
pub async fn release(tx: &mut Tx, target: &Target, table: &str) -> Result<(), sqlx::Error> {
    let p1 = tx.param(1);
    tx.exec(
        &format!("DELETE FROM {} WHERE tbl = {p1}", target.claims()),
        &[Cell::Text(table.to_owned())],
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use tidemark_core::config::Config;

    use super::*;

    fn spec(toml: &str, topic: &str) -> TableSpec {
        let config = Config::from_toml_and_env(toml, std::iter::empty()).unwrap();
        TableSpec::for_topic(&config, topic)
    }

    #[test]
    fn roles_decide_who_merges_a_table() {
        let dim = spec(
            "[[tables]]\nsource = \"a.b.c\"\nkind = \"dimension\"\nkey = [\"id\"]",
            "a.b.c",
        );
        let plain = spec("", "a.b.c");
        let judge_as =
            |s: &TableSpec, topic: &str, held: &TableSpec| judge(s, &s.role(), topic, &held.role());
        assert_eq!(judge_as(&dim, "a.b.c", &dim), Ok(()));
        assert_eq!(judge_as(&plain, "a.b.c", &dim), Err(Refusal::NotOurs));
        assert!(matches!(
            judge_as(&dim, "a.b.c", &plain),
            Err(Refusal::TakeOver { .. })
        ));
        let other = spec(
            "[[tables]]\nsource = \"a.b.c\"\nkind = \"dimension\"\nkey = [\"id\"]\nignore_columns = [\"x\"]",
            "a.b.c",
        );
        let Err(Refusal::Stop(why)) = judge_as(&other, "a.b.c", &dim) else {
            panic!("a changed role stops the table");
        };
        assert!(why.contains("replay"), "{why}");
        let Err(Refusal::Stop(why)) = judge_as(&plain, "x.y.c", &plain) else {
            panic!("two topics, one name");
        };
        assert!(why.contains("x.y.c") && why.contains("name ="), "{why}");
    }
}
