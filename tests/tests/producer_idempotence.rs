//! The idempotent producer (`enable.idempotence=true`): deliveries in
//! order per partition, no duplicates, and no fatal error, on the mock
//! cluster and the real broker.

use std::collections::BTreeMap;

use rdkafka_e2e::{Target, WAIT_TIMEOUT};
use rdkafka_hl::{Config, Producer, Record};

const RECORDS: usize = 3_000;
const PARTITIONS: i32 = 3;

fn set(config: Config, key: &str, value: &str) -> Config {
    config
        .set(key, value)
        .unwrap_or_else(|error| panic!("invalid setting {key}={value}: {error}"))
}

fn idempotent_delivery(target: &Target) {
    let topic = target.create_topic("producer-idempotent", PARTITIONS);
    let config = set(target.config(), "enable.idempotence", "true");
    let producer = Producer::new(config).unwrap_or_else(|error| panic!("failed to create a producer: {error}"));

    let futures: Vec<_> = (0..RECORDS)
        .map(|id| {
            let partition = (id % PARTITIONS as usize) as i32;
            let record = Record::to(&topic).partition(partition).value(id.to_string());
            producer
                .send_wait(record, WAIT_TIMEOUT)
                .unwrap_or_else(|error| panic!("send of record {id} failed: {error}"))
        })
        .collect();

    let mut offsets: BTreeMap<i32, Vec<i64>> = BTreeMap::new();
    for (id, future) in futures.into_iter().enumerate() {
        let delivery = future
            .wait_timeout(WAIT_TIMEOUT)
            .unwrap_or_else(|error| panic!("delivery of record {id} failed: {error}"));
        offsets.entry(delivery.partition).or_default().push(delivery.offset);
    }

    for partition in 0..PARTITIONS {
        let expected: Vec<i64> = (0..(RECORDS / PARTITIONS as usize) as i64).collect();
        assert_eq!(
            offsets.get(&partition),
            Some(&expected),
            "offsets of partition {partition}, in send order"
        );
    }
    assert_eq!(producer.fatal_error(), None, "fatal error of the idempotent producer");
    assert_eq!(producer.in_flight_count(), 0, "sends still in flight after every delivery");
}

#[test]
fn idempotent_delivery_mock() {
    idempotent_delivery(&Target::mock());
}

#[test]
fn idempotent_delivery_real_broker() {
    let Some(target) = Target::real_broker() else { return };
    idempotent_delivery(&target);
}
