//! An array that grows without moving its elements, so that other threads
//! may read them without a lock while it grows.
//!
//! Segment `k` has `FIRST_SEGMENT << k` elements and is allocated on
//! first use, so the capacity at most doubles what is used, and an element
//! keeps its address for the life of the array. Readers find a segment
//! with one acquire load ([`OnceLock::get`]).

// The models of `model_check` make their slots one by one, so they leave
// the zeroed allocation unused.
#![cfg_attr(all(test, loom), allow(dead_code))]

use std::alloc::{alloc_zeroed, handle_alloc_error, Layout};
use std::sync::OnceLock;

/// The length of the first segment. The models of `model_check` use a
/// short one, because each element of a segment there is a set of `loom`
/// atomics that every execution creates.
#[cfg(not(all(test, loom)))]
const FIRST_SEGMENT: usize = 64;
#[cfg(all(test, loom))]
const FIRST_SEGMENT: usize = 2;

/// Enough segments for every `u32` index: with the first segment of 64,
/// 27 segments hold 64 * (2^27 - 1) elements, more than 2^32. The models'
/// short first segment covers fewer, which they never reach.
const SEGMENTS: usize = 27;

/// Types for which all-zero bytes are a valid value.
///
/// # Safety
///
/// An implementation promises that an all-zero `Self` is valid, as it is
/// for integers and the standard atomics.
pub(crate) unsafe trait Zeroable {}

/// Allocates a segment of the given length, with the function that makes
/// one element.
type Allocate<T> = fn(usize, fn() -> T) -> Box<[T]>;

/// The array. Elements are made when their segment is allocated, and live
/// until the array is dropped.
pub(crate) struct Segments<T> {
    segments: [OnceLock<Box<[T]>>; SEGMENTS],
    /// Makes one element.
    make: fn() -> T,
    allocate: Allocate<T>,
}

impl<T> Segments<T> {
    /// Creates an empty array whose elements start as `make()` returns them.
    pub(crate) const fn new(make: fn() -> T) -> Self {
        Self {
            segments: [const { OnceLock::new() }; SEGMENTS],
            make,
            allocate: allocate_made,
        }
    }

    /// Creates an empty array whose elements start as all zeros. A segment
    /// is then allocated without writing to it, so its pages are mapped,
    /// zeroed and brought into the cache by their first use. Writing a
    /// whole segment at allocation left its later parts out of the cache by
    /// the time they were used (a profile of 1,000,000 sends).
    pub(crate) const fn zeroed() -> Self
    where
        T: Zeroable,
    {
        Self {
            segments: [const { OnceLock::new() }; SEGMENTS],
            make: zeroed_element,
            allocate: allocate_zeroed,
        }
    }

    /// Returns the element at `index`, or `None` when its segment has not
    /// been allocated.
    #[inline]
    pub(crate) fn get(&self, index: u32) -> Option<&T> {
        let (segment, offset) = locate(index);
        self.segments.get(segment)?.get()?.get(offset)
    }

    /// Returns the element at `index`, allocating its segment first when
    /// needed. Threads that allocate the same segment at once wait for one
    /// another, and one allocation wins.
    #[inline]
    pub(crate) fn get_or_allocate(&self, index: u32) -> &T {
        let (segment, offset) = locate(index);
        let elements = self.segments[segment].get_or_init(|| (self.allocate)(FIRST_SEGMENT << segment, self.make));
        &elements[offset]
    }
}

fn allocate_made<T>(len: usize, make: fn() -> T) -> Box<[T]> {
    (0..len).map(|_| make()).collect()
}

fn zeroed_element<T: Zeroable>() -> T {
    // SAFETY: all zeros are a valid `T`, which `Zeroable` promises.
    unsafe { std::mem::zeroed() }
}

/// Allocates `len` zeroed elements with `alloc_zeroed`, which takes fresh
/// pages from the system for a large segment without touching them.
fn allocate_zeroed<T: Zeroable>(len: usize, make: fn() -> T) -> Box<[T]> {
    let layout = Layout::array::<T>(len).expect("a segment's size overflows isize");
    if layout.size() == 0 {
        return allocate_made(len, make);
    }
    // SAFETY: the layout's size is not zero.
    let pointer = unsafe { alloc_zeroed(layout) }.cast::<T>();
    if pointer.is_null() {
        handle_alloc_error(layout);
    }
    // SAFETY: the global allocator gave the memory with the layout of
    // `[T; len]`, the layout `Box<[T]>` frees it with, and its zero bytes
    // are `len` valid elements, which `Zeroable` promises.
    unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(pointer, len)) }
}

/// Returns the segment of `index` and its offset there. Segment `k` starts
/// at `FIRST_SEGMENT * (2^k - 1)`.
#[inline]
fn locate(index: u32) -> (usize, usize) {
    let position = index as usize / FIRST_SEGMENT + 1;
    let segment = (usize::BITS - 1 - position.leading_zeros()) as usize;
    let start = FIRST_SEGMENT * ((1 << segment) - 1);
    (segment, index as usize - start)
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    // SAFETY: all zeros are a valid `u64`.
    unsafe impl Zeroable for u64 {}

    #[test]
    fn locate_covers_indexes_in_order() {
        let mut expected = (0, 0);
        for index in 0..FIRST_SEGMENT as u32 * 15 {
            assert_eq!(locate(index), expected, "segment and offset of index {index}");
            expected.1 += 1;
            if expected.1 == FIRST_SEGMENT << expected.0 {
                expected = (expected.0 + 1, 0);
            }
        }
    }

    #[test]
    fn locate_fits_the_largest_index() {
        let (segment, offset) = locate(u32::MAX);
        assert!(segment < SEGMENTS, "u32::MAX falls in segment {segment}");
        assert!(offset < FIRST_SEGMENT << segment, "offset {offset} is past segment {segment}");
    }

    #[test]
    fn zeroed_segments_start_at_zero() {
        let segments: Segments<u64> = Segments::zeroed();
        for index in [0, 63, 64, FIRST_SEGMENT as u32 * 40] {
            assert_eq!(*segments.get_or_allocate(index), 0, "element {index}");
        }
    }

    #[test]
    fn elements_keep_their_address() {
        let segments = Segments::new(|| 7u64);
        assert!(segments.get(0).is_none(), "an element before its segment was allocated");

        let first: *const u64 = segments.get_or_allocate(3);
        for index in 0..(FIRST_SEGMENT as u32) * 8 {
            assert_eq!(*segments.get_or_allocate(index), 7, "initial value at {index}");
        }
        assert_eq!(segments.get(3).map(|element| element as *const u64), Some(first), "address of element 3");
        assert!(segments.get(FIRST_SEGMENT as u32 * 64).is_none(), "an element of a segment never allocated");
    }
}
