//! Throughput benchmark: raw librdkafka through `rdkafka-ll`, `rdkafka-hl`,
//! and rust-rdkafka (the `rdkafka` crate), measured in one run.
//!
//! Run from the workspace root:
//!
//! ```sh
//! cargo bench --bench throughput -- --messages 1000000 [--brokers HOST:PORT]
//! ```
//!
//! Each measurement runs in a child process of its own, so that its peak
//! memory is its own and no client outlives it, and the variants take
//! turns round by round, so that machine noise hits them alike. See
//! BENCHMARKS.md for the method and recorded figures.

// The variants and options are described by their names in the report.
#![allow(missing_docs)]

mod cluster;
mod consume;
mod produce;
mod report;
mod runtime;

use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use report::{Measurement, Summary};

/// The measurement one child process makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    ProduceRawCallback,
    ProduceRawEvents,
    ProduceHlFuture,
    ProduceHlOwned,
    ProduceRdkafkaBase,
    ProduceRdkafkaFuture,
    ConsumeRaw,
    ConsumeHlPoll,
    ConsumeHlStream,
    ConsumeRdkafkaBase,
    ConsumeRdkafkaStream,
    CommitHl,
}

impl Variant {
    const ALL: [Variant; 12] = [
        Variant::ProduceRawCallback,
        Variant::ProduceRawEvents,
        Variant::ProduceHlFuture,
        Variant::ProduceHlOwned,
        Variant::ProduceRdkafkaBase,
        Variant::ProduceRdkafkaFuture,
        Variant::ConsumeRaw,
        Variant::ConsumeHlPoll,
        Variant::ConsumeHlStream,
        Variant::ConsumeRdkafkaBase,
        Variant::ConsumeRdkafkaStream,
        Variant::CommitHl,
    ];

    /// Returns the name in the report and on the child's command line.
    pub fn name(self) -> &'static str {
        match self {
            Variant::ProduceRawCallback => "raw-produce-callback",
            Variant::ProduceRawEvents => "raw-produce-events",
            Variant::ProduceHlFuture => "hl-produce",
            Variant::ProduceHlOwned => "hl-produce-owned",
            Variant::ProduceRdkafkaBase => "rdkafka-base-produce",
            Variant::ProduceRdkafkaFuture => "rdkafka-future-produce",
            Variant::ConsumeRaw => "raw-consume",
            Variant::ConsumeHlPoll => "hl-consume",
            Variant::ConsumeHlStream => "hl-stream",
            Variant::ConsumeRdkafkaBase => "rdkafka-base-consume",
            Variant::ConsumeRdkafkaStream => "rdkafka-stream",
            Variant::CommitHl => "hl-commit",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|variant| variant.name() == name)
    }
}

/// The options of a run, shared by the parent and its children.
#[derive(Debug, Clone)]
pub struct Options {
    pub messages: u64,
    pub size: usize,
    pub rounds: usize,
    pub brokers: Option<String>,
    pub only: Vec<Variant>,
}

const USAGE: &str = "\
usage: cargo bench --bench throughput -- [OPTIONS]

options:
  --messages N          messages per measurement (default 1000000)
  --size BYTES          payload size in bytes (default 100)
  --rounds N            rounds; each runs every variant once (default 5, at least 3)
  --brokers HOST:PORT   use this Kafka cluster instead of librdkafka's mock
                        cluster (3 brokers, started in each child process)
  --only NAME[,NAME]    run only these variants (names as in the report)
  -h, --help            print this help";

fn main() -> ExitCode {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    // cargo bench passes `--bench` to harness-less benchmarks.
    args.retain(|arg| arg != "--bench");

    if let Some(position) = args.iter().position(|arg| arg == "--child") {
        return run_child(&args, position);
    }

    let options = match parse_options(&args) {
        Ok(Some(options)) => options,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("error: {message}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };

    match run_parent(&options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("benchmark failed: {message}");
            ExitCode::FAILURE
        }
    }
}

fn parse_options(args: &[String]) -> Result<Option<Options>, String> {
    let mut options = Options {
        messages: 1_000_000,
        size: 100,
        rounds: 5,
        brokers: None,
        only: Vec::new(),
    };
    let mut args = args.iter();
    while let Some(flag) = args.next() {
        let mut value = || args.next().cloned().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "-h" | "--help" => return Ok(None),
            "--messages" => options.messages = number(flag, &value()?, 1)?,
            "--size" => options.size = number(flag, &value()?, 1)?,
            "--rounds" => options.rounds = number(flag, &value()?, 3)?,
            "--brokers" => options.brokers = Some(value()?),
            "--only" => {
                for name in value()?.split(',') {
                    let variant = Variant::from_name(name).ok_or_else(|| format!("unknown variant {name:?}"))?;
                    options.only.push(variant);
                }
            }
            _ => return Err(format!("unknown option {flag:?}")),
        }
    }
    Ok(Some(options))
}

fn number<T: std::str::FromStr + PartialOrd + std::fmt::Display>(flag: &str, text: &str, minimum: T) -> Result<T, String> {
    match text.parse::<T>() {
        Ok(number) if number >= minimum => Ok(number),
        _ => Err(format!("{flag} takes a whole number of at least {minimum}, got {text:?}")),
    }
}

fn run_parent(options: &Options) -> Result<(), String> {
    let variants: Vec<Variant> = if options.only.is_empty() { Variant::ALL.to_vec() } else { options.only.clone() };
    let executable = std::env::current_exe().map_err(|error| format!("cannot find this program: {error}"))?;
    let mut summary = Summary::new(options);

    report::print_header(options);
    for round in 1..=options.rounds {
        for &variant in &variants {
            let mut command = Command::new(&executable);
            command
                .arg("--child")
                .arg(variant.name())
                .arg("--messages")
                .arg(options.messages.to_string())
                .arg("--size")
                .arg(options.size.to_string());
            if let Some(brokers) = &options.brokers {
                command.arg("--brokers").arg(brokers);
            }
            let output = run_bounded(command, CHILD_TIMEOUT).map_err(|error| format!("{}: {error}", variant.name()))?;
            if !output.status.success() {
                return Err(format!(
                    "{} failed in round {round} ({}); its error is printed above",
                    variant.name(),
                    output.status
                ));
            }
            let measurement = Measurement::parse(&String::from_utf8_lossy(&output.stdout))
                .ok_or_else(|| format!("{} printed no result", variant.name()))?;
            eprintln!("round {round}: {:<22} {}", variant.name(), measurement.short());
            summary.add(variant, measurement);
        }
    }
    summary.print();
    Ok(())
}

/// Runs one measurement and prints it for the parent.
fn run_child(args: &[String], position: usize) -> ExitCode {
    let Some(variant) = args.get(position + 1).and_then(|name| Variant::from_name(name)) else {
        eprintln!("--child needs a variant name");
        return ExitCode::from(2);
    };
    let rest: Vec<String> = args.iter().enumerate().filter(|(index, _)| *index != position && *index != position + 1).map(|(_, arg)| arg.clone()).collect();
    let options = match parse_options(&rest) {
        Ok(Some(options)) => options,
        _ => return ExitCode::from(2),
    };

    let result = match variant {
        Variant::ProduceRawCallback
        | Variant::ProduceRawEvents
        | Variant::ProduceHlFuture
        | Variant::ProduceHlOwned
        | Variant::ProduceRdkafkaBase
        | Variant::ProduceRdkafkaFuture => produce::run(variant, &options),
        Variant::ConsumeRaw
        | Variant::ConsumeHlPoll
        | Variant::ConsumeHlStream
        | Variant::ConsumeRdkafkaBase
        | Variant::ConsumeRdkafkaStream
        | Variant::CommitHl => consume::run(variant, &options),
    };
    match result {
        Ok(measurement) => {
            println!("{}", measurement.line());
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("{}: {message}", variant.name());
            ExitCode::FAILURE
        }
    }
}

/// The limit for each phase of a measurement.
pub const PHASE_TIMEOUT: Duration = Duration::from_secs(300);

/// The limit for one child process, after which the parent kills it.
const CHILD_TIMEOUT: Duration = Duration::from_secs(900);

/// Runs `command` and collects its output, killing it after `timeout`.
fn run_bounded(mut command: Command, timeout: Duration) -> Result<std::process::Output, String> {
    let mut child = command
        // The child prints one result line; its diagnostics go straight to
        // stderr, so that no pipe can fill up while the parent waits.
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|error| format!("failed to start: {error}"))?;
    let started = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(_)) => return child.wait_with_output().map_err(|error| format!("failed to read its output: {error}")),
            Ok(None) if started.elapsed() > timeout => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("timed out after {timeout:?} and was killed"));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            Err(error) => return Err(format!("failed to wait for it: {error}")),
        }
    }
}
