//! A memory barrier on every running thread at once, with Linux's
//! `membarrier` system call. It lets a rare operation pay for the barriers
//! that a frequent one leaves out.
//!
//! It uses the call's global command, which needs no registration and
//! waits until every processor has passed a scheduling point: several
//! milliseconds (8 to 18 on a 2-core virtual machine). The command for
//! one process is much faster, but its registration slowed the producer
//! benchmark's sending by 7 % on that machine.
//!
//! Where the call is missing (other systems, Linux before 4.3, Miri and
//! the `loom` models), [`available`] returns `false` and callers keep
//! their own barriers.

/// Returns whether [`fence_all_threads`] works on this system.
pub(crate) fn available() -> bool {
    imp::available()
}

/// Runs a full memory barrier on every thread: each running thread runs
/// one before this returns, and a thread that is not running ran one when
/// it was switched out. Returns whether that happened. Only call it once
/// [`available`] returned `true`.
pub(crate) fn fence_all_threads() -> bool {
    imp::fence_all_threads()
}

#[cfg(all(target_os = "linux", not(miri), not(loom)))]
mod imp {
    use std::ffi::c_int;
    use std::sync::OnceLock;

    // The commands of the system call, from the kernel's
    // include/uapi/linux/membarrier.h.
    const MEMBARRIER_CMD_QUERY: c_int = 0;
    const MEMBARRIER_CMD_GLOBAL: c_int = 1;

    pub(super) fn available() -> bool {
        static SUPPORTED: OnceLock<bool> = OnceLock::new();
        *SUPPORTED.get_or_init(|| {
            let commands = membarrier(MEMBARRIER_CMD_QUERY);
            commands >= 0 && commands & libc::c_long::from(MEMBARRIER_CMD_GLOBAL) != 0
        })
    }

    pub(super) fn fence_all_threads() -> bool {
        membarrier(MEMBARRIER_CMD_GLOBAL) == 0
    }

    fn membarrier(command: c_int) -> libc::c_long {
        // SAFETY: membarrier takes a command and two integer arguments,
        // reads no memory of ours and writes none.
        unsafe { libc::syscall(libc::SYS_membarrier, command, 0 as c_int, 0 as c_int) }
    }
}

#[cfg(not(all(target_os = "linux", not(miri), not(loom))))]
mod imp {
    pub(super) fn available() -> bool {
        false
    }

    pub(super) fn fence_all_threads() -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn fence_works_once_available() {
        // A sandbox may refuse the call, so only a system that has it
        // expects it to work.
        if super::available() {
            assert!(super::fence_all_threads(), "membarrier failed, although its query lists it");
        }
    }
}
