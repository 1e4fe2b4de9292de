//! Interoperability with kcat (Debian's `kcat` package, 1.7.1 in Debian 12)
//! on the real broker: messages that kcat produces are read back exactly by
//! this crate's consumer, and messages that this crate's producer sends are
//! read back exactly by kcat.
//!
//! The tests install kcat with `apt-get` when it is missing. When that
//! fails they print a notice and pass without running, unless `CI` is set,
//! in which case they fail.

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use rdkafka_e2e::numbered::{consumer_config, new_consumer, new_producer, POLL_TIMEOUT};
use rdkafka_e2e::{unique_name, Deadline, Target, WAIT_TIMEOUT};
use rdkafka_hl::{Header, OwnedMessage, Record, TopicPartitionOffset, OFFSET_BEGINNING};

/// How long one kcat run may take.
const KCAT_TIMEOUT: Duration = Duration::from_secs(30);

#[test]
fn kcat_to_consumer_real_broker() {
    if let Some(target) = Target::real_broker() {
        if let Some(kcat) = kcat() {
            kcat_to_consumer(&target, kcat);
        }
    }
}

#[test]
fn producer_to_kcat_real_broker() {
    if let Some(target) = Target::real_broker() {
        if let Some(kcat) = kcat() {
            producer_to_kcat(&target, kcat);
        }
    }
}

/// Returns the path of kcat, installing Debian's package first when it is
/// missing. Returns `None` after a notice when it cannot be installed, and
/// panics instead when `CI` is set.
fn kcat() -> Option<&'static Path> {
    static KCAT: OnceLock<Option<PathBuf>> = OnceLock::new();
    let found = KCAT.get_or_init(|| {
        if let Some(path) = find_kcat() {
            return Some(path);
        }
        let mut log = String::new();
        // apt-get update is needed only when the package lists are missing
        // or stale, so it runs after a first failed install.
        for step in [
            &["install", "-y", "kcat"][..],
            &["update"][..],
            &["install", "-y", "kcat"][..],
        ] {
            match Command::new("apt-get").args(step).stdin(Stdio::null()).output() {
                Ok(output) => {
                    log.push_str(&format!(
                        "apt-get {} exited with {}: {}\n",
                        step.join(" "),
                        output.status,
                        String::from_utf8_lossy(&output.stderr).trim()
                    ));
                    if step[0] == "install" && output.status.success() {
                        break;
                    }
                }
                Err(error) => {
                    log.push_str(&format!("apt-get {} failed to start: {error}\n", step.join(" ")));
                    break;
                }
            }
        }
        let path = find_kcat();
        if path.is_none() {
            let in_ci = std::env::var_os("CI").is_some_and(|value| !value.is_empty());
            if in_ci {
                panic!("kcat is missing and `apt-get install -y kcat` failed, while CI is set:\n{log}");
            }
            let notice =
                format!("skipping the kcat tests because kcat is missing and `apt-get install -y kcat` failed:\n{log}");
            // A failed write is ignored because the notice is only informational.
            let _ = std::io::stderr().write_all(notice.as_bytes());
        }
        path
    });
    found.as_deref()
}

fn find_kcat() -> Option<PathBuf> {
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths)
        .map(|directory| directory.join("kcat"))
        .find(|candidate| candidate.is_file())
}

/// Runs kcat with `args` and `input` on its standard input, waits up to
/// [`KCAT_TIMEOUT`] and returns its standard output. Panics with kcat's
/// standard error when it fails or times out.
fn run_kcat(kcat: &Path, args: &[&str], input: &[u8]) -> Vec<u8> {
    let mut child = Command::new(kcat)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|error| panic!("failed to start {}: {error}", kcat.display()));

    let mut stdin = child.stdin.take().expect("stdin is piped");
    let input = input.to_vec();
    let writer = thread::spawn(move || stdin.write_all(&input));
    let mut stdout = child.stdout.take().expect("stdout is piped");
    let reader = thread::spawn(move || {
        let mut output = Vec::new();
        stdout.read_to_end(&mut output).map(|_| output)
    });
    let mut stderr = child.stderr.take().expect("stderr is piped");
    let error_reader = thread::spawn(move || {
        let mut output = String::new();
        stderr.read_to_string(&mut output).map(|_| output)
    });

    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() < KCAT_TIMEOUT => thread::sleep(Duration::from_millis(20)),
            Ok(None) => {
                // A failed kill is ignored because the child may have just exited.
                let _ = child.kill();
                let _ = child.wait();
                let errors = error_reader.join().ok().and_then(Result::ok).unwrap_or_default();
                panic!("timed out after {KCAT_TIMEOUT:?} waiting for kcat {args:?} to exit; its stderr: {errors}");
            }
            Err(error) => panic!("failed to wait for kcat {args:?}: {error}"),
        }
    };

    let written = writer.join().expect("the stdin writer does not panic");
    let output = reader.join().expect("the stdout reader does not panic");
    let errors = error_reader.join().ok().and_then(Result::ok).unwrap_or_default();
    assert!(
        status.success(),
        "kcat {args:?} exited with {status}; its stderr: {errors}"
    );
    written
        .unwrap_or_else(|error| panic!("writing to the stdin of kcat {args:?} failed: {error}; its stderr: {errors}"));
    output.unwrap_or_else(|error| panic!("reading the stdout of kcat {args:?} failed: {error}"))
}

fn header(name: &str, value: &[u8]) -> Header {
    Header {
        name: name.to_owned(),
        value: Some(value.to_vec()),
    }
}

/// A message that kcat produces, as this crate's consumer must read it.
struct Expected {
    partition: i32,
    offset: i64,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Vec<Header>,
}

/// A message that kcat reads from standard input: its input bytes, and the
/// key and value that kcat must make of them.
struct StdinMessage {
    input: &'static [u8],
    key: Option<&'static [u8]>,
    value: &'static [u8],
}

/// kcat produces to partition 0 from standard input, with a message
/// delimiter and a key delimiter, and to partition 1 from a file whose whole
/// contents, every byte value, become one message. The consumer must read
/// back each key, value and header list exactly.
fn kcat_to_consumer(target: &Target, kcat: &Path) {
    let topic = target.create_topic("kcat-produce", 2);
    let servers = target.bootstrap_servers();

    // Messages end at 0x1e and keys at the first 0x1f, so values may contain
    // newlines, NUL and 0xff. A message with no 0x1f has a null key, and one
    // that starts with 0x1f has an empty key.
    let stdin_messages = [
        StdinMessage {
            input: b"k1\x1fline one\nline two",
            key: Some(b"k1"),
            value: b"line one\nline two",
        },
        StdinMessage {
            input: b"k2\x1f\x00\x01\xff\xfe binary",
            key: Some(b"k2"),
            value: b"\x00\x01\xff\xfe binary",
        },
        StdinMessage {
            input: b"\x1fempty key",
            key: Some(b""),
            value: b"empty key",
        },
        StdinMessage {
            input: b"no key here",
            key: None,
            value: b"no key here",
        },
        StdinMessage {
            input: b"k5\x1f",
            key: Some(b"k5"),
            value: b"",
        },
    ];
    let mut input = Vec::new();
    for message in &stdin_messages {
        input.extend_from_slice(message.input);
        input.push(0x1e);
    }
    let stdin_args = [
        "-P",
        "-q",
        "-b",
        &servers,
        "-t",
        &topic,
        "-p",
        "0",
        "-K",
        "\\x1f",
        "-D",
        "\\x1e",
        "-H",
        "trace=abc-123",
        "-H",
        "lang=en",
        "-H",
        "lang=fr",
    ];
    run_kcat(kcat, &stdin_args, &input);

    let all_bytes: Vec<u8> = (0..=255u8).collect();
    let file = std::env::temp_dir().join(unique_name("kcat-message"));
    std::fs::write(&file, &all_bytes).unwrap_or_else(|error| panic!("failed to write {}: {error}", file.display()));
    let file_arg = file.to_string_lossy().into_owned();
    let file_args = [
        "-P",
        "-q",
        "-b",
        &servers,
        "-t",
        &topic,
        "-p",
        "1",
        "-k",
        "file-key",
        "-H",
        "source=file",
        &file_arg,
    ];
    run_kcat(kcat, &file_args, b"");
    // A failed removal only leaves a small file in the temporary directory.
    let _ = std::fs::remove_file(&file);

    let stdin_headers = vec![
        header("trace", b"abc-123"),
        header("lang", b"en"),
        header("lang", b"fr"),
    ];
    let mut expected: Vec<Expected> = stdin_messages
        .iter()
        .zip(0..)
        .map(|(message, offset)| Expected {
            partition: 0,
            offset,
            key: message.key.map(<[u8]>::to_vec),
            value: Some(message.value.to_vec()),
            headers: stdin_headers.clone(),
        })
        .collect();
    expected.push(Expected {
        partition: 1,
        offset: 0,
        key: Some(b"file-key".to_vec()),
        value: Some(all_bytes),
        headers: vec![header("source", b"file")],
    });

    let consumer = new_consumer(consumer_config(target, &unique_name("kcat-produce"), &[]));
    consumer
        .assign(&[
            TopicPartitionOffset::new(&topic, 0, OFFSET_BEGINNING),
            TopicPartitionOffset::new(&topic, 1, OFFSET_BEGINNING),
        ])
        .unwrap_or_else(|error| panic!("assign failed: {error}"));
    let deadline = Deadline::after(WAIT_TIMEOUT, format!("{} messages that kcat produced", expected.len()));
    let mut messages: Vec<OwnedMessage> = Vec::new();
    while messages.len() < expected.len() {
        deadline.check(|| format!("read {}", messages.len()));
        if let Some(result) = consumer.poll(POLL_TIMEOUT) {
            messages.push(result.unwrap_or_else(|error| panic!("poll failed: {error}")).detach());
        }
    }
    messages.sort_by_key(|message| (message.partition, message.offset));

    for (message, expected) in messages.iter().zip(&expected) {
        let at = format!("partition {} offset {}", expected.partition, expected.offset);
        assert_eq!(
            (message.partition, message.offset),
            (expected.partition, expected.offset),
            "position of {at}"
        );
        assert_eq!(message.topic, topic, "topic of {at}");
        assert_eq!(message.key, expected.key, "key of {at}");
        assert_eq!(message.value, expected.value, "value of {at}");
        assert_eq!(message.headers, expected.headers, "headers of {at}");
    }
}

/// One message as kcat printed it.
#[derive(Debug, PartialEq, Eq)]
struct Printed {
    partition: i32,
    offset: i64,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: String,
}

/// The kcat output format: a line with the partition, offset, key length
/// and value length (-1 for null), a line with the headers as `n=v` CSV,
/// then the key and value bytes, which the lengths delimit, and a newline.
const KCAT_FORMAT: &str = "%p %o %K %S\\n%h\\n%k%s\\n";

/// Parses output printed with [`KCAT_FORMAT`].
fn parse_printed(output: &[u8]) -> Vec<Printed> {
    let mut printed = Vec::new();
    let mut rest = output;
    while !rest.is_empty() {
        let (fields, after) = split_line(rest);
        let fields =
            std::str::from_utf8(fields).unwrap_or_else(|_| panic!("kcat printed a non-UTF-8 field line {fields:?}"));
        let numbers: Vec<i64> = fields
            .split(' ')
            .map(|field| {
                field
                    .parse()
                    .unwrap_or_else(|_| panic!("kcat printed a field line {fields:?} that is not numbers"))
            })
            .collect();
        let [partition, offset, key_length, value_length] = numbers[..] else {
            panic!("kcat printed the field line {fields:?}, expected 4 numbers");
        };
        let (headers, after) = split_line(after);
        let (key, after) = take_bytes(after, key_length);
        let (value, after) = take_bytes(after, value_length);
        assert_eq!(
            after.first(),
            Some(&b'\n'),
            "kcat output after message {partition}/{offset}"
        );
        rest = &after[1..];
        printed.push(Printed {
            partition: partition as i32,
            offset,
            key,
            value,
            headers: String::from_utf8_lossy(headers).into_owned(),
        });
    }
    printed
}

fn split_line(bytes: &[u8]) -> (&[u8], &[u8]) {
    let end = bytes.iter().position(|&byte| byte == b'\n').unwrap_or_else(|| {
        panic!(
            "kcat output ends without a newline: {:?}",
            String::from_utf8_lossy(bytes)
        )
    });
    (&bytes[..end], &bytes[end + 1..])
}

/// Takes `length` bytes, or none for a null field (length -1).
fn take_bytes(bytes: &[u8], length: i64) -> (Option<Vec<u8>>, &[u8]) {
    if length < 0 {
        return (None, bytes);
    }
    let length = length as usize;
    assert!(
        bytes.len() >= length,
        "kcat output is shorter than a field of {length} bytes"
    );
    (Some(bytes[..length].to_vec()), &bytes[length..])
}

/// This crate's producer sends messages with binary keys and values, null
/// and empty fields and repeated headers. kcat must print each of them
/// exactly.
fn producer_to_kcat(target: &Target, kcat: &Path) {
    let topic = target.create_topic("kcat-consume", 2);
    let producer = new_producer(target);
    let binary: Vec<u8> = (0..=255u8).rev().collect();
    let records = [
        Record::to(&topic)
            .partition(0)
            .key("plain-key")
            .value("plain value")
            .header("id", "0"),
        Record::to(&topic)
            .partition(0)
            .key(&b"\x00\n\xff"[..])
            .value(binary.clone())
            .header("id", "1")
            .header("kind", "bin"),
        Record::to(&topic)
            .partition(0)
            .value("null key")
            .header("id", "2")
            .header("dup", "a")
            .header("dup", "b"),
        Record::to(&topic).partition(0).key("").value("").header("id", "3"),
        Record::to(&topic).partition(1).key("null value").header("id", "4"),
    ];
    for record in records {
        producer
            .send(record)
            .unwrap_or_else(|error| panic!("send failed: {error}"))
            .wait_timeout(WAIT_TIMEOUT)
            .unwrap_or_else(|error| panic!("delivery failed: {error}"));
    }

    let servers = target.bootstrap_servers();
    let args = [
        "-C",
        "-q",
        "-e",
        "-b",
        &servers,
        "-t",
        &topic,
        "-o",
        "beginning",
        "-f",
        KCAT_FORMAT,
    ];
    let mut printed = parse_printed(&run_kcat(kcat, &args, b""));
    printed.sort_by_key(|message| (message.partition, message.offset));

    let expected = vec![
        Printed {
            partition: 0,
            offset: 0,
            key: Some(b"plain-key".to_vec()),
            value: Some(b"plain value".to_vec()),
            headers: "id=0".to_owned(),
        },
        Printed {
            partition: 0,
            offset: 1,
            key: Some(b"\x00\n\xff".to_vec()),
            value: Some(binary),
            headers: "id=1,kind=bin".to_owned(),
        },
        Printed {
            partition: 0,
            offset: 2,
            key: None,
            value: Some(b"null key".to_vec()),
            headers: "id=2,dup=a,dup=b".to_owned(),
        },
        Printed {
            partition: 0,
            offset: 3,
            key: Some(Vec::new()),
            value: Some(Vec::new()),
            headers: "id=3".to_owned(),
        },
        Printed {
            partition: 1,
            offset: 0,
            key: Some(b"null value".to_vec()),
            value: None,
            headers: "id=4".to_owned(),
        },
    ];
    assert_eq!(printed, expected, "messages as kcat printed them");
}
