//! Clients on the SASL_SSL listener of the test broker, which
//! `tests/broker/kafka.sh start --sasl-ssl` adds (SCRAM-SHA-512 over TLS).
//! The tests cover a round trip with the right credentials and CA, and
//! prompt failures that name the cause for a wrong password and for an
//! untrusted CA. Each also checks that no password appears in `Debug`
//! output, error messages or librdkafka's log lines.
//!
//! These tests need the `ssl` feature (`cargo test -p rdkafka-e2e --features
//! ssl --test security`). Without it, the only test checks that a SASL_SSL
//! configuration is rejected with a message naming the missing OpenSSL.

#[cfg(not(feature = "ssl"))]
#[test]
fn sasl_ssl_rejected_without_openssl() {
    let error = rdkafka_hl::Config::new()
        .set("security.protocol", "SASL_SSL")
        .expect_err("security.protocol=SASL_SSL was accepted by a librdkafka built without OpenSSL");
    let text = error.to_string();

    assert!(text.contains("security.protocol=SASL_SSL"), "the error names the property: {text}");
    assert!(text.contains("OpenSSL not available"), "the error names the cause: {text}");
}

#[cfg(feature = "ssl")]
mod sasl_ssl {
    use std::fmt::Debug;
    use std::io::Write;
    use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
    use std::sync::{Mutex, OnceLock};
    use std::time::{Duration, Instant};

    use rdkafka_e2e::numbered::{self, POLL_TIMEOUT};
    use rdkafka_e2e::{drop_within, unique_name, Deadline, WAIT_TIMEOUT};
    use rdkafka_hl::{AdminClient, Config, Consumer, ErrorCode, KafkaError, Producer, Record};

    /// The variables that `kafka.sh start --sasl-ssl` writes to its env file.
    const BOOTSTRAP_VAR: &str = "KAFKA_SASL_SSL_BOOTSTRAP_SERVERS";
    const CA_VAR: &str = "KAFKA_SASL_SSL_CA_LOCATION";
    const UNTRUSTED_CA_VAR: &str = "KAFKA_SASL_SSL_UNTRUSTED_CA_LOCATION";
    const MECHANISM_VAR: &str = "KAFKA_SASL_MECHANISM";
    const USERNAME_VAR: &str = "KAFKA_SASL_USERNAME";
    const PASSWORD_FILE_VAR: &str = "KAFKA_SASL_PASSWORD_FILE";

    /// A password the broker rejects. Like the real one, it must never
    /// appear in output.
    const WRONG_PASSWORD: &str = "wrong-password-7f3a9c";

    /// How soon a failed authentication or certificate check must reach
    /// the caller. The clients' `message.timeout.ms` is far longer
    /// ([`MESSAGE_TIMEOUT_MS`]), so an error within this bound cannot come
    /// from a timeout.
    const PROMPT_BOUND: Duration = Duration::from_secs(15);
    const MESSAGE_TIMEOUT_MS: &str = "120000";

    /// How the producer and consumer tests end their clients, well below
    /// the 10 s default so that failed clients close quickly.
    const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

    /// Connection details of the SASL_SSL listener.
    struct Listener {
        bootstrap_servers: String,
        ca_location: String,
        untrusted_ca_location: String,
        mechanism: String,
        username: String,
        password: String,
    }

    /// Returns the listener from the environment, or `None` when the test
    /// is to be skipped because the variables are unset. In CI a missing
    /// variable fails the test instead, as a missing broker address does.
    /// Also installs the log capture.
    #[track_caller]
    fn listener() -> Option<Listener> {
        let variables = [BOOTSTRAP_VAR, CA_VAR, UNTRUSTED_CA_VAR, MECHANISM_VAR, USERNAME_VAR, PASSWORD_FILE_VAR];
        let values: Vec<String> = variables
            .iter()
            .map(|name| std::env::var(name).unwrap_or_default().trim().to_owned())
            .collect();
        let missing: Vec<&str> = variables
            .iter()
            .zip(&values)
            .filter(|(_, value)| value.is_empty())
            .map(|(name, _)| *name)
            .collect();

        if !missing.is_empty() {
            let test = std::thread::current().name().unwrap_or("this test").to_owned();
            let hint = "Start the broker with `tests/broker/kafka.sh start --sasl-ssl` and run \
                        `eval \"$(tests/broker/kafka.sh env)\"`, or run tests/run.sh.";
            if std::env::var_os("CI").is_some_and(|value| !value.is_empty()) {
                panic!("{test} needs the broker's SASL_SSL listener, but {missing:?} are not set and CI is set. {hint}");
            }
            let notice = format!("skipping {test} because {missing:?} are not set. {hint}\n");
            // Written to the process's stderr, which the test harness does
            // not capture; a failed write is ignored.
            let _ = std::io::stderr().write_all(notice.as_bytes());
            return None;
        }

        let password_file = &values[5];
        let password = std::fs::read_to_string(password_file)
            .unwrap_or_else(|error| panic!("failed to read the SASL password from {password_file} ({PASSWORD_FILE_VAR}): {error}"))
            .trim()
            .to_owned();
        assert!(!password.is_empty(), "the SASL password file {password_file} is empty");
        assert_ne!(password, WRONG_PASSWORD, "the wrong password of these tests is the broker's password");
        capture_logs();

        let mut values = values.into_iter();
        let mut next = || values.next().unwrap_or_default();
        Some(Listener {
            bootstrap_servers: next(),
            ca_location: next(),
            untrusted_ca_location: next(),
            mechanism: next(),
            username: next(),
            password,
        })
    }

    impl Listener {
        /// Returns a client configuration for the listener with `password`
        /// and the CA at `ca_location`, and every librdkafka debug context
        /// enabled, so that each line librdkafka could log is checked for
        /// secrets.
        fn config(&self, password: &str, ca_location: &str) -> Config {
            let settings = [
                ("bootstrap.servers", self.bootstrap_servers.as_str()),
                ("security.protocol", "SASL_SSL"),
                ("sasl.mechanism", self.mechanism.as_str()),
                ("sasl.username", self.username.as_str()),
                ("sasl.password", password),
                ("ssl.ca.location", ca_location),
                ("ssl.endpoint.identification.algorithm", "https"),
                ("message.timeout.ms", MESSAGE_TIMEOUT_MS),
                ("debug", "all"),
            ];
            Config::from_pairs(settings).unwrap_or_else(|error| panic!("invalid SASL_SSL configuration: {error}"))
        }

        fn trusted_config(&self) -> Config {
            self.config(&self.password, &self.ca_location)
        }

        fn secrets(&self) -> [&str; 2] {
            [&self.password, WRONG_PASSWORD]
        }
    }

    // --- Log capture -----------------------------------------------------

    /// Every line logged through the `log` crate in this test process, the
    /// forwarded librdkafka lines among them.
    struct LogCapture {
        lines: Mutex<Vec<String>>,
    }

    impl log::Log for LogCapture {
        fn enabled(&self, _: &log::Metadata<'_>) -> bool {
            true
        }

        fn log(&self, record: &log::Record<'_>) {
            let line = format!("{} {}: {}", record.level(), record.target(), record.args());
            self.lines.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).push(line);
        }

        fn flush(&self) {}
    }

    static LOGS: LogCapture = LogCapture { lines: Mutex::new(Vec::new()) };

    /// Installs [`LOGS`] as the process's logger at the most verbose level,
    /// once. Every test calls it through [`listener`] before it creates a
    /// client.
    fn capture_logs() {
        static INSTALLED: OnceLock<()> = OnceLock::new();
        INSTALLED.get_or_init(|| {
            log::set_logger(&LOGS).unwrap_or_else(|error| panic!("another logger is installed: {error}"));
            log::set_max_level(log::LevelFilter::Trace);
        });
    }

    /// Returns a copy of the lines logged so far.
    fn logged_lines() -> Vec<String> {
        LOGS.lines.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    /// Fails when a captured log line contains one of `secrets`, showing the
    /// line with the secret masked. Call it after the clients were dropped,
    /// which joins their event threads and so forwards their last lines.
    #[track_caller]
    fn assert_no_secret_logged(secrets: &[&str]) {
        for line in logged_lines() {
            for secret in secrets {
                assert!(
                    !line.contains(secret),
                    "a log line contains a password: {}",
                    line.replace(secret, "<password>")
                );
            }
        }
    }

    /// Fails when the `Display` or `Debug` text of `value` contains one of
    /// `secrets`. `what` names the value.
    #[track_caller]
    fn assert_no_secret_shown(value: &(impl Debug + ?Sized), display: Option<String>, secrets: &[&str], what: &str) {
        let debug = format!("{value:?}");
        for secret in secrets {
            assert!(!debug.contains(secret), "the Debug output of {what} contains a password: {}", debug.replace(secret, "<password>"));
            if let Some(display) = &display {
                assert!(
                    !display.contains(secret),
                    "the message of {what} contains a password: {}",
                    display.replace(secret, "<password>")
                );
            }
        }
    }

    /// Returns the first error that `receiver` yields with code `expected`
    /// within [`PROMPT_BOUND`] of `started`, and every error it yielded
    /// before. Fails naming all errors seen when none had that code.
    #[track_caller]
    fn expect_error(receiver: &Receiver<KafkaError>, expected: ErrorCode, started: Instant, what: &str) -> (KafkaError, Vec<KafkaError>) {
        let deadline = Deadline::after(PROMPT_BOUND, format!("{what} to report error {expected}"));
        let mut seen = Vec::new();
        loop {
            match receiver.recv_timeout(deadline.remaining()) {
                Ok(error) if error.code == expected => {
                    let elapsed = started.elapsed();
                    assert!(elapsed < PROMPT_BOUND, "{what} reported {expected} only after {elapsed:?}");
                    return (error, seen);
                }
                Ok(error) => seen.push(error),
                Err(RecvTimeoutError::Timeout) => deadline.fail(format!("errors reported instead: {}", describe(&seen))),
                Err(RecvTimeoutError::Disconnected) => panic!("the error channel of {what} closed; errors seen: {}", describe(&seen)),
            }
        }
    }

    fn describe(errors: &[KafkaError]) -> String {
        if errors.is_empty() {
            return "none".to_owned();
        }
        errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
    }

    /// Creates a producer from `config` whose client errors go to the
    /// returned channel.
    fn producer_with_errors(config: Config) -> (Producer, Receiver<KafkaError>) {
        let (sender, receiver) = mpsc::channel();
        let producer = Producer::builder(config)
            .close_timeout(CLOSE_TIMEOUT)
            .on_error(move |error| {
                // The receiver is gone once the test has what it waited for.
                let _ = sender.send(error.clone());
            })
            .build()
            .unwrap_or_else(|error| panic!("failed to create a producer: {error}"));
        (producer, receiver)
    }

    /// Sends one message through a producer with `config`, and checks that
    /// the producer reports `expected` through its error handler within
    /// [`PROMPT_BOUND`], while the message still waits for delivery. Returns
    /// the reported error, after checking every error text for secrets.
    fn producer_fails_with(listener: &Listener, config: Config, expected: ErrorCode) -> KafkaError {
        let secrets = listener.secrets();
        let (producer, errors) = producer_with_errors(config);
        assert_no_secret_shown(&producer, None, &secrets, "the producer");

        let started = Instant::now();
        let topic = unique_name("security-rejected");
        let delivery = producer
            .send(Record::to(&topic).value("never delivered"))
            .unwrap_or_else(|error| panic!("send failed before any connection attempt: {error}"));
        let (error, earlier) = expect_error(&errors, expected, started, "the producer");

        assert!(!delivery.is_ready(), "the delivery resolved before the producer reported {expected}");
        assert!(!error.fatal, "{expected} is reported as fatal: {error}");
        assert_no_secret_shown(&error, Some(error.to_string()), &secrets, "the reported error");
        for other in &earlier {
            assert_no_secret_shown(other, Some(other.to_string()), &secrets, "an earlier reported error");
        }

        // Closing purges the message, which resolves the delivery with an
        // error that must not show a secret either.
        drop_within(producer, CLOSE_TIMEOUT + WAIT_TIMEOUT, "the producer");
        let delivery_error = delivery
            .wait_timeout(WAIT_TIMEOUT)
            .expect_err("a message was delivered although the connection failed");
        assert_no_secret_shown(&delivery_error, Some(delivery_error.to_string()), &secrets, "the delivery error");
        while let Ok(late) = errors.try_recv() {
            assert_no_secret_shown(&late, Some(late.to_string()), &secrets, "a late reported error");
        }
        assert_no_secret_logged(&secrets);
        error
    }

    /// Subscribes a consumer with `config`, polls it, and checks that its
    /// error handler receives `expected` within [`PROMPT_BOUND`]. Returns
    /// the error, after checking every error text for secrets.
    fn consumer_fails_with(listener: &Listener, config: Config, expected: ErrorCode) -> KafkaError {
        let secrets = listener.secrets();
        let config = numbered::set(config, "group.id", &unique_name("security-rejected"));
        let (sender, errors) = mpsc::channel();
        let mut consumer = Consumer::builder(config)
            .on_error(move |error| {
                // The receiver is gone once the test has what it waited for.
                let _ = sender.send(error.clone());
            })
            .build()
            .unwrap_or_else(|error| panic!("failed to create a consumer: {error}"));
        consumer.set_close_timeout(CLOSE_TIMEOUT);
        assert_no_secret_shown(&consumer, None, &secrets, "the consumer");

        let started = Instant::now();
        consumer
            .subscribe(&[&unique_name("security-rejected")])
            .unwrap_or_else(|error| panic!("subscribe failed: {error}"));
        let deadline = Deadline::after(PROMPT_BOUND, format!("the consumer's error handler to receive {expected}"));
        let mut earlier = Vec::new();
        let error = 'polling: loop {
            deadline.check(|| format!("errors received instead: {}", describe(&earlier)));
            match consumer.poll(POLL_TIMEOUT) {
                None => {}
                Some(Ok(message)) => panic!("the consumer read a message although the connection failed: {message:?}"),
                Some(Err(error)) => {
                    assert_no_secret_shown(&error, Some(error.to_string()), &secrets, "a poll error");
                    panic!("poll returned an error instead of passing it to the handler: {error}");
                }
            }
            for error in errors.try_iter() {
                if error.code == expected {
                    break 'polling error;
                }
                earlier.push(error);
            }
        };
        let elapsed = started.elapsed();

        assert!(elapsed < PROMPT_BOUND, "the consumer reported {expected} only after {elapsed:?}");
        assert!(!error.fatal, "{expected} is reported as fatal: {error}");
        assert_no_secret_shown(&error, Some(error.to_string()), &secrets, "the reported error");
        for other in &earlier {
            assert_no_secret_shown(other, Some(other.to_string()), &secrets, "an earlier reported error");
        }
        drop_within(consumer, CLOSE_TIMEOUT + WAIT_TIMEOUT, "the consumer");
        assert_no_secret_logged(&secrets);
        error
    }

    // --- Tests -----------------------------------------------------------

    #[test]
    fn round_trip_with_credentials() {
        let Some(listener) = listener() else { return };
        let secrets = listener.secrets();
        let config = listener.trusted_config();
        assert_no_secret_shown(&config, None, &secrets, "the configuration");
        assert!(
            !format!("{config:?}").contains(&listener.username),
            "the Debug output of the configuration shows sasl.username: {config:?}"
        );

        let admin = AdminClient::new(config.clone()).unwrap_or_else(|error| panic!("failed to create an admin client: {error}"));
        let topic = unique_name("security-round-trip");
        admin
            .create_topic(&topic, 1, 1, WAIT_TIMEOUT)
            .unwrap_or_else(|error| panic!("creating topic {topic} over SASL_SSL failed: {error}"));

        let (producer, producer_errors) = producer_with_errors(config.clone());
        let count = 20;
        let deliveries = numbered::send(&producer, &topic, None, 0..count);
        let offsets: Vec<i64> = deliveries.iter().map(|delivery| delivery.offset).collect();
        assert_eq!(offsets, (0..count as i64).collect::<Vec<_>>(), "offsets of the deliveries to {topic}");

        let consumer_config = numbered::set(config, "group.id", &unique_name("security-readers"));
        let consumer_config = numbered::set(consumer_config, "auto.offset.reset", "earliest");
        let consumer = Consumer::new(consumer_config).unwrap_or_else(|error| panic!("failed to create a consumer: {error}"));
        consumer.subscribe(&[&topic]).unwrap_or_else(|error| panic!("subscribe to {topic} failed: {error}"));
        let reads = numbered::poll_count(&consumer, count, "the SASL_SSL consumer");
        let ids: Vec<usize> = reads.iter().map(|read| read.id).collect();
        assert_eq!(ids, (0..count).collect::<Vec<_>>(), "ids read back from {topic}, in order");

        assert_no_secret_shown(&producer, None, &secrets, "the producer");
        assert_no_secret_shown(&consumer, None, &secrets, "the consumer");
        drop_within(consumer, WAIT_TIMEOUT, "the consumer");
        drop_within(producer, WAIT_TIMEOUT, "the producer");
        drop_within(admin, WAIT_TIMEOUT, "the admin client");
        let errors: Vec<KafkaError> = producer_errors.try_iter().collect();
        assert!(errors.is_empty(), "the producer reported client errors: {}", describe(&errors));

        // The debug contexts were on: the configuration dump and the SASL
        // exchange were logged, and so were checked.
        let lines = logged_lines();
        assert!(
            lines.iter().any(|line| line.contains("sasl.password")),
            "no log line lists sasl.password; was librdkafka's configuration dump (debug=conf) forwarded?"
        );
        assert!(
            lines.iter().any(|line| line.contains("SCRAM")),
            "no log line mentions SCRAM; was the SASL exchange (debug=security) forwarded?"
        );
        assert_no_secret_logged(&secrets);
    }

    #[test]
    fn wrong_password_producer_fails() {
        let Some(listener) = listener() else { return };
        let config = listener.config(WRONG_PASSWORD, &listener.ca_location);

        let error = producer_fails_with(&listener, config, ErrorCode::AUTHENTICATION);

        assert!(error.message.contains("SASL authentication error"), "the error names the cause: {error}");
        assert!(error.message.contains("invalid credentials"), "the error names the cause: {error}");
    }

    #[test]
    fn wrong_password_consumer_fails() {
        let Some(listener) = listener() else { return };
        let config = listener.config(WRONG_PASSWORD, &listener.ca_location);

        let error = consumer_fails_with(&listener, config, ErrorCode::AUTHENTICATION);

        assert!(error.message.contains("SASL authentication error"), "the error names the cause: {error}");
        assert!(error.message.contains("invalid credentials"), "the error names the cause: {error}");
    }

    #[test]
    fn untrusted_ca_producer_fails() {
        let Some(listener) = listener() else { return };
        let config = listener.config(&listener.password, &listener.untrusted_ca_location);

        let error = producer_fails_with(&listener, config, ErrorCode::SSL);

        assert!(error.message.contains("certificate verify failed"), "the error names the cause: {error}");
    }

    #[test]
    fn untrusted_ca_consumer_fails() {
        let Some(listener) = listener() else { return };
        let config = listener.config(&listener.password, &listener.untrusted_ca_location);

        let error = consumer_fails_with(&listener, config, ErrorCode::SSL);

        assert!(error.message.contains("certificate verify failed"), "the error names the cause: {error}");
    }
}
