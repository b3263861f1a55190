//! The connection under the router. hyper answers a request whose head it cannot parse (a
//! control byte in a header, headers past its buffer, a URI too long) by itself, before any
//! handler or middleware runs, with an empty body. [`EnvelopedListener`] gives those answers
//! the JSON error envelope every other 4xx has: its connections recognise such an answer as
//! it is written (a 4xx head carrying only `content-length: 0`, `connection: close` and `date`; every response
//! of the router also carries at least `content-type` and `x-request-id`) and write it with
//! a body instead. hyper closes the connection after it, so nothing follows on the wire.

use crate::error::{ErrorDetail, ErrorEnvelope};
use axum::serve::Listener;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A listener whose connections write hyper's own parse-error answers as JSON.
pub struct EnvelopedListener<L>(pub L);

impl<L: Listener> Listener for EnvelopedListener<L> {
    type Io = EnvelopedIo<L::Io>;
    type Addr = L::Addr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (io, address) = self.0.accept().await;
        (
            EnvelopedIo {
                inner: io,
                replacement: Vec::new(),
                written: 0,
            },
            address,
        )
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.0.local_addr()
    }
}

/// One connection; see the module's documentation.
pub struct EnvelopedIo<T> {
    inner: T,
    /// An answer being written in place of hyper's, and how much of it is out.
    replacement: Vec<u8>,
    written: usize,
}

impl<T: AsyncWrite + Unpin> EnvelopedIo<T> {
    /// Writes what is left of a replacement answer.
    fn poll_replacement(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.replacement.len() {
            let n = ready!(
                Pin::new(&mut self.inner).poll_write(cx, &self.replacement[self.written..])
            )?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        Poll::Ready(Ok(()))
    }
}

/// hyper's automatic answer to a head it could not parse, with the envelope: None for
/// anything else.
fn enveloped(head: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(head).ok()?.strip_suffix("\r\n\r\n")?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next()?;
    let status: u16 = status_line
        .strip_prefix("HTTP/1.1 ")?
        .get(..3)?
        .parse()
        .ok()?;
    let (code, message) = match status {
        400 => (
            "bad_request",
            "the request's head is not valid HTTP (a control character or a malformed line in a header, the method or the URI)",
        ),
        414 => ("uri_too_long", "the request's URI is too long"),
        431 => (
            "headers_too_large",
            "the request's headers are too large",
        ),
        _ => return None,
    };
    let mut date = None;
    for line in lines {
        let (name, value) = line.split_once(':')?;
        match name.to_ascii_lowercase().as_str() {
            "content-length" if value.trim() == "0" => {}
            "connection" if value.trim() == "close" => {}
            "date" => date = Some(line),
            _ => return None,
        }
    }
    let body = serde_json::to_string(&ErrorEnvelope {
        error: ErrorDetail {
            code,
            message: message.to_owned(),
            field: None,
            errors: None,
        },
    })
    .ok()?;
    let mut answer = format!(
        "{status_line}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n",
        body.len()
    );
    if let Some(date) = date {
        answer.push_str(date);
        answer.push_str("\r\n");
    }
    answer.push_str("\r\n");
    answer.push_str(&body);
    Some(answer.into_bytes())
}

impl<T: AsyncRead + Unpin> AsyncRead for EnvelopedIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for EnvelopedIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        ready!(self.poll_replacement(cx))?;
        // hyper writes its automatic answer in one piece, with nothing before it (it
        // answers only while no response is being written).
        if buf.starts_with(b"HTTP/1.1 4") {
            if let Some(answer) = enveloped(buf) {
                self.replacement = answer;
                self.written = 0;
                // Taken whole; written out by this and the next calls (hyper flushes).
                let _ = self.poll_replacement(cx)?;
                return Poll::Ready(Ok(buf.len()));
            }
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    /// hyper queues a head and a body as separate slices to a vectored connection; its
    /// automatic answer is a head alone, the first slice.
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match bufs.iter().find(|buf| !buf.is_empty()) {
            Some(first) if first.starts_with(b"HTTP/1.1 4") => self.poll_write(cx, first),
            _ => {
                ready!(self.poll_replacement(cx))?;
                Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_replacement(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_replacement(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The peer address of a connection (the console's login throttling counts failures per
/// address): `autoheal serve` makes the router with
/// `into_make_service_with_connect_info::<Peer>()`, and a handler reads
/// `ConnectInfo<Peer>`.
#[derive(Clone, Copy, Debug)]
pub struct Peer(pub std::net::SocketAddr);

impl<'a, L>
    axum::extract::connect_info::Connected<axum::serve::IncomingStream<'a, EnvelopedListener<L>>>
    for Peer
where
    L: Listener<Addr = std::net::SocketAddr>,
{
    fn connect_info(stream: axum::serve::IncomingStream<'a, EnvelopedListener<L>>) -> Self {
        Self(*stream.remote_addr())
    }
}
