//! Stress tests of the producer's delivery table across threads, on the
//! mock cluster: blocks evicted across more than four producers, threads
//! that exit mid-block, reads racing the producer's drop, and table
//! numbers reused while old futures are still read.

#![allow(clippy::result_large_err)]

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::task::{Context, Poll, Wake, Waker};
use std::thread;
use std::time::{Duration, Instant};

use rdkafka_e2e::{Target, WAIT_TIMEOUT};
use rdkafka_hl::{Config, DeliveryFuture, Producer, Record};

fn producer(config: Config) -> Producer {
    Producer::new(config).expect("producer")
}

/// Threads send through six producers in turn, so each thread's blocks are
/// evicted; some threads exit after a few sends. Each flush must return only
/// once every send of its producer is resolved.
#[test]
fn evicted_blocks_flush() {
    let target = Target::mock();
    let topics: Vec<String> = (0..6).map(|n| target.create_topic(&format!("threads-evict-{n}"), 2)).collect();
    let producers: Vec<Producer> = (0..6).map(|_| producer(target.config())).collect();

    for round in 0..5 {
        let futures: Vec<Vec<(usize, DeliveryFuture)>> = thread::scope(|scope| {
            let handles: Vec<_> = (0..8)
                .map(|t| {
                    let producers = &producers;
                    let topics = &topics;
                    scope.spawn(move || {
                        let mut futures = Vec::new();
                        // Threads 0..4 exit after a few sends, mid-block.
                        let sends = if t < 4 { 3 + t } else { 200 };
                        for k in 0..sends {
                            let p = (k + t) % producers.len();
                            let future = producers[p].send(Record::to(&topics[p]).value("v")).expect("send");
                            futures.push((p, future));
                            // Every third send owns its value.
                            if k % 3 == 0 {
                                let future = producers[p].send(Record::to(&topics[p]).value(vec![1u8; 10])).expect("send owned");
                                futures.push((p, future));
                            }
                        }
                        futures
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });

        for (p, producer) in producers.iter().enumerate() {
            producer.flush(WAIT_TIMEOUT).expect("flush");
            let pending = futures.iter().flatten().filter(|(q, f)| *q == p && !f.is_ready()).count();
            assert_eq!(pending, 0, "round {round}: flush of producer {p} returned with {pending} futures pending");
            assert_eq!(producer.in_flight_count(), 0, "round {round}: in-flight count of producer {p}");
        }
        for (p, future) in futures.into_iter().flatten() {
            let delivery = future.wait_timeout(WAIT_TIMEOUT).expect("delivery");
            assert_eq!(delivery.topic, topics[p], "round {round}: topic of a send to producer {p}");
        }
    }
}

/// Futures read, polled, checked and dropped from several threads while
/// the producer is dropped. Producers are created and dropped again and
/// again, so that table numbers are reused.
#[test]
fn reads_race_producer_drop() {
    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    let target = Target::mock();
    let topic = target.create_topic("threads-drop", 1);
    let rounds = 30;
    for round in 0..rounds {
        let producer = producer(target.config());
        let mut futures: Vec<DeliveryFuture> = (0..400).map(|_| producer.send(Record::to(&topic).value("x")).unwrap()).collect();
        // Half are delivered before the drop starts.
        if round % 2 == 0 {
            producer.flush(WAIT_TIMEOUT).unwrap();
        }
        futures.extend((0..100).map(|_| producer.send(Record::to(&topic).value(vec![2u8; 4])).unwrap()));
        let barrier = Arc::new(Barrier::new(5));
        let mut chunks: Vec<Vec<DeliveryFuture>> = (0..4).map(|_| Vec::new()).collect();
        for (n, future) in futures.into_iter().enumerate() {
            chunks[n % 4].push(future);
        }
        let readers: Vec<_> = chunks
            .into_iter()
            .enumerate()
            .map(|(t, chunk)| {
                let barrier = Arc::clone(&barrier);
                thread::spawn(move || {
                    barrier.wait();
                    let mut resolved = 0;
                    for (k, mut future) in chunk.into_iter().enumerate() {
                        match (k + t) % 3 {
                            0 => {
                                let _ = future.wait_timeout(WAIT_TIMEOUT).map_err(|e| assert!(!e.to_string().contains("timed out"), "{e}"));
                                resolved += 1;
                            }
                            1 => drop(future),
                            _ => {
                                let count = Arc::new(Count(AtomicUsize::new(0)));
                                let waker = Waker::from(Arc::clone(&count));
                                let started = Instant::now();
                                loop {
                                    match Pin::new(&mut future).poll(&mut Context::from_waker(&waker)) {
                                        Poll::Ready(_) => break,
                                        Poll::Pending => {
                                            assert!(started.elapsed() < WAIT_TIMEOUT, "a polled future hung");
                                            thread::sleep(Duration::from_micros(200));
                                        }
                                    }
                                }
                                resolved += 1;
                            }
                        }
                    }
                    resolved
                })
            })
            .collect();
        barrier.wait();
        drop(producer);
        for reader in readers {
            reader.join().unwrap();
        }
        // A producer made while the old futures were read reuses numbers.
        let other = self::producer(target.config());
        let late = other.send(Record::to(&topic).value("late")).unwrap();
        assert_eq!(late.wait_timeout(WAIT_TIMEOUT).unwrap().topic, topic);
    }
}

/// A thread sends to A, then B, then A again, while older futures of a
/// dropped producer are read after newer producers took table numbers.
#[test]
fn interleaved_producers_and_old_futures() {
    let target = Target::mock();
    let topic_a = target.create_topic("threads-a", 1);
    let topic_b = target.create_topic("threads-b", 1);
    let mut old = Vec::new();
    for round in 0..20 {
        let a = producer(target.config());
        let b = producer(target.config());
        let mut futures = Vec::new();
        for _ in 0..20 {
            futures.push((true, a.send(Record::to(&topic_a).value("a")).unwrap()));
            futures.push((false, b.send(Record::to(&topic_b).value("b")).unwrap()));
            futures.push((true, a.send(Record::to(&topic_a).value("a")).unwrap()));
        }
        a.flush(WAIT_TIMEOUT).unwrap();
        b.flush(WAIT_TIMEOUT).unwrap();
        drop(a);
        // Keep the previous round's futures unread until now.
        for (is_a, future) in old.drain(..) {
            let delivery: rdkafka_hl::Delivery = DeliveryFuture::wait(future).unwrap();
            assert_eq!(delivery.topic, if is_a { &topic_a } else { &topic_b }, "round {round}");
        }
        old = futures;
        drop(b);
    }
}

/// Sends fail fast against an unreachable broker; owned and borrowed
/// payloads, purge and drop: every future resolves once, and drop returns.
#[test]
fn failures_and_purge() {
    for round in 0..10 {
        let config = Config::new()
            .set("bootstrap.servers", "127.0.0.1:1")
            .unwrap()
            .set("message.timeout.ms", "300")
            .unwrap();
        let producer = producer(config);
        let mut futures = Vec::new();
        for n in 0..200 {
            let record = if n % 2 == 0 { Record::to("threads-fail").value(vec![n as u8; 3]) } else { Record::to("threads-fail").value("b") };
            futures.push(producer.send(record).unwrap());
        }
        if round % 2 == 0 {
            producer.purge(rdkafka_hl::PurgeScope::All).unwrap();
        }
        let started = Instant::now();
        let mut owned_back = 0;
        let mut errors = 0;
        let keep: Vec<DeliveryFuture> = futures.split_off(100);
        for future in futures {
            match future.wait_timeout(WAIT_TIMEOUT) {
                Ok(delivery) => panic!("round {round}: delivered to an unreachable broker: {delivery:?}"),
                Err(error) => {
                    assert!(!error.to_string().contains("timed out after"), "round {round}: {error}");
                    errors += 1;
                    owned_back += usize::from(error.value.is_some());
                }
            }
        }
        assert_eq!(errors, 100);
        assert_eq!(owned_back, 50, "round {round}: owned values handed back");
        producer.flush(Duration::from_secs(10)).unwrap();
        assert_eq!(producer.in_flight_count(), 0);
        drop(producer);
        assert!(started.elapsed() < Duration::from_secs(20));
        for future in keep {
            assert!(future.is_ready(), "round {round}: a future still pending after the producer was dropped");
            assert!(future.wait().is_err(), "round {round}: a send to an unreachable broker was delivered");
        }
    }
}

/// Flushes race sends from threads that come and go: after a flush
/// returns, every send finished before it started must be resolved.
#[test]
fn flush_races_sends() {
    use std::sync::Mutex;
    let target = Target::mock();
    let topics: Vec<String> = (0..6).map(|n| target.create_topic(&format!("threads-race-{n}"), 2)).collect();
    let producers: Vec<Producer> = (0..6).map(|_| producer(target.config())).collect();
    let sent: Mutex<Vec<(usize, DeliveryFuture)>> = Mutex::new(Vec::new());
    let stop = std::sync::atomic::AtomicBool::new(false);
    let checks = AtomicUsize::new(0);

    thread::scope(|scope| {
        for t in 0..6 {
            let (producers, topics, sent, stop) = (&producers, &topics, &sent, &stop);
            scope.spawn(move || {
                let mut generation = 0;
                while !stop.load(Ordering::Relaxed) {
                    // A short-lived thread per burst, exiting mid-block.
                    thread::scope(|inner| {
                        inner.spawn(|| {
                            for k in 0..(5 + (t + generation) % 23) {
                                let p = (k * 7 + t) % producers.len();
                                let record = if k % 5 == 0 {
                                    Record::to(&topics[p]).value(vec![3u8; 8])
                                } else {
                                    Record::to(&topics[p]).value("r")
                                };
                                let future = producers[p].send(record).expect("send");
                                sent.lock().unwrap().push((p, future));
                            }
                        });
                    });
                    generation += 1;
                }
            });
        }
        let (producers, sent, stop, checks) = (&producers, &sent, &stop, &checks);
        scope.spawn(move || {
            let started = Instant::now();
            while started.elapsed() < Duration::from_secs(8) {
                for (p, producer) in producers.iter().enumerate() {
                    let before = sent.lock().unwrap().len();
                    producer.flush(WAIT_TIMEOUT).expect("flush");
                    let sent = sent.lock().unwrap();
                    let pending = sent[..before].iter().filter(|(q, f)| *q == p && !f.is_ready()).count();
                    assert_eq!(pending, 0, "flush of producer {p} returned with {pending} earlier sends unresolved");
                    checks.fetch_add(1, Ordering::Relaxed);
                }
            }
            stop.store(true, Ordering::Relaxed);
        });
    });
    let sent = sent.into_inner().unwrap();
    eprintln!("{} sends, {} flush checks", sent.len(), checks.load(Ordering::Relaxed));
    for (p, future) in sent {
        assert_eq!(future.wait_timeout(WAIT_TIMEOUT).expect("delivery").topic, topics[p]);
    }
    for producer in &producers {
        assert_eq!(producer.in_flight_count(), 0);
    }
}

/// Sends, waits and drops the last producer handle from thread-local
/// destructors that run after the library's own thread-locals are gone.
#[test]
fn thread_local_destructors() {
    use std::cell::RefCell;
    struct Late {
        producer: Option<Arc<Producer>>,
        topic: String,
        earlier: Vec<DeliveryFuture>,
        done: std::sync::mpsc::Sender<Result<usize, String>>,
    }
    impl Drop for Late {
        fn drop(&mut self) {
            let producer = self.producer.take().unwrap();
            let mut delivered = 0;
            for future in self.earlier.drain(..) {
                delivered += usize::from(future.wait_timeout(WAIT_TIMEOUT).is_ok());
            }
            for _ in 0..40 {
                match producer.send(Record::to(&self.topic).value("late")) {
                    Ok(future) => delivered += usize::from(future.wait_timeout(WAIT_TIMEOUT).is_ok()),
                    Err(error) => {
                        let _ = self.done.send(Err(error.to_string()));
                        return;
                    }
                }
            }
            // The last handle: the producer shuts down in a destructor.
            drop(producer);
            let _ = self.done.send(Ok(delivered));
        }
    }
    thread_local! {
        static LATE: RefCell<Option<Late>> = const { RefCell::new(None) };
    }

    let target = Target::mock();
    let topic = target.create_topic("threads-tls", 1);
    for round in 0..5 {
        let producer = Arc::new(producer(target.config()));
        let (done, results) = std::sync::mpsc::channel();
        {
            let (producer, topic) = (Arc::clone(&producer), topic.clone());
            thread::spawn(move || {
                // Registered first, so destroyed after the library's
                // thread-locals, which the sends below create.
                LATE.with(|late| {
                    *late.borrow_mut() = Some(Late { producer: None, topic: topic.clone(), earlier: Vec::new(), done })
                });
                let earlier: Vec<DeliveryFuture> = (0..5).map(|_| producer.send(Record::to(&topic).value("early")).unwrap()).collect();
                LATE.with(|late| {
                    let mut late = late.borrow_mut();
                    let late = late.as_mut().unwrap();
                    late.earlier = earlier;
                    late.producer = Some(producer);
                });
            });
        }
        drop(producer);
        let result = results.recv_timeout(WAIT_TIMEOUT).expect("the destructor finished");
        assert_eq!(result, Ok(45), "round {round}");
    }
}

/// Futures as tasks of a small thread pool, woken by their wakers, while
/// the producer is dropped: each task finishes exactly once.
#[test]
fn tasks_woken_across_drop() {
    use std::sync::mpsc;
    use std::sync::Mutex;

    struct Task {
        future: Mutex<Option<DeliveryFuture>>,
        queue: Mutex<mpsc::Sender<Arc<Task>>>,
        wakes: AtomicUsize,
    }
    impl Wake for Task {
        fn wake(self: Arc<Self>) {
            self.wakes.fetch_add(1, Ordering::SeqCst);
            let queue = self.queue.lock().unwrap().clone();
            let _ = queue.send(self);
        }
    }

    let target = Target::mock();
    let topic = target.create_topic("threads-tasks", 2);
    for round in 0..10 {
        let producer = producer(target.config());
        let (queue, tasks) = mpsc::channel::<Arc<Task>>();
        let tasks = Arc::new(Mutex::new(tasks));
        let finished = Arc::new(AtomicUsize::new(0));
        let count = 300;
        let all: Vec<Arc<Task>> = (0..count)
            .map(|n| {
                let record = if n % 4 == 0 { Record::to(&topic).value(vec![4u8; 2]) } else { Record::to(&topic).value("t") };
                Arc::new(Task {
                    future: Mutex::new(Some(producer.send(record).unwrap())),
                    queue: Mutex::new(queue.clone()),
                    wakes: AtomicUsize::new(0),
                })
            })
            .collect();
        for task in &all {
            queue.send(Arc::clone(task)).unwrap();
        }
        drop(queue);
        let workers: Vec<_> = (0..3)
            .map(|_| {
                let (tasks, finished) = (Arc::clone(&tasks), Arc::clone(&finished));
                thread::spawn(move || loop {
                    let next = tasks.lock().unwrap().recv_timeout(Duration::from_millis(500));
                    let Ok(task) = next else { return };
                    let waker = Waker::from(Arc::clone(&task));
                    let mut slot = task.future.lock().unwrap();
                    let Some(future) = slot.as_mut() else { continue };
                    if Pin::new(future).poll(&mut Context::from_waker(&waker)).is_ready() {
                        *slot = None;
                        finished.fetch_add(1, Ordering::SeqCst);
                    }
                })
            })
            .collect();
        if round % 2 == 1 {
            thread::sleep(Duration::from_millis(2));
        }
        drop(producer);
        for worker in workers {
            worker.join().unwrap();
        }
        assert_eq!(finished.load(Ordering::SeqCst), count, "round {round}: tasks finished");
        for (n, task) in all.iter().enumerate() {
            assert!(task.future.lock().unwrap().is_none(), "round {round}: task {n} never finished");
            assert!(task.wakes.load(Ordering::SeqCst) <= 1, "round {round}: task {n} woken twice");
        }
    }
}
