//! Measures two ways for an event thread to wait for delivery reports:
//! blocking in `rd_kafka_queue_poll`, or sleeping in poll(2) on a pipe that
//! librdkafka writes to through `rd_kafka_queue_io_event_enable`, then
//! draining the queue without blocking.
//!
//! Run: `cargo run --release --example event_wakeup -- [MESSAGES] [ROUNDS]`
//! (default 1,000,000 messages of 100 bytes, 5 rounds, on librdkafka's
//! mock cluster with 3 brokers). The producer's event thread uses the
//! first way; this program shows the measurement behind that choice.

use std::ffi::{c_char, c_void, CString};
use std::ptr;
use std::thread;
use std::time::{Duration, Instant};

use rdkafka_ll::*;

#[derive(Clone, Copy, Debug)]
enum Wakeup {
    BlockingPoll,
    IoEvent,
}

/// A producer handle that may be used from the drain thread too.
#[derive(Clone, Copy)]
struct Client(*mut rd_kafka_t);

// SAFETY: librdkafka client handles may be used from any thread.
unsafe impl Send for Client {}

fn main() {
    let mut args = std::env::args().skip(1);
    let messages: usize = args.next().map_or(1_000_000, |text| text.parse().expect("MESSAGES must be a number"));
    let rounds: usize = args.next().map_or(5, |text| text.parse().expect("ROUNDS must be a number"));

    let mut results: Vec<(Wakeup, Vec<f64>, Vec<u64>)> = vec![
        (Wakeup::BlockingPoll, Vec::new(), Vec::new()),
        (Wakeup::IoEvent, Vec::new(), Vec::new()),
    ];
    for _ in 0..rounds {
        for (mode, rates, wakeups) in &mut results {
            let (rate, wakeup_count) = run(*mode, messages);
            rates.push(rate);
            wakeups.push(wakeup_count);
        }
    }

    for (mode, mut rates, wakeups) in results {
        rates.sort_by(f64::total_cmp);
        let median = rates[rates.len() / 2];
        println!(
            "{mode:?}: median {median:.0} msgs/s (min {:.0}, max {:.0}), wake-ups per round {wakeups:?}",
            rates[0],
            rates[rates.len() - 1]
        );
    }
}

/// Produces `messages` messages and drains their reports on a thread that
/// waits the given way. Returns messages per second and the wake-up count.
fn run(mode: Wakeup, messages: usize) -> (f64, u64) {
    let client = Client(new_producer());
    let started = Instant::now();

    let drain = thread::spawn(move || drain_reports(client, mode, messages));

    let topic = CString::new("wakeup").unwrap();
    let payload = [7u8; 100];
    for _ in 0..messages {
        // SAFETY: the handle is valid; the topic and payload outlive the
        // call, and librdkafka copies the payload (RD_KAFKA_MSG_F_COPY).
        let error = unsafe {
            rd_kafka_producev(
                client.0,
                RD_KAFKA_VTYPE_TOPIC,
                topic.as_ptr(),
                RD_KAFKA_VTYPE_VALUE,
                payload.as_ptr() as *mut c_void,
                payload.len(),
                RD_KAFKA_VTYPE_MSGFLAGS,
                RD_KAFKA_MSG_F_COPY | RD_KAFKA_MSG_F_BLOCK,
                RD_KAFKA_VTYPE_END,
            )
        };
        assert_eq!(error, RD_KAFKA_RESP_ERR_NO_ERROR, "producev failed");
    }

    let wakeups = drain.join().expect("the drain thread panicked");
    let rate = messages as f64 / started.elapsed().as_secs_f64();

    // SAFETY: the drain thread is done, so nothing else uses the handle.
    unsafe { rd_kafka_destroy(client.0) };
    (rate, wakeups)
}

fn new_producer() -> *mut rd_kafka_t {
    let mut errstr = [0 as c_char; 512];
    // SAFETY: rd_kafka_conf_new has no preconditions.
    let conf = unsafe { rd_kafka_conf_new() };
    for (key, value) in [("test.mock.num.brokers", "3"), ("linger.ms", "5"), ("acks", "all")] {
        let (key, value) = (CString::new(key).unwrap(), CString::new(value).unwrap());
        // SAFETY: conf is valid; the strings are NUL-terminated.
        let result = unsafe { rd_kafka_conf_set(conf, key.as_ptr(), value.as_ptr(), errstr.as_mut_ptr(), errstr.len()) };
        assert_eq!(result, RD_KAFKA_CONF_OK, "rd_kafka_conf_set failed");
    }
    // SAFETY: conf is valid; rd_kafka_new takes it on success.
    let client = unsafe {
        rd_kafka_conf_set_events(conf, RD_KAFKA_EVENT_DR);
        rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr.as_mut_ptr(), errstr.len())
    };
    assert!(!client.is_null(), "rd_kafka_new failed");
    client
}

/// Counts delivery reports until `messages` arrived; returns how often the
/// thread woke up.
fn drain_reports(client: Client, mode: Wakeup, messages: usize) -> u64 {
    // SAFETY: the handle is valid until the caller joins this thread.
    let queue = unsafe { rd_kafka_queue_get_main(client.0) };
    let mut pipe = [0; 2];
    if let Wakeup::IoEvent = mode {
        // SAFETY: pipe is a valid array of two descriptors; the queue is valid.
        unsafe {
            assert_eq!(libc::pipe2(pipe.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC), 0);
            rd_kafka_queue_io_event_enable(queue, pipe[1], b"1".as_ptr().cast(), 1);
        }
    }

    let mut delivered = 0;
    let mut wakeups = 0;
    while delivered < messages {
        let timeout_ms = match mode {
            Wakeup::BlockingPoll => 1000,
            Wakeup::IoEvent => {
                wait_readable(pipe[0]);
                0
            }
        };
        wakeups += 1;
        loop {
            // SAFETY: the queue is valid; the event is ours to destroy.
            let event = unsafe { rd_kafka_queue_poll(queue, timeout_ms) };
            if event.is_null() {
                break;
            }
            // SAFETY: the event is valid until destroyed here.
            unsafe {
                delivered += rd_kafka_event_message_count(event);
                rd_kafka_event_destroy(event);
            }
            if let Wakeup::BlockingPoll = mode {
                break;
            }
        }
    }

    // SAFETY: the queue reference and pipe are ours.
    unsafe {
        if let Wakeup::IoEvent = mode {
            rd_kafka_queue_io_event_enable(queue, -1, ptr::null(), 0);
            libc::close(pipe[0]);
            libc::close(pipe[1]);
        }
        rd_kafka_queue_destroy(queue);
    }
    wakeups
}

/// Sleeps until `fd` is readable (or 1 s passed), then empties it.
fn wait_readable(fd: i32) {
    let mut poll_fd = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
    let mut sink = [0u8; 64];
    // SAFETY: poll_fd and sink are valid for the calls.
    unsafe {
        libc::poll(&mut poll_fd, 1, Duration::from_secs(1).as_millis() as i32);
        while libc::read(fd, sink.as_mut_ptr().cast(), sink.len()) > 0 {}
    }
}
