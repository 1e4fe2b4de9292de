//! The future of one send's delivery.

use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use super::slot::{is_resolved, SlotCell};
use super::{split_id, table_number, Delivery, DeliveryError, DeliveryTable};
use crate::error::Error;
use crate::sync::Arc;
use crate::table_registry;

/// The pending result of [`Producer::send`](crate::Producer::send).
///
/// The producer resolves it exactly once: with the delivery, with a
/// [`DeliveryError`] when the message failed or was purged, or with
/// [`Error::Closed`] when the producer was dropped first. That happens on
/// the producer's event thread or inside a later
/// [`Producer::send`](crate::Producer::send) on a sending thread, so a
/// waker may be woken on either.
///
/// It stays pending no longer than `message.timeout.ms` plus the time to
/// report. With `message.timeout.ms=0`, which librdkafka reads as no
/// limit, an undelivered message keeps it pending until the producer is
/// dropped.
///
/// Wait on it with [`wait`](Self::wait) or
/// [`wait_timeout`](Self::wait_timeout), check it with
/// [`is_ready`](Self::is_ready), or `.await` it on any executor.
///
/// Dropping it does not cancel the send.
#[must_use = "dropping the future ignores whether the message was delivered"]
pub struct DeliveryFuture {
    /// The slot's id, which also names the table, or [`TAKEN`] once the
    /// result was taken.
    id: u64,
}

/// The id of a future whose result was taken; no slot has id 0.
const TAKEN: u64 = 0;

impl DeliveryFuture {
    /// Makes the future of slot `id`, which `table.register` returned.
    pub(crate) fn new(table: &Arc<DeliveryTable>, id: u64) -> Self {
        debug_assert_eq!(table_number(id), table.number, "an id of another table");
        Self { id }
    }

    /// Returns the table. Only called while `id` is not [`TAKEN`].
    #[inline]
    fn table(&self) -> &DeliveryTable {
        debug_assert!(self.id != TAKEN, "the table of a taken future was used");
        let table = table_registry::get(table_number(self.id));
        // SAFETY: the slot `id` is owned by this future until it takes the
        // result or drops. Until then the table is alive: it holds a
        // strong reference to itself from its first send until it closes,
        // and after the close for as long as a future the close counted
        // owns a slot. A future the close did not count had freed its slot
        // already, the last thing it does with the table. The registry
        // entry, published before the first send and cleared only when the
        // table is dropped, points to it.
        unsafe { &*table }
    }

    /// Returns this future's slot. Only called while `id` is not
    /// [`TAKEN`], when the slot is allocated.
    #[inline]
    fn cell(&self) -> Option<&SlotCell> {
        self.table().slots.get(split_id(self.id).0)
    }

    /// Takes a delivered result without the table's lock, the common case.
    #[inline]
    fn take_delivered(&mut self) -> Option<Delivery> {
        let table = self.table();
        let cell = table.slots.get(split_id(self.id).0)?;
        let delivery = if table.unfenced_reads {
            let table_id = table.id;
            let (delivery, raced_close) = cell.take_delivered_unfenced(&table.stamp_base)?;
            // From here on the table may be freed, unless a close counted
            // this slot.
            if raced_close {
                self.settle_close_race(table_id);
            }
            delivery
        } else {
            cell.take_delivered(&table.stamp_base)?
        };
        self.id = TAKEN;
        Some(delivery)
    }

    /// Gives back the count of a close of the table with `table_id` that
    /// counted this future's slot after the future took its result (see
    /// `close_race`). It does not touch the table unless a close listed
    /// the slot.
    #[cold]
    pub(super) fn settle_close_race(&self, table_id: u64) {
        let (index, _) = split_id(self.id);
        DeliveryTable::settle_raced_read(table_number(self.id), table_id, index);
    }

    /// Returns whether waiting would block the producer's event thread: the
    /// caller runs on it and the report has not arrived.
    fn would_block_event_thread(&self) -> bool {
        self.table().on_event_thread() && !self.is_ready()
    }

    /// Blocks until the delivery report arrives.
    ///
    /// On the producer's own event thread (in a waker), it returns
    /// [`Error::OnEventThread`] unless the report is already there:
    /// blocking that thread would hold up every report that no sending
    /// thread happens to serve, possibly this one too.
    #[inline]
    pub fn wait(mut self) -> Result<Delivery, DeliveryError> {
        match self.take_delivered() {
            Some(delivery) => Ok(delivery),
            None => self.wait_under_lock(None),
        }
    }

    /// Blocks until the delivery report arrives, or returns
    /// [`Error::TimedOut`] after `timeout`. The message may still be
    /// delivered after a timeout.
    ///
    /// On the producer's own event thread it returns
    /// [`Error::OnEventThread`] unless the report is already there, as
    /// [`wait`](Self::wait) does.
    #[inline]
    pub fn wait_timeout(mut self, timeout: Duration) -> Result<Delivery, DeliveryError> {
        match self.take_delivered() {
            Some(delivery) => Ok(delivery),
            None => self.wait_under_lock(Some(timeout)),
        }
    }

    /// Waits for a result that is not delivered yet, or delivered after
    /// the close, under the table's lock: the rest of
    /// [`wait`](Self::wait) and [`wait_timeout`](Self::wait_timeout).
    #[inline(never)]
    fn wait_under_lock(mut self, timeout: Option<Duration>) -> Result<Delivery, DeliveryError> {
        if self.would_block_event_thread() {
            return Err(Error::OnEventThread { operation: "wait for a delivery" }.into());
        }

        let (result, last) = self.table().wait_slot(self.id, timeout);
        let Some(result) = result else {
            let timeout = timeout.unwrap_or(Duration::MAX);
            return Err(Error::TimedOut { operation: "delivery report", timeout }.into());
        };
        self.id = TAKEN;
        // Dropping the last reference may free the table, which nothing
        // borrows any more.
        drop(last);
        result
    }

    /// Returns whether the result has arrived, without blocking.
    pub fn is_ready(&self) -> bool {
        self.id != TAKEN && self.cell().is_some_and(|cell| is_resolved(cell.state()))
    }
}

impl Future for DeliveryFuture {
    type Output = Result<Delivery, DeliveryError>;

    fn poll(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<Self::Output> {
        assert!(self.id != TAKEN, "a DeliveryFuture was polled after it returned Ready");
        if let Some(delivery) = self.take_delivered() {
            return Poll::Ready(Ok(delivery));
        }

        let (result, last) = self.table().poll_slot(self.id, context.waker());
        if result.is_ready() {
            self.id = TAKEN;
        }
        drop(last);
        result
    }
}

impl Drop for DeliveryFuture {
    #[inline]
    fn drop(&mut self) {
        if self.id != TAKEN {
            self.release();
        }
    }
}

impl DeliveryFuture {
    /// Lets go of the slot of a future dropped before its result was taken.
    #[inline(never)]
    fn release(&mut self) {
        if self.cell().is_some_and(SlotCell::drop_delivered) {
            self.id = TAKEN;
            return;
        }
        let released = self.table().release(self.id);
        self.id = TAKEN;
        if catch_unwind(AssertUnwindSafe(|| drop(released))).is_err() {
            log::error!("dropping a waker or payload of a dropped delivery future panicked");
        }
    }
}

impl std::fmt::Debug for DeliveryFuture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeliveryFuture")
            .field("id", &self.id)
            .field("ready", &self.is_ready())
            .finish()
    }
}
