//! gc removes orphans (written, never committed) and keeps every committed file; dead letters
//! and the chain summary are read through the commit log.

use std::sync::Arc;
use std::time::Duration;

use futures::TryStreamExt;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, PutPayload};
use tidemark_bronze::admin;
use tidemark_bronze::segment::Segment;
use tidemark_bronze::writer::{BronzeWriter, Flushed};
use tidemark_core::event::RawRecord;
use tidemark_wire::decode::{Decoder, DecoderOptions};

fn segment(start: i64, n: i64) -> Segment {
    segment_at(start, start..start + n)
}

/// A segment from `start` holding the records at `offsets` (every tenth one is bad).
fn segment_at(start: i64, offsets: impl IntoIterator<Item = i64>) -> Segment {
    let mut d = Decoder::new(DecoderOptions::default(), None);
    let mut seg = Segment::new("t.public.x", 0, start);
    for o in offsets {
        let value = if o % 10 == 3 {
            b"oops".to_vec()
        } else {
            format!(r#"{{"op":"c","after":{{"id":{o}}},"source":{{"connector":"postgresql"}}}}"#)
                .into_bytes()
        };
        let rec = RawRecord {
            topic: "t.public.x",
            partition: 0,
            offset: o,
            timestamp_ms: Some(1_700_000_000_000),
            key: None,
            value: Some(&value),
        };
        match d.decode_cached(&rec) {
            Ok(x) => seg.push(x, value.len()),
            Err(e) => seg.push_dead_letter(
                tidemark_bronze::dead_letter::DeadLetter::new(&e, None, Some(&value)),
                value.len(),
            ),
        }
    }
    seg
}

async fn paths(store: &dyn ObjectStore) -> Vec<String> {
    let mut v: Vec<String> = store
        .list(None)
        .map_ok(|m| m.location.to_string())
        .try_collect()
        .await
        .unwrap();
    v.sort();
    v
}

#[tokio::test]
async fn gc_removes_only_old_orphans() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let root = Path::from("b");
    let w = BronzeWriter::new(store.clone(), root.clone(), 1);
    let Flushed::Committed(rec) = w.flush(&segment(0, 20)).await.unwrap() else {
        panic!()
    };
    // A crash between the data file and the commit record leaves an orphan.
    let orphan = Path::from(
        "b/t.public.x/dt=2023-11-14/t.public.x+0+00000000000000000020-00000000000000000039+dead.parquet",
    );
    store
        .put(&orphan, PutPayload::from_static(b"PAR1"))
        .await
        .unwrap();
    let before = paths(store.as_ref()).await;

    let young = admin::gc(store.as_ref(), &root, Duration::from_secs(3600), false)
        .await
        .unwrap();
    assert!(young.orphans.is_empty());
    assert_eq!(young.kept_young, 1);
    assert_eq!(paths(store.as_ref()).await, before);

    let dry = admin::gc(store.as_ref(), &root, Duration::ZERO, true)
        .await
        .unwrap();
    assert_eq!(dry.orphans, vec![orphan.to_string()]);
    assert_eq!(
        paths(store.as_ref()).await,
        before,
        "a dry run removes nothing"
    );

    let done = admin::gc(store.as_ref(), &root, Duration::ZERO, false)
        .await
        .unwrap();
    assert_eq!(done.orphans, vec![orphan.to_string()]);
    assert_eq!(done.referenced, 2, "the data file and the dead-letter file");
    let after = paths(store.as_ref()).await;
    assert!(!after.contains(&orphan.to_string()));
    for f in &rec.files {
        assert!(after.contains(&f.path), "committed file {} kept", f.path);
    }
}

#[tokio::test]
async fn dead_letters_and_the_chain_summary_come_from_the_commit_log() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let root = Path::from("b");
    let w = BronzeWriter::new(store.clone(), root.clone(), 1);
    w.flush(&segment(0, 20)).await.unwrap();
    w.flush(&segment(20, 20)).await.unwrap();
    let letters = admin::dead_letters(store.as_ref(), &root).await.unwrap();
    assert_eq!(
        letters.iter().map(|l| l.offset).collect::<Vec<_>>(),
        vec![3, 13, 23, 33]
    );
    assert_eq!(letters[0].value_bytes().unwrap(), b"oops");
    let s = admin::summarize(store.as_ref(), &root).await.unwrap();
    assert_eq!(s.len(), 1);
    assert_eq!(
        (
            s[0].first_offset,
            s[0].next_offset,
            s[0].commits,
            s[0].rows,
            s[0].dead_letters
        ),
        (0, 40, 2, 36, 4)
    );
    assert!(s[0].gaps.is_empty());
    assert_eq!(s[0].holes, 0);
}

/// Offsets Kafka never delivered inside a committed range (compaction, transaction markers, a
/// broker fault) are counted, not hidden.
#[tokio::test]
async fn holes_inside_committed_ranges_are_counted() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let root = Path::from("b");
    let w = BronzeWriter::new(store.clone(), root.clone(), 1);
    // Offsets 4..=6 never arrive (3 is a dead letter, which counts as received).
    let seg = segment_at(0, [0, 1, 2, 3, 7]);
    let Flushed::Committed(rec) = w.flush(&seg).await.unwrap() else {
        panic!("committed");
    };
    assert_eq!((rec.start, rec.end, rec.records, rec.holes()), (0, 7, 5, 3));
    let s = admin::summarize(store.as_ref(), &root).await.unwrap();
    assert_eq!(s[0].holes, 3);
}
