//! Kernel receive times for plain TCP connections (Linux `SO_TIMESTAMPNS`).
//!
//! A time taken in user space when a read returns includes the wait for this process to get
//! round to the socket: with hundreds of streams ready at once, a connection waits its turn in
//! the runtime's queue, and every event it carries would be stamped that much late. With
//! `SO_TIMESTAMPNS` the kernel stamps each segment as it arrives, and `recvmsg` hands back the
//! stamp of the latest segment a read took, so a read's bytes are timed by when they came, not
//! by when they were read.
//!
//! The kernel's stamp is on the wall clock (`CLOCK_REALTIME`); it becomes a
//! `CLOCK_MONOTONIC` time (see [`crate::clock`]) by its age: how long before the read returned
//! the bytes came, taken from the wall clock, is subtracted from the monotonic clock read at
//! the same moment. A wall-clock step between arrival and read would bend that one age; it is
//! bounded to `[0, now]`.
//!
//! The client stamps its plain TCP connections this way (`transport`); TLS connections are read
//! by rustls below hyper's connector, so theirs are stamped when the read returns. Servers wrap
//! an accepted socket in [`StampedTcp`] (the simulator does, under TLS too), so a request's
//! arrival is known apart from the server's wait to read it.
//!
//! Written on `nix` (safe `recvmsg` with a control buffer, the socket option) rather than our
//! own `unsafe`. Elsewhere than Linux nothing is stamped and reads are timed when they return.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::clock::mono_ns;

/// A TCP stream that keeps when the latest bytes it read arrived: the kernel's receive time
/// where it gives one (Linux), else when the read returned. What a server reads a request
/// through, to know when the request came and not only when it got round to it.
#[derive(Debug)]
pub struct StampedTcp {
    tcp: TcpStream,
    control: Option<Box<[u8]>>,
    latest: Arc<AtomicU64>,
}

impl StampedTcp {
    /// Wraps `tcp`, asking the kernel to stamp what it receives.
    pub fn new(tcp: TcpStream) -> Self {
        let control = enable(&tcp);
        Self {
            tcp,
            control,
            latest: Arc::new(AtomicU64::new(0)),
        }
    }

    /// When the latest bytes read arrived (`CLOCK_MONOTONIC` ns, 0 before the first read),
    /// shared: it goes on changing as the stream is read.
    pub fn arrivals(&self) -> Arc<AtomicU64> {
        self.latest.clone()
    }

    /// The kernel stamps what this stream receives.
    pub fn kernel_stamped(&self) -> bool {
        self.control.is_some()
    }
}

impl AsyncRead for StampedTcp {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let (n, at) = match this.control.as_mut() {
            Some(control) => {
                let (n, at) = ready!(poll_recv(&this.tcp, cx, buf.initialize_unfilled(), control))?;
                buf.advance(n);
                (n, at)
            }
            None => {
                let before = buf.filled().len();
                ready!(Pin::new(&mut this.tcp).poll_read(cx, buf))?;
                (buf.filled().len() - before, None)
            }
        };
        if n > 0 {
            // A kernel time is never after now (`monotonic`).
            this.latest
                .fetch_max(at.unwrap_or_else(mono_ns), Ordering::Relaxed);
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for StampedTcp {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().tcp).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_shutdown(cx)
    }
}

/// Asks the kernel to stamp what `tcp` receives; a control buffer sized for the stamp, or
/// `None` when the socket refuses or the system has no such stamps (the reads are then timed
/// when they return).
#[cfg(target_os = "linux")]
pub(crate) fn enable(tcp: &TcpStream) -> Option<Box<[u8]>> {
    use nix::sys::socket::{setsockopt, sockopt};
    setsockopt(tcp, sockopt::ReceiveTimestampns, &true).ok()?;
    Some(nix::cmsg_space!(nix::sys::time::TimeSpec).into_boxed_slice())
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn enable(_: &TcpStream) -> Option<Box<[u8]>> {
    None
}

/// Reads what `tcp` holds into `buf`: the bytes read, and when the latest of them arrived
/// (`CLOCK_MONOTONIC` ns; `None` when the kernel gave no stamp).
pub(crate) fn poll_recv(
    tcp: &TcpStream,
    cx: &mut Context<'_>,
    buf: &mut [u8],
    control: &mut [u8],
) -> Poll<io::Result<(usize, Option<u64>)>> {
    loop {
        ready!(tcp.poll_read_ready(cx))?;
        match tcp.try_io(tokio::io::Interest::READABLE, || recv(tcp, buf, control)) {
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) => {}
            r => return Poll::Ready(r),
        }
    }
}

#[cfg(target_os = "linux")]
fn recv(tcp: &TcpStream, buf: &mut [u8], control: &mut [u8]) -> io::Result<(usize, Option<u64>)> {
    use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};
    use std::os::fd::AsRawFd;
    let mut iov = [io::IoSliceMut::new(buf)];
    let msg = recvmsg::<()>(tcp.as_raw_fd(), &mut iov, Some(control), MsgFlags::empty())
        .map_err(io::Error::from)?;
    let stamp = msg.cmsgs().ok().and_then(|mut c| {
        c.find_map(|m| match m {
            ControlMessageOwned::ScmTimestampns(ts) => Some(ts),
            _ => None,
        })
    });
    Ok((
        msg.bytes,
        stamp.map(|ts| monotonic(ts.tv_sec(), ts.tv_nsec())),
    ))
}

#[cfg(not(target_os = "linux"))]
fn recv(tcp: &TcpStream, buf: &mut [u8], _: &mut [u8]) -> io::Result<(usize, Option<u64>)> {
    tcp.try_read(buf).map(|n| (n, None))
}

/// A wall-clock kernel stamp as a `CLOCK_MONOTONIC` time: now less its age, never in the
/// future.
#[cfg(target_os = "linux")]
fn monotonic(sec: i64, nsec: i64) -> u64 {
    let wall = rustix::time::clock_gettime(rustix::time::ClockId::Realtime);
    let now = mono_ns();
    let ns = |sec: i64, nsec: i64| i128::from(sec) * 1_000_000_000 + i128::from(nsec);
    let age = ns(wall.tv_sec, wall.tv_nsec) - ns(sec, nsec);
    let age = u64::try_from(age.max(0)).unwrap_or(u64::MAX);
    now.saturating_sub(age)
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[test]
    fn a_wall_clock_stamp_becomes_a_monotonic_time_by_its_age() {
        let now = mono_ns();
        let wall = rustix::time::clock_gettime(rustix::time::ClockId::Realtime);
        let t = monotonic(wall.tv_sec - 1, wall.tv_nsec);
        // A second before now (give or take the moments between the clock reads).
        assert!(
            t + 950_000_000 <= now && t + 1_100_000_000 >= now,
            "{t} vs {now}"
        );
        // A stamp from the future (a wall-clock step) is now, not later.
        let t = monotonic(wall.tv_sec + 60, 0);
        assert!(t >= now && t <= mono_ns());
    }

    /// Bytes that waited in the socket are stamped when they came, not when they were read.
    #[tokio::test]
    async fn a_read_is_stamped_with_when_its_bytes_arrived() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = TcpStream::connect(addr).await.unwrap();
        let (mut server, _) = listener.accept().await.unwrap();
        let mut control = enable(&client).expect("loopback TCP takes SO_TIMESTAMPNS");
        let mut buf = [0u8; 64];
        // The first socket on a host to ask for stamps turns them on for every packet, and
        // the kernel does that in a moment of its own: until then reads come unstamped.
        let mut stamped = false;
        for _ in 0..200 {
            server.write_all(b".").await.unwrap();
            let (n, at) = std::future::poll_fn(|cx| poll_recv(&client, cx, &mut buf, &mut control))
                .await
                .unwrap();
            assert_eq!(n, 1);
            if at.is_some() {
                stamped = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert!(stamped, "the kernel never stamped a segment in 2 s");
        let before = mono_ns();
        server.write_all(b"hello").await.unwrap();
        // The bytes sit in the client's socket while it does not read.
        std::thread::sleep(std::time::Duration::from_millis(30));
        let read_at = mono_ns();
        let (n, at) = std::future::poll_fn(|cx| poll_recv(&client, cx, &mut buf, &mut control))
            .await
            .unwrap();
        assert_eq!(&buf[..n], b"hello");
        let at = at.expect("a kernel receive stamp");
        assert!(at >= before, "stamped before it was sent: {at} < {before}");
        // 30 ms waited in the socket; the stamp must not carry that wait (a generous margin
        // for a busy machine: the point is that it is not the read's time).
        assert!(
            read_at - at >= 20_000_000,
            "stamped {} ms before the read, not at arrival",
            (read_at - at) as f64 / 1e6
        );
    }
}
