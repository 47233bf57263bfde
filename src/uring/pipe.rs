//! The per-worker pipe pool for splice. A pipe is taken when a direction goes
//! bulk and has data, and given back as soon as it is empty, so idle connections
//! hold none (DESIGN.md §2). The pool is bounded: pipe pages count against
//! `fs.pipe-user-pages-soft`, so when it is exhausted, or the kernel hands back a
//! pipe smaller than asked for, callers stay on the copy path.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use crate::sys::owned_fd;

pub struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
    capacity: usize,
}

impl Pipe {
    fn new(size: usize) -> io::Result<Pipe> {
        let mut fds = [0 as libc::c_int; 2];
        // SAFETY: pipe2 writes two fds into the local array or fails.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: pipe2 succeeded: both fds are new and owned by nothing else.
        let (read, write) = unsafe { (owned_fd(fds[0]), owned_fd(fds[1])) };
        // SAFETY: fcntl on a pipe fd we own; F_SETPIPE_SZ/F_GETPIPE_SZ take an int.
        let capacity = unsafe {
            libc::fcntl(write.as_raw_fd(), libc::F_SETPIPE_SZ, size as libc::c_int);
            libc::fcntl(write.as_raw_fd(), libc::F_GETPIPE_SZ)
        };
        if capacity < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Pipe {
            read,
            write,
            capacity: capacity as usize,
        })
    }

    pub fn read_fd(&self) -> RawFd {
        self.read.as_raw_fd()
    }

    pub fn write_fd(&self) -> RawFd {
        self.write.as_raw_fd()
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }
}

pub struct PipePool {
    free: Vec<Pipe>,
    /// Pipes that exist (free or in use).
    created: usize,
    max: usize,
    size: usize,
}

impl PipePool {
    /// A pool of at most `max` pipes of `size` bytes, created lazily.
    pub fn new(max: usize, size: usize) -> PipePool {
        PipePool {
            free: Vec::new(),
            created: 0,
            max,
            size,
        }
    }

    /// An empty pipe, or `None` when the pool is exhausted or the kernel will not
    /// give pipes of the configured size (then the pool stops growing).
    pub fn take(&mut self) -> Option<Pipe> {
        if let Some(p) = self.free.pop() {
            return Some(p);
        }
        if self.created >= self.max {
            return None;
        }
        match Pipe::new(self.size) {
            Ok(p) if p.capacity >= self.size => {
                self.created += 1;
                Some(p)
            }
            // Too small (pipe-user-pages-soft reached) or no fds: never try to
            // grow past what exists now.
            _ => {
                self.max = self.created;
                None
            }
        }
    }

    /// Returns an empty pipe to the pool.
    pub fn give(&mut self, pipe: Pipe) {
        self.free.push(pipe);
    }

    /// Closes a pipe that still holds bytes nobody will read (aborted connection).
    pub fn discard(&mut self, pipe: Pipe) {
        drop(pipe);
        self.created -= 1;
    }

    /// Pipes currently lent out.
    pub fn in_use(&self) -> usize {
        self.created - self.free.len()
    }
}
