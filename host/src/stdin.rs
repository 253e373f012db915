//! The guest's stdin: the message cosign streams in, read ahead on a thread of its own.
//!
//! wasmtime-wasi's own stdin reads only when the guest asks, 64 KiB at a time, so reading the
//! pipe and hashing take turns. Here a reader thread fills [`CHUNK`]-byte chunks while the
//! guest hashes the previous ones (at most [`DEPTH`] queued, so memory stays flat whatever
//! the message size), and each guest read takes a whole chunk in one host call.
//!
//! The thread starts on the first read or poll: calls that take no message (defaultAlgorithm,
//! a digest given in the request) never touch stdin.

use std::io::{self, Read};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::{AsyncRead, ReadBuf};
use tokio::sync::mpsc;
use wasmtime_wasi::cli::{IsTerminal, StdinStream};
use wasmtime_wasi_io::poll::Pollable;
use wasmtime_wasi_io::streams::{InputStream, StreamError, StreamResult};

/// Bytes per chunk handed to the guest: its read buffer's size (guest `crypto::stream`).
pub const CHUNK: usize = 256 * 1024;
/// Chunks read ahead of the guest.
pub const DEPTH: usize = 4;
/// stdin's pipe buffer while the message streams in (Linux's default unprivileged maximum).
#[cfg(target_os = "linux")]
const PIPE_SIZE: usize = 1 << 20;

type Chunk = io::Result<Bytes>;

/// stdin as every handle the guest opens sees it: one shared position.
#[derive(Clone)]
pub struct ReadAheadStdin(Arc<Mutex<State>>);

struct State {
    /// The source and the sending side, until the first read starts the reader thread.
    unstarted: Option<(Box<dyn Read + Send>, mpsc::Sender<Chunk>)>,
    rx: mpsc::Receiver<Chunk>,
    /// The unread rest of the chunk taken last.
    current: Bytes,
    /// A read error, reported once by the next read.
    error: Option<io::Error>,
    closed: bool,
}

impl ReadAheadStdin {
    /// Reads the process's own stdin.
    pub fn new() -> Self {
        Self::from_reader(Box::new(ProcessStdin { widened: false }))
    }

    /// Reads `source` (tests give bytes or a failing reader).
    pub fn from_reader(source: Box<dyn Read + Send>) -> Self {
        let (tx, rx) = mpsc::channel(DEPTH);
        ReadAheadStdin(Arc::new(Mutex::new(State {
            unstarted: Some((source, tx)),
            rx,
            current: Bytes::new(),
            error: None,
            closed: false,
        })))
    }

    /// Locks the shared state, starting the reader thread on first use.
    fn state(&self) -> MutexGuard<'_, State> {
        let mut state = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((mut source, tx)) = state.unstarted.take() {
            std::thread::spawn(move || read_ahead(&mut *source, &tx));
        }
        state
    }
}

impl Default for ReadAheadStdin {
    fn default() -> Self {
        Self::new()
    }
}

impl State {
    /// True once a read can return without waiting: data, an error or the end.
    fn has_news(&self) -> bool {
        !self.current.is_empty() || self.error.is_some() || self.closed
    }

    /// Waits (as a poll) for the next chunk unless there is news already.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.has_news() {
            return Poll::Ready(());
        }
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(Ok(bytes))) => self.current = bytes,
            Poll::Ready(Some(Err(e))) => self.error = Some(e),
            Poll::Ready(None) => self.closed = true,
            Poll::Pending => return Poll::Pending,
        }
        Poll::Ready(())
    }

    /// Takes up to `size` bytes that are here; empty when none are yet.
    fn take(&mut self, size: usize) -> StreamResult<Bytes> {
        if !self.has_news() {
            match self.rx.try_recv() {
                Ok(Ok(bytes)) => self.current = bytes,
                Ok(Err(e)) => self.error = Some(e),
                Err(mpsc::error::TryRecvError::Empty) => return Ok(Bytes::new()),
                Err(mpsc::error::TryRecvError::Disconnected) => self.closed = true,
            }
        }
        if !self.current.is_empty() {
            let n = size.min(self.current.len());
            return Ok(self.current.split_to(n));
        }
        if let Some(e) = self.error.take() {
            self.closed = true;
            return Err(StreamError::LastOperationFailed(e.into()));
        }
        Err(StreamError::Closed)
    }
}

/// The process's stdin, its pipe widened before the first read.
struct ProcessStdin {
    widened: bool,
}

impl Read for ProcessStdin {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if !self.widened {
            self.widened = true;
            widen_pipe();
        }
        io::stdin().lock().read(buf)
    }
}

/// Raises stdin's pipe buffer (64 KiB on Linux) so that the writer, cosign, blocks and wakes
/// the reader less often. Best effort: when stdin is not a pipe, or the size is over the
/// user's limit, nothing changes.
#[cfg(target_os = "linux")]
fn widen_pipe() {
    // SAFETY: F_SETPIPE_SZ on fd 0 only resizes a pipe's buffer; on anything else it fails
    // (EBADF, EINVAL, EPERM) without effect, and the result is deliberately ignored.
    unsafe {
        libc::fcntl(0, libc::F_SETPIPE_SZ, PIPE_SIZE as libc::c_int);
    }
}

#[cfg(not(target_os = "linux"))]
fn widen_pipe() {}

/// Fills chunks until end of input, an error, or the guest is gone.
fn read_ahead(reader: &mut dyn Read, tx: &mpsc::Sender<Chunk>) {
    loop {
        // A whole chunk per send: one hand-over and one guest read per CHUNK bytes, not per
        // pipe buffer. `read_to_end` fills the spare capacity without zeroing it first, and
        // keeps what it read before an error.
        let mut chunk = Vec::with_capacity(CHUNK);
        let failure = Read::take(&mut *reader, CHUNK as u64)
            .read_to_end(&mut chunk)
            .err();
        let filled = chunk.len();
        let end = filled < CHUNK;
        if filled > 0 && tx.blocking_send(Ok(Bytes::from(chunk))).is_err() {
            return; // the guest finished without reading the rest
        }
        if let Some(e) = failure {
            let _ = tx.blocking_send(Err(e));
            return;
        }
        if end {
            return; // dropping `tx` is the end of the input
        }
    }
}

impl IsTerminal for ReadAheadStdin {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdinStream for ReadAheadStdin {
    fn p2_stream(&self) -> Box<dyn InputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn AsyncRead + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi_io::async_trait]
impl InputStream for ReadAheadStdin {
    fn read(&mut self, size: usize) -> StreamResult<Bytes> {
        self.state().take(size)
    }
}

#[wasmtime_wasi_io::async_trait]
impl Pollable for ReadAheadStdin {
    async fn ready(&mut self) {
        std::future::poll_fn(|cx| self.state().poll_fill(cx)).await
    }
}

/// The same stream for WASIp3 hosts (not linked today; kept correct for the trait).
impl AsyncRead for ReadAheadStdin {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let mut state = self.state();
        if state.poll_fill(cx).is_pending() {
            return Poll::Pending;
        }
        match state.take(buf.remaining()) {
            Ok(bytes) => buf.put_slice(&bytes),
            Err(StreamError::Closed) => {}
            Err(e) => return Poll::Ready(Err(io::Error::other(e.to_string()))),
        }
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(stdin: &mut ReadAheadStdin) -> StreamResult<Vec<u8>> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            let mut out = Vec::new();
            loop {
                match stdin.blocking_read(CHUNK).await {
                    Ok(bytes) => out.extend_from_slice(&bytes),
                    Err(StreamError::Closed) => return Ok(out),
                    Err(e) => return Err(e),
                }
            }
        })
    }

    #[test]
    fn every_byte_arrives_in_order_across_chunks() {
        // Not a multiple of CHUNK, so the last chunk is short.
        let data: Vec<u8> = (0..CHUNK * 3 + 12345).map(|i| (i % 251) as u8).collect();
        let mut stdin = ReadAheadStdin::from_reader(Box::new(io::Cursor::new(data.clone())));
        assert_eq!(drain(&mut stdin).unwrap(), data);
    }

    #[test]
    fn empty_input_is_end_of_stream() {
        let mut stdin = ReadAheadStdin::from_reader(Box::new(io::empty()));
        assert_eq!(drain(&mut stdin).unwrap(), Vec::<u8>::new());
    }

    #[test]
    fn a_read_error_reaches_the_guest_after_the_bytes_before_it() {
        struct Failing(usize);
        impl Read for Failing {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                if self.0 == 0 {
                    return Err(io::Error::other("pipe broke"));
                }
                let n = self.0.min(buf.len());
                buf[..n].fill(7);
                self.0 -= n;
                Ok(n)
            }
        }
        let mut stdin = ReadAheadStdin::from_reader(Box::new(Failing(1000)));
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            let first = stdin.blocking_read(CHUNK).await.unwrap();
            assert_eq!(first.len(), 1000);
            match stdin.blocking_read(CHUNK).await {
                Err(StreamError::LastOperationFailed(e)) => {
                    assert!(e.to_string().contains("pipe broke"), "{e}")
                }
                other => panic!("expected the read error, got {other:?}"),
            }
        });
    }

    #[test]
    fn nothing_is_read_until_the_guest_asks() {
        struct Counting(Arc<Mutex<bool>>);
        impl Read for Counting {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                *self.0.lock().unwrap() = true;
                Ok(0)
            }
        }
        let touched = Arc::new(Mutex::new(false));
        let stdin = ReadAheadStdin::from_reader(Box::new(Counting(touched.clone())));
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(
            !*touched.lock().unwrap(),
            "stdin was read before any guest read"
        );
        drop(stdin);
    }
}
