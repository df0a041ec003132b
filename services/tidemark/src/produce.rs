//! Producing the generated banking stream to Kafka at a target rate, for `tidemark generate`
//! and `tidemark demo`. Records are keyed by row id (Kafka's partitioner keeps a row's changes in
//! one partition, as Debezium's are); deliveries are awaited, so what is reported was acknowledged.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::StreamExt as _;
use futures::stream::FuturesUnordered;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer as _};
use tidemark_generator::{Bank, Emitted, RecordEncoder};

/// When to stop producing (whichever comes first; none: until `stop`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Limits {
    pub events: Option<u64>,
    /// Records per second; `None`: as fast as the broker takes them.
    pub rate: Option<f64>,
    pub duration: Option<Duration>,
}

/// What was produced and acknowledged.
#[derive(Debug, Clone, Default)]
pub struct Produced {
    pub records: u64,
    pub bytes: u64,
    /// (table, `c`/`u`/`d`/`r`/`tombstone`) → records.
    pub by_kind: BTreeMap<(String, String), u64>,
    /// (topic, partition) → next offset after the last acknowledged record.
    pub ends: BTreeMap<(String, i32), i64>,
    pub elapsed: Duration,
}

impl Produced {
    pub fn records_per_sec(&self) -> f64 {
        self.records as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    pub fn mb_per_sec(&self) -> f64 {
        self.bytes as f64 / 1e6 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Deliveries awaited at most this far behind the sends (bounds memory).
const MAX_IN_FLIGHT: usize = 50_000;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Produces until a limit is reached or `stop` completes; late changes still held back by the
/// generator are released at the end, so every change of the run reaches Kafka. While
/// `hold(records sent)` is true, producing pauses (the demo keeps its in-process broker, which
/// retains little, from outrunning the consumer).
pub async fn produce(
    producer: &FutureProducer,
    bank: &mut Bank,
    encoder: &RecordEncoder,
    limits: Limits,
    stop: impl Future<Output = ()>,
    mut hold: impl FnMut(u64) -> bool,
    mut progress: impl FnMut(&Produced),
) -> anyhow::Result<Produced> {
    tokio::pin!(stop);
    let start = Instant::now();
    let mut out = Produced::default();
    let mut in_flight = FuturesUnordered::new();
    let mut last_progress = Instant::now();
    let mut sent = 0u64;
    loop {
        let done = limits.events.is_some_and(|n| sent >= n)
            || limits.duration.is_some_and(|d| start.elapsed() >= d)
            || futures::poll!(&mut stop).is_ready();
        let batch = if done {
            bank.drain_late()
        } else {
            bank.next_batch(now_ms())
        };
        for e in &batch {
            let fut = send(producer, bank, encoder, e, &mut in_flight, &mut out).await?;
            in_flight.push(fut);
            sent += 1;
            if in_flight.len() >= MAX_IN_FLIGHT
                && let Some(d) = in_flight.next().await
            {
                acknowledged(d, &mut out)?;
            }
        }
        while let Some(Some(d)) = futures::FutureExt::now_or_never(in_flight.next()) {
            acknowledged(d, &mut out)?;
        }
        if done {
            break;
        }
        while hold(sent) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        if let Some(rate) = limits.rate.filter(|r| *r > 0.0) {
            let due = Duration::from_secs_f64(sent as f64 / rate);
            let elapsed = start.elapsed();
            if due > elapsed + Duration::from_millis(2) {
                tokio::time::sleep(due - elapsed).await;
            }
        }
        if last_progress.elapsed() >= Duration::from_millis(100) {
            out.elapsed = start.elapsed();
            progress(&out);
            last_progress = Instant::now();
        }
    }
    while let Some(d) = in_flight.next().await {
        acknowledged(d, &mut out)?;
    }
    producer.flush(Duration::from_secs(30))?;
    out.elapsed = start.elapsed();
    progress(&out);
    Ok(out)
}

/// A finished delivery with its tag.
type Delivery = (Tag, <DeliveryFuture as Future>::Output);

/// What a pending record carries, for the report.
#[derive(Debug, Default)]
struct Tag {
    topic: String,
    table: String,
    kind: String,
    bytes: u64,
}

/// Queues one record, waiting for deliveries while librdkafka's queue is full.
async fn send(
    producer: &FutureProducer,
    bank: &Bank,
    encoder: &RecordEncoder,
    e: &Emitted,
    in_flight: &mut FuturesUnordered<Tagged>,
    out: &mut Produced,
) -> anyhow::Result<Tagged> {
    let r = encoder
        .encode(bank, e)
        .map_err(|err| anyhow::anyhow!("encoding a {} record: {err}", e.kind()))?;
    let bytes = (r.key.len() + r.value.as_ref().map_or(0, Vec::len)) as u64;
    loop {
        let mut rec = FutureRecord::to(&r.topic)
            .key(r.key.as_slice())
            .timestamp(now_ms());
        if let Some(v) = &r.value {
            rec = rec.payload(v.as_slice());
        }
        match producer.send_result(rec) {
            Ok(fut) => {
                return Ok(Tagged {
                    tag: Tag {
                        topic: r.topic.clone(),
                        table: e.table.name().to_owned(),
                        kind: e.kind().to_owned(),
                        bytes,
                    },
                    fut,
                });
            }
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                match in_flight.next().await {
                    Some(d) => acknowledged(d, out)?,
                    None => tokio::time::sleep(Duration::from_millis(5)).await,
                }
            }
            Err((err, _)) => anyhow::bail!("producing to {}: {err}", r.topic),
        }
    }
}

/// A pending delivery and what it carries.
struct Tagged {
    tag: Tag,
    fut: DeliveryFuture,
}

impl Future for Tagged {
    type Output = Delivery;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Delivery> {
        let this = &mut *self;
        std::pin::Pin::new(&mut this.fut)
            .poll(cx)
            .map(|r| (std::mem::take(&mut this.tag), r))
    }
}

fn acknowledged(d: Delivery, out: &mut Produced) -> anyhow::Result<()> {
    let (tag, result) = d;
    let delivery = result
        .map_err(|_| anyhow::anyhow!("the producer was dropped before a delivery report"))?
        .map_err(|(err, msg)| {
            anyhow::anyhow!(
                "delivery to {} failed: {err}",
                rdkafka::Message::topic(&msg)
            )
        })?;
    out.records += 1;
    out.bytes += tag.bytes;
    *out.by_kind.entry((tag.table, tag.kind)).or_default() += 1;
    let end = out.ends.entry((tag.topic, delivery.partition)).or_default();
    *end = (*end).max(delivery.offset + 1);
    Ok(())
}
