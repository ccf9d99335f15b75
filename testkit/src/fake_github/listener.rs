//! A TCP listener for axum whose connections a handler can reset (fault injection) and that die when the fake stops.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// Accepts connections and hands each a [`ConnectionHandle`] through axum's `ConnectInfo`.
pub struct ResettableListener {
    inner: TcpListener,
    download_host: bool,
    stopped: Arc<AtomicBool>,
}

impl ResettableListener {
    /// Wraps a bound listener. `download_host` tags its requests in the log; `stopped` kills every connection.
    pub fn new(inner: TcpListener, download_host: bool, stopped: Arc<AtomicBool>) -> Self {
        Self { inner, download_host, stopped }
    }
}

/// What a request knows about its connection: the peer, which listener accepted it, and the reset switch.
#[derive(Debug, Clone)]
pub struct ConnectionHandle {
    #[allow(dead_code)]
    pub peer: SocketAddr,
    pub download_host: bool,
    reset: Arc<AtomicBool>,
}

impl ConnectionHandle {
    /// Makes the connection fail every further read and write and close with a TCP reset, without an answer.
    pub fn reset(&self) {
        self.reset.store(true, Ordering::SeqCst);
    }
}

/// A TCP stream that errors out (and closes with RST) once reset or once the fake stops.
pub struct ResettableStream {
    inner: TcpStream,
    reset: Arc<AtomicBool>,
    stopped: Arc<AtomicBool>,
}

impl ResettableStream {
    fn check(&self) -> io::Result<()> {
        if self.reset.load(Ordering::SeqCst) || self.stopped.load(Ordering::SeqCst) {
            // Linger 0: the close that follows sends RST instead of FIN.
            let _ = self.inner.set_zero_linger();
            return Err(io::Error::new(io::ErrorKind::ConnectionReset, "fake GitHub reset the connection"));
        }
        Ok(())
    }
}

impl AsyncRead for ResettableStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.check()?;
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for ResettableStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.check()?;
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.check()?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

impl Listener for ResettableListener {
    type Io = ResettableStream;
    type Addr = ConnectionHandle;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.inner.accept().await {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    let reset = Arc::new(AtomicBool::new(false));
                    let handle = ConnectionHandle { peer, download_host: self.download_host, reset: reset.clone() };
                    let stream = ResettableStream { inner: stream, reset, stopped: self.stopped.clone() };
                    return (stream, handle);
                }
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(ConnectionHandle {
            peer: self.inner.local_addr()?,
            download_host: self.download_host,
            reset: Arc::new(AtomicBool::new(false)),
        })
    }
}

impl Connected<IncomingStream<'_, ResettableListener>> for ConnectionHandle {
    fn connect_info(stream: IncomingStream<'_, ResettableListener>) -> Self {
        stream.remote_addr().clone()
    }
}
