//! Results: one line per child, a table and comparison lines at the end.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::{Options, Variant};

/// The measurement of one child process.
#[derive(Debug, Clone, Copy)]
pub struct Measurement {
    pub wall: Duration,
    pub cpu: Duration,
    pub peak_bytes: u64,
    pub messages: u64,
    /// Commit latency median and 99th percentile, for the commit variant.
    pub latency: Option<(Duration, Duration)>,
}

impl Measurement {
    /// Formats the line a child prints for its parent.
    pub fn line(&self) -> String {
        let (p50, p99) = self.latency.map_or((0, 0), |(p50, p99)| (p50.as_micros(), p99.as_micros()));
        format!(
            "RESULT {} {} {} {} {p50} {p99}",
            self.wall.as_nanos(),
            self.cpu.as_nanos(),
            self.peak_bytes,
            self.messages
        )
    }

    pub fn parse(output: &str) -> Option<Self> {
        let line = output.lines().find(|line| line.starts_with("RESULT "))?;
        let fields: Vec<u128> = line.split_whitespace().skip(1).filter_map(|field| field.parse().ok()).collect();
        let [wall, cpu, peak, messages, p50, p99] = fields[..] else {
            return None;
        };
        Some(Self {
            wall: Duration::from_nanos(wall as u64),
            cpu: Duration::from_nanos(cpu as u64),
            peak_bytes: peak as u64,
            messages: messages as u64,
            latency: (p50 > 0 || p99 > 0)
                .then(|| (Duration::from_micros(p50 as u64), Duration::from_micros(p99 as u64))),
        })
    }

    pub fn rate(&self) -> f64 {
        self.messages as f64 / self.wall.as_secs_f64().max(1e-9)
    }

    pub fn short(&self) -> String {
        format!("{:>10.0} msgs/s, peak {:>6.1} MB", self.rate(), self.peak_bytes as f64 / 1e6)
    }
}

pub fn print_header(options: &Options) {
    println!(
        "throughput: {} messages of {} bytes, {} rounds, on {}",
        options.messages,
        options.size,
        options.rounds,
        options.brokers.as_deref().unwrap_or("librdkafka's mock cluster (3 brokers)")
    );
}

/// Every measurement, by variant, in the order run.
pub struct Summary {
    size: usize,
    results: BTreeMap<&'static str, Vec<Measurement>>,
    order: Vec<Variant>,
}

impl Summary {
    pub fn new(options: &Options) -> Self {
        Self {
            size: options.size,
            results: BTreeMap::new(),
            order: Vec::new(),
        }
    }

    pub fn add(&mut self, variant: Variant, measurement: Measurement) {
        if !self.order.contains(&variant) {
            self.order.push(variant);
        }
        self.results.entry(variant.name()).or_default().push(measurement);
    }

    fn median_rate(&self, name: &str) -> Option<f64> {
        let rates = sorted(self.results.get(name)?.iter().map(Measurement::rate).collect());
        rates.get(rates.len() / 2).copied()
    }

    fn median_peak(&self, name: &str) -> Option<f64> {
        let peaks = sorted(self.results.get(name)?.iter().map(|m| m.peak_bytes as f64).collect());
        peaks.get(peaks.len() / 2).copied()
    }

    pub fn print(&self) {
        println!();
        println!(
            "{:<22} {:>11} {:>11} {:>11} {:>8} {:>10} {:>9} {:>7}",
            "variant", "min msg/s", "median", "max", "MB/s", "CPU us/msg", "peak MB", "vs raw"
        );
        for variant in &self.order {
            let name = variant.name();
            let measurements = &self.results[name];
            let rates = sorted(measurements.iter().map(Measurement::rate).collect());
            let cpu = sorted(
                measurements
                    .iter()
                    .map(|m| m.cpu.as_secs_f64() * 1e6 / m.messages.max(1) as f64)
                    .collect(),
            );
            let median = rates[rates.len() / 2];
            let raw = self.median_rate(raw_of(*variant));
            let ratio = raw.map_or("-".to_owned(), |raw| format!("{:.2}", median / raw));
            println!(
                "{:<22} {:>11.0} {:>11.0} {:>11.0} {:>8.1} {:>10.3} {:>9.1} {:>7}",
                name,
                rates[0],
                median,
                rates[rates.len() - 1],
                median * self.size as f64 / 1e6,
                cpu[cpu.len() / 2],
                self.median_peak(name).unwrap_or(0.0) / 1e6,
                ratio
            );
            if let Some((p50, p99)) = measurements.last().and_then(|m| m.latency) {
                println!("{:<22} commit latency median {p50:?}, p99 {p99:?}", "");
            }
        }

        println!();
        let comparisons = [
            ("hl-produce", "raw-produce-callback", "hl-produce/raw"),
            ("hl-produce-owned", "raw-produce-callback", "hl-produce-owned/raw"),
            ("raw-produce-events", "raw-produce-callback", "raw-produce-events/raw"),
            ("rdkafka-base-produce", "raw-produce-callback", "rdkafka-base-produce/raw"),
            ("rdkafka-future-produce", "raw-produce-callback", "rdkafka-future-produce/raw"),
            ("hl-produce", "rdkafka-future-produce", "hl-produce/rdkafka-future"),
            ("hl-produce", "rdkafka-base-produce", "hl-produce/rdkafka-base"),
            ("hl-consume", "raw-consume", "hl-consume/raw"),
            ("hl-stream", "raw-consume", "hl-stream/raw"),
            ("rdkafka-base-consume", "raw-consume", "rdkafka-base-consume/raw"),
            ("rdkafka-stream", "raw-consume", "rdkafka-stream/raw"),
            ("hl-consume", "rdkafka-base-consume", "hl-consume/rdkafka-base"),
            ("hl-stream", "rdkafka-stream", "hl-stream/rdkafka-stream"),
        ];
        for (measured, reference, label) in comparisons {
            if let (Some(measured), Some(reference)) = (self.median_rate(measured), self.median_rate(reference)) {
                println!("{label}: {:.2}", measured / reference);
            }
        }
        if let (Some(hl), Some(raw)) = (self.median_peak("hl-produce"), self.median_peak("raw-produce-callback")) {
            println!("hl-produce-peak-memory/raw: {:.2}", hl / raw);
        }
    }
}

/// Returns the raw variant a variant is compared with.
fn raw_of(variant: Variant) -> &'static str {
    match variant {
        Variant::ConsumeRaw
        | Variant::ConsumeHlPoll
        | Variant::ConsumeHlStream
        | Variant::ConsumeRdkafkaBase
        | Variant::ConsumeRdkafkaStream
        | Variant::CommitHl => "raw-consume",
        _ => "raw-produce-callback",
    }
}

fn sorted(mut values: Vec<f64>) -> Vec<f64> {
    values.sort_by(f64::total_cmp);
    values
}
