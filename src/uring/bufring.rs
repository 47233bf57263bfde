//! The provided-buffer ring: one registered group of equal buffers per worker
//! that receives land in. The kernel picks a buffer when data arrives, so an idle
//! connection holds none; the data plane gives each buffer back once its bytes
//! have been sent on. Never hands out the same buffer twice.

use std::io;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::types::BufRingEntry;

use super::ring::Ring;

pub use crate::reactor::BufId;

/// Anonymous memory from mmap, unmapped on drop.
struct Mapping {
    ptr: *mut u8,
    len: usize,
}

impl Mapping {
    fn new(len: usize) -> io::Result<Mapping> {
        // SAFETY: an anonymous private mapping with no address hint; the result
        // is checked for MAP_FAILED before use.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Mapping {
            ptr: ptr.cast(),
            len,
        })
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: ptr/len are exactly what mmap returned; nothing borrows the
        // memory any more (the ring that used it is drained and dropped first).
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

pub struct BufRing {
    entries: Mapping,
    buffers: Mapping,
    count: u16,
    mask: u16,
    buf_size: u32,
    group: u16,
    /// Our copy of the tail; published to the kernel with a release store.
    tail: u16,
    /// Who has each buffer, indexed by id.
    state: Vec<Lease>,
}

/// Where one buffer is, beyond the kernel's own view: one small record per
/// buffer, so the bookkeeping of a send costs one cache line.
#[derive(Debug, Clone, Copy, Default)]
struct Lease {
    /// Handed to us by a receive and not yet given back.
    held: bool,
    /// Given back while lent; goes to the kernel when the last send completes.
    release_pending: bool,
    /// Sends reading it that have not completed.
    lent: u16,
}

impl BufRing {
    /// Maps `count` (a power of two) buffers of `buf_size` bytes, registers them
    /// with `ring` as buffer group `group`, and hands them all to the kernel.
    /// Buffer pages are only touched, and so only resident, once used.
    pub(super) fn new(ring: &Ring, group: u16, count: u16, buf_size: u32) -> io::Result<BufRing> {
        assert!(
            count.is_power_of_two(),
            "buffer count must be a power of two"
        );
        let entries = Mapping::new(count as usize * std::mem::size_of::<BufRingEntry>())?;
        let buffers = Mapping::new(count as usize * buf_size as usize)?;
        // SAFETY: `entries` is page-aligned (mmap) and sized for `count` entries;
        // it stays mapped until this BufRing is dropped, after the ring's last use.
        unsafe {
            ring.submitter()
                .register_buf_ring_with_flags(entries.ptr as u64, count, group, 0)?;
        }
        let mut ring = BufRing {
            entries,
            buffers,
            count,
            mask: count - 1,
            buf_size,
            group,
            tail: 0,
            state: vec![Lease::default(); count as usize],
        };
        for id in 0..count {
            ring.push(BufId(id));
        }
        ring.publish();
        Ok(ring)
    }

    pub fn group(&self) -> u16 {
        self.group
    }

    pub fn buf_size(&self) -> u32 {
        self.buf_size
    }

    fn push(&mut self, id: BufId) {
        assert!(id.0 < self.count, "buffer id out of range");
        let slot = (self.tail & self.mask) as usize;
        // SAFETY: slot < count, so the entry lies inside the mapping; the kernel
        // only reads entries between its head and our published tail, and this
        // one is past the tail until `publish`.
        unsafe {
            let entry = &mut *(self.entries.ptr as *mut BufRingEntry).add(slot);
            entry.set_addr(self.buffers.ptr.add(id.0 as usize * self.buf_size as usize) as u64);
            entry.set_len(self.buf_size);
            entry.set_bid(id.0);
        }
        self.tail = self.tail.wrapping_add(1);
    }

    fn publish(&self) {
        // SAFETY: the tail field lives in the first entry's reserved bytes of a
        // valid, initialised, page-aligned ring; the kernel reads it with acquire
        // semantics, so a release store orders the entry writes before it.
        unsafe {
            let tail =
                BufRingEntry::tail(self.entries.ptr as *const BufRingEntry) as *const AtomicU16;
            (*tail).store(self.tail, Ordering::Release);
        }
    }

    fn lease(&mut self, id: BufId) -> &mut Lease {
        assert!(id.0 < self.count, "buffer id out of range");
        &mut self.state[id.0 as usize]
    }

    /// A receive completion handed us buffer `id`.
    pub(super) fn received(&mut self, id: BufId) {
        self.lease(id).held = true;
    }

    /// A send is about to read buffer `id`: it must be ours.
    pub(super) fn lend(&mut self, id: BufId) {
        let lease = self.lease(id);
        assert!(
            lease.held,
            "sending from buffer {} that no receive handed over",
            id.0
        );
        lease.lent += 1;
    }

    /// A send that read buffer `id` completed.
    pub(super) fn returned(&mut self, id: BufId) {
        let lease = self.lease(id);
        lease.lent -= 1;
        if lease.lent == 0 && std::mem::take(&mut lease.release_pending) {
            self.push(id);
            self.publish();
        }
    }

    /// Gives a buffer back to the kernel once its bytes have been sent on;
    /// while a send still reads it, it goes back when that send completes.
    /// WHY tracked here: handing the kernel a buffer a send still reads would
    /// let the next receive overwrite bytes in flight.
    pub fn recycle(&mut self, id: BufId) {
        let lease = self.lease(id);
        assert!(lease.held, "buffer {} given back twice", id.0);
        lease.held = false;
        if lease.lent > 0 {
            lease.release_pending = true;
            return;
        }
        self.push(id);
        self.publish();
    }

    /// The bytes `offset..offset+len` of buffer `id`, which must be ours.
    pub fn slice(&self, id: BufId, offset: u32, len: u32) -> &[u8] {
        assert!(id.0 < self.count && offset as u64 + len as u64 <= self.buf_size as u64);
        let lease = self.state[id.0 as usize];
        assert!(
            lease.held || lease.lent > 0,
            "buffer {} is the kernel's",
            id.0
        );
        // SAFETY: bounds checked above; the buffer is inside the mapping, and a
        // buffer a completion handed us (checked above) is not written by the
        // kernel again until it is given back and no send reads it.
        unsafe {
            std::slice::from_raw_parts(
                self.buffers
                    .ptr
                    .add(id.0 as usize * self.buf_size as usize + offset as usize),
                len as usize,
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring_and_buffers() -> (Ring, BufRing) {
        let ring = Ring::new().expect("io_uring is available for the unit tests");
        let bufs = BufRing::new(&ring, 7, 4, 4096).expect("buffer ring");
        (ring, bufs)
    }

    #[test]
    fn a_buffer_given_back_while_a_send_reads_it_waits_for_that_send() {
        let (_ring, mut bufs) = ring_and_buffers();
        let start = bufs.tail;
        bufs.received(BufId(2));
        bufs.lend(BufId(2));
        bufs.recycle(BufId(2));
        assert_eq!(
            bufs.tail, start,
            "the kernel got a buffer a send still reads"
        );
        bufs.returned(BufId(2));
        assert_eq!(bufs.tail, start.wrapping_add(1));
    }

    #[test]
    fn a_buffer_no_send_reads_goes_back_at_once() {
        let (_ring, mut bufs) = ring_and_buffers();
        let start = bufs.tail;
        bufs.received(BufId(1));
        bufs.recycle(BufId(1));
        assert_eq!(bufs.tail, start.wrapping_add(1));
    }

    #[test]
    #[should_panic(expected = "given back twice")]
    fn giving_a_buffer_back_twice_is_refused() {
        let (_ring, mut bufs) = ring_and_buffers();
        bufs.received(BufId(0));
        bufs.recycle(BufId(0));
        bufs.recycle(BufId(0));
    }

    #[test]
    #[should_panic(expected = "no receive handed over")]
    fn sending_from_a_buffer_the_kernel_owns_is_refused() {
        let (_ring, mut bufs) = ring_and_buffers();
        bufs.lend(BufId(3));
    }
}
