//! Reader wrappers: telling the caller's I/O failures apart from bad archive
//! bytes, counting, and keeping the tail of a stream.

use std::cell::{Cell, RefCell};
use std::io::{self, Read, Seek, SeekFrom};
use std::rc::Rc;

/// Records the first error returned by the wrapped (caller's) reader, so that
/// errors surfacing through zip/flate2/tar can be classified: an error seen
/// here is an I/O failure, anything else is a property of the bytes.
#[derive(Debug)]
pub(crate) struct IoTrack<R> {
    inner: R,
    failed: Rc<RefCell<Option<io::Error>>>,
    read: Rc<Cell<u64>>,
}

/// Handle to the state of an [`IoTrack`].
#[derive(Debug, Clone)]
pub(crate) struct IoState {
    failed: Rc<RefCell<Option<io::Error>>>,
    read: Rc<Cell<u64>>,
}

impl IoState {
    /// The caller's reader failed; returns a copy of its error.
    pub(crate) fn take_error(&self) -> Option<io::Error> {
        self.failed.borrow_mut().take()
    }

    /// Bytes read from the caller's reader so far.
    pub(crate) fn bytes_read(&self) -> u64 {
        self.read.get()
    }
}

impl<R> IoTrack<R> {
    pub(crate) fn new(inner: R) -> (Self, IoState) {
        let failed = Rc::new(RefCell::new(None));
        let read = Rc::new(Cell::new(0));
        let state = IoState {
            failed: Rc::clone(&failed),
            read: Rc::clone(&read),
        };
        (
            Self {
                inner,
                failed,
                read,
            },
            state,
        )
    }

    fn note(&self, e: &io::Error) {
        let mut slot = self.failed.borrow_mut();
        if slot.is_none() {
            *slot = Some(io::Error::new(e.kind(), e.to_string()));
        }
    }
}

impl<R: Read> Read for IoTrack<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.inner.read(buf) {
            Ok(n) => {
                self.read.set(self.read.get().saturating_add(n as u64));
                Ok(n)
            }
            Err(e) => {
                if e.kind() != io::ErrorKind::Interrupted {
                    self.note(&e);
                }
                Err(e)
            }
        }
    }
}

impl<R: Seek> Seek for IoTrack<R> {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        self.inner.seek(pos).inspect_err(|e| self.note(e))
    }
}

/// Keeps (at least) the last `keep` bytes that pass through it.
#[derive(Debug)]
pub(crate) struct TailKeeper<R> {
    inner: R,
    keep: usize,
    buf: Vec<u8>,
    total: u64,
}

impl<R> TailKeeper<R> {
    pub(crate) fn new(inner: R, keep: usize) -> Self {
        Self {
            inner,
            keep,
            buf: Vec::new(),
            total: 0,
        }
    }

    /// The retained tail and the absolute offset of its first byte.
    pub(crate) fn tail(&self) -> (&[u8], u64) {
        let start = self.buf.len().saturating_sub(self.keep);
        let tail = &self.buf[start..];
        (tail, self.total - tail.len() as u64)
    }
}

impl<R: Read> Read for TailKeeper<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(out)?;
        self.buf.extend_from_slice(&out[..n]);
        if self.buf.len() > 2 * self.keep {
            let cut = self.buf.len() - self.keep;
            self.buf.drain(..cut);
        }
        self.total = self.total.saturating_add(n as u64);
        Ok(n)
    }
}

/// Make an archive-controlled string safe to embed in a one-line message:
/// control characters are escaped and the length is bounded.
pub(crate) fn display_name(name: &str) -> String {
    let mut out = String::new();
    for (i, c) in name.chars().enumerate() {
        if i >= 200 {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}
