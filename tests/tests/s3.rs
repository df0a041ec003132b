//! Bronze on a real S3 server (moto_server): ingest lands through object_store's S3 client with
//! conditional puts, rides out the server being stopped for 30 s (SIGSTOP: connections hang,
//! nothing answers), and ends with the same exactly-once proof.

use std::time::{Duration, Instant};

use object_store::path::Path;
use tidemark_core::config::Config;
use tidemark_e2e::kafka::Kafka;
use tidemark_e2e::moto::Moto;
use tidemark_e2e::proof::{caught_up, produced, prove};
use tidemark_e2e::stream::generate;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_to_s3_survives_a_30s_outage_exactly_once() {
    let Some(server) = Moto::start() else {
        assert!(
            std::env::var_os("TIDEMARK_REQUIRE_S3").is_none(),
            "moto_server required"
        );
        eprintln!("skipped: moto_server not installed (pip install 'moto[server]')");
        return;
    };
    let topic = "bank.public.accounts";
    let kafka = Kafka::start(&[(topic, 4)]);
    let toml = format!(
        "[kafka]\nbootstrap_servers = \"{}\"\ngroup_id = \"s3-{}\"\ntopics = [\"{topic}\"]\n[kafka.properties]\n\"session.timeout.ms\" = \"6000\"\n[bronze]\nurl = \"s3://lake/bronze\"\nmax_records = 500\nmax_age_ms = 200\n[bronze.s3]\nendpoint = \"http://127.0.0.1:{port}\"\nallow_http = true\naccess_key_id = \"test\"\nsecret_access_key = \"test\"\nrequest_timeout_ms = 2000\n",
        kafka.bootstrap(),
        uuid::Uuid::new_v4().simple(),
        port = server.port,
    );
    let cfg = Config::from_toml_and_env(&toml, Vec::new()).unwrap();
    let (store, root) = tidemark_bronze::store::open(&cfg.bronze).unwrap();
    assert_eq!(root, Path::from("bronze"));

    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let cfg2 = cfg.clone();
    let ingest = tokio::spawn(async move {
        tidemark_bronze::service::run(&cfg2, async {
            stop_rx.await.ok();
        })
        .await
    });

    let records = generate(topic, 4, 6_000, false, 7);
    let (first, rest) = records.split_at(2_000);
    let mut deliveries = kafka.produce(first).await;
    let produced_first = produced(&deliveries, first);
    let started = Instant::now();
    while !caught_up(store.as_ref(), &root, &produced_first).await {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no progress before the outage"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The outage: the server stops answering while more events arrive.
    server.signal("-STOP");
    let more = kafka.produce(rest).await;
    tokio::time::sleep(Duration::from_secs(30)).await;
    server.signal("-CONT");
    for (k, v) in more {
        deliveries
            .entry(k)
            .or_default()
            .extend(v.into_iter().map(|(o, i)| (o, i + first.len())));
    }
    let all = produced(&deliveries, &records);
    let started = Instant::now();
    while !caught_up(store.as_ref(), &root, &all).await {
        assert!(
            started.elapsed() < Duration::from_secs(180),
            "ingest did not catch up after the outage"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    stop_tx.send(()).unwrap();
    let stats = ingest.await.unwrap().unwrap();
    assert!(
        stats.flush_retries > 0,
        "the outage made flushes fail and retry: {stats:?}"
    );
    let proof = prove(store.as_ref(), &root, &all).await;
    assert_eq!(
        proof.rows + proof.dead_letters + proof.tombstones,
        records.len() as u64
    );
    eprintln!("{proof:?}");
}
