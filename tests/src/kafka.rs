//! Producing to a MockCluster.

use std::collections::BTreeMap;

use rdkafka::ClientConfig;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{FutureProducer, FutureRecord};

use crate::stream::Record;

/// A running mock cluster and a producer to it.
#[allow(missing_debug_implementations)] // MockCluster has no Debug
pub struct Kafka {
    pub cluster: MockCluster<'static, rdkafka::producer::DefaultProducerContext>,
    pub producer: FutureProducer,
}

impl Kafka {
    pub fn start(topics: &[(&str, i32)]) -> Kafka {
        let cluster = MockCluster::new(1).expect("mock cluster");
        for (t, p) in topics {
            cluster.create_topic(t, *p, 1).expect("create topic");
        }
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", cluster.bootstrap_servers())
            .set("linger.ms", "5")
            .set("message.timeout.ms", "30000")
            .create()
            .expect("producer");
        Kafka { cluster, producer }
    }

    pub fn bootstrap(&self) -> String {
        self.cluster.bootstrap_servers()
    }

    pub async fn produce(&self, records: &[Record]) -> BTreeMap<(String, i32), Vec<(i64, usize)>> {
        produce(&self.producer, records).await
    }
}

/// Produces records to their partitions; returns (topic, partition) → (offset, record index).
pub async fn produce(
    producer: &FutureProducer,
    records: &[Record],
) -> BTreeMap<(String, i32), Vec<(i64, usize)>> {
    let mut futures = Vec::with_capacity(records.len());
    for (i, r) in records.iter().enumerate() {
        let mut fr = FutureRecord::to(&r.topic)
            .partition(r.partition)
            .timestamp(r.timestamp_ms);
        if let Some(k) = &r.key {
            fr = fr.key(k.as_slice());
        }
        if let Some(v) = &r.value {
            fr = fr.payload(v.as_slice());
        }
        futures.push((
            i,
            producer
                .send_result(fr)
                .map_err(|(e, _)| e)
                .expect("queued"),
        ));
    }
    let mut out: BTreeMap<(String, i32), Vec<(i64, usize)>> = BTreeMap::new();
    for (i, f) in futures {
        let delivery = f.await.expect("not canceled").expect("delivered");
        out.entry((records[i].topic.clone(), delivery.partition))
            .or_default()
            .push((delivery.offset, i));
    }
    for v in out.values_mut() {
        v.sort();
    }
    out
}
