//! Client lifecycle, for leak checkers: creates a mock cluster, a producer,
//! a consumer and an admin client, produces, consumes, commits and closes
//! them, several times over.
//!
//! Run under valgrind with `tests/leaks.sh`, or directly:
//! `cargo run --example lifecycle -- [CYCLES]` (default 3).

use std::time::Duration;

use rdkafka_hl::{AdminClient, Config, Consumer, MockCluster, Producer, Record};

const MESSAGES: usize = 100;
const TIMEOUT: Duration = Duration::from_secs(60);

fn main() -> Result<(), rdkafka_hl::Error> {
    let cycles: usize = std::env::args().nth(1).map_or(3, |text| text.parse().expect("CYCLES must be a number"));
    for cycle in 0..cycles {
        run_cycle(cycle)?;
    }
    println!("lifecycle: {cycles} cycles completed");
    Ok(())
}

fn run_cycle(cycle: usize) -> Result<(), rdkafka_hl::Error> {
    let cluster = MockCluster::new(1)?;
    cluster.set_group_initial_rebalance_delay(Duration::ZERO);
    let servers = cluster.bootstrap_servers();
    let topic = format!("lifecycle-{cycle}");
    cluster.create_topic(&topic, 2, 1)?;

    let producer = Producer::new(Config::new().set("bootstrap.servers", &servers)?)?;
    let futures: Vec<_> = (0..MESSAGES)
        .map(|id| {
            let record = Record::to(&topic).key(id.to_string()).value(vec![b'x'; 64]).header("id", "value");
            producer.send(record)
        })
        .collect::<Result<_, _>>()?;
    for future in futures {
        future.wait_timeout(TIMEOUT)?;
    }
    producer.close(TIMEOUT)?;

    let consumer = Consumer::new(
        Config::new()
            .set("bootstrap.servers", &servers)?
            .set("group.id", &format!("lifecycle-group-{cycle}"))?
            .set("auto.offset.reset", "earliest")?,
    )?;
    consumer.subscribe(&[&topic])?;
    let mut read = 0;
    while read < MESSAGES {
        if let Some(message) = consumer.poll(Duration::from_millis(100)) {
            let message = message?;
            let _ = (message.key(), message.value(), message.headers(), message.detach());
            read += 1;
        }
    }
    consumer.commit_consumed()?.wait_timeout(TIMEOUT)?;
    consumer.close(TIMEOUT)?;

    // The mock cluster implements no topic admin requests, so this request
    // fails; it still exercises the admin client's request path.
    let admin = AdminClient::new(Config::new().set("bootstrap.servers", &servers)?)?;
    let _ = admin.delete_topic(&topic, Duration::from_millis(200));
    drop(admin);
    Ok(())
}
