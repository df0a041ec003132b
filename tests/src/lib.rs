//! Helpers of the end-to-end tests: a Kafka (librdkafka's MockCluster, a real protocol broker in
//! process), a Debezium-like event stream, and the exactly-once proof over what landed.

pub mod bronze_fixture;
pub mod kafka;
pub mod merge_scenario;
pub mod moto;
pub mod postgres;
pub mod process;
pub mod proof;
pub mod proxy;
pub mod readers;
pub mod run_setup;
pub mod scd2_floor;
pub mod seeded;
pub mod stream;
pub mod tls;
pub mod transfers;
pub mod warehouse;
