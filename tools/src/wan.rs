//! A simulated wide-area link for the bench: a TCP proxy that delays every
//! byte by a fixed one-way latency and holds each direction to a bandwidth.
//! It must not change a byte; it only makes them late.
//!
//! This is how a box at Hetzner sees AWS: tens of milliseconds away, behind
//! a link of about a gigabit. The bench puts the source behind it.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

/// One direction of the link, shared by every connection: bytes leave one
/// after another at the link's rate.
struct Wire {
    bytes_per_sec: f64,
    free_at: Mutex<Instant>,
}

impl Wire {
    /// When `n` bytes handed over now have all left the wire.
    fn send(&self, n: usize) -> Instant {
        let mut free_at = self.free_at.lock().expect("wire lock");
        let start = (*free_at).max(Instant::now());
        *free_at = start + Duration::from_secs_f64(n as f64 / self.bytes_per_sec);
        *free_at
    }
}

pub struct Wan {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
    counts: Arc<Counts>,
}

/// What crossed the link towards the server: connections opened (each a
/// round trip to set up) and requests, counted by the blank line that ends
/// their headers. Right for a source, whose requests carry no body.
#[derive(Default)]
pub struct Counts {
    pub connections: AtomicU64,
    pub requests: AtomicU64,
}

impl Wan {
    /// Forwards 127.0.0.1:<random> to `upstream` (`http://host:port`), adding
    /// `round_trip` (half each way, and one whole on connecting) and holding
    /// each direction to `bits_per_sec`.
    pub async fn start(upstream: &str, round_trip: Duration, bits_per_sec: u64) -> Result<Wan> {
        let upstream: SocketAddr = upstream
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .parse()
            .with_context(|| format!("{upstream} is not http://IP:PORT"))?;
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let one_way = round_trip / 2;
        let wire = || {
            Arc::new(Wire {
                bytes_per_sec: bits_per_sec as f64 / 8.0,
                free_at: Mutex::new(Instant::now()),
            })
        };
        let (up, down) = (wire(), wire());
        let counts = Arc::new(Counts::default());
        let counted = counts.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (up, down) = (up.clone(), down.clone());
                counted.connections.fetch_add(1, Ordering::Relaxed);
                let counted = counted.clone();
                tokio::spawn(async move {
                    // The TCP handshake costs a round trip.
                    tokio::time::sleep(round_trip).await;
                    let Ok(server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    let (client_read, client_write) = client.into_split();
                    let (server_read, server_write) = server.into_split();
                    tokio::join!(
                        carry(client_read, server_write, one_way, up, Some(&counted)),
                        carry(server_read, client_write, one_way, down, None),
                    );
                });
            }
        });
        Ok(Wan { addr, task, counts })
    }

    /// Connections and requests so far.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.counts.connections.load(Ordering::Relaxed),
            self.counts.requests.load(Ordering::Relaxed),
        )
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Wan {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Moves bytes one way: each chunk arrives `one_way` after it has left the
/// wire. The queue between is about a bandwidth-delay product, so a slow
/// reader at the far end pushes back as it would on a real link.
async fn carry(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    one_way: Duration,
    wire: Arc<Wire>,
    counts: Option<&Counts>,
) {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<(Instant, Bytes)>(64);
    let reader = async move {
        let mut buf = vec![0u8; 64 * 1024];
        // How much of the "\r\n\r\n" that ends a request's headers the bytes so far end with.
        let mut matched = 0;
        loop {
            let n = match from.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if let Some(counts) = counts {
                for &b in &buf[..n] {
                    matched = match (matched, b) {
                        (0 | 2, b'\r') => matched + 1,
                        (1 | 3, b'\n') => matched + 1,
                        (_, b'\r') => 1,
                        _ => 0,
                    };
                    if matched == 4 {
                        counts.requests.fetch_add(1, Ordering::Relaxed);
                        matched = 0;
                    }
                }
            }
            let arrives = wire.send(n) + one_way;
            if tx
                .send((arrives, Bytes::copy_from_slice(&buf[..n])))
                .await
                .is_err()
            {
                break;
            }
        }
    };
    let writer = async move {
        while let Some((arrives, chunk)) = rx.recv().await {
            tokio::time::sleep_until(arrives).await;
            if to.write_all(&chunk).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    };
    tokio::join!(reader, writer);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An echo server behind the link: bytes come back unchanged, a round
    /// trip late, and no faster than the link allows.
    #[tokio::test]
    async fn bytes_arrive_unchanged_late_and_at_the_rate() {
        let echo = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let echo_addr = echo.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((s, _)) = echo.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = s.into_split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        let rtt = Duration::from_millis(40);
        // 8 Mbit/s: 1 MB/s each way.
        let wan = Wan::start(&format!("http://{echo_addr}"), rtt, 8_000_000)
            .await
            .unwrap();
        let mut s = TcpStream::connect(wan.addr).await.unwrap();
        let started = std::time::Instant::now();
        s.write_all(b"ping").await.unwrap();
        let mut got = [0u8; 4];
        s.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"ping");
        // The connect's round trip, then two of the echo's (there and back).
        assert!(started.elapsed() >= rtt * 2, "{:?}", started.elapsed());

        let payload: Vec<u8> = (0..500_000u32).map(|i| (i % 251) as u8).collect();
        let started = std::time::Instant::now();
        let (mut r, mut w) = s.into_split();
        let sent = payload.clone();
        let writer = tokio::spawn(async move { w.write_all(&sent).await.unwrap() });
        let mut back = vec![0u8; payload.len()];
        r.read_exact(&mut back).await.unwrap();
        writer.await.unwrap();
        assert!(back == payload, "the link changed bytes");
        // 0.5 MB at 1 MB/s takes at least half a second.
        assert!(
            started.elapsed() >= Duration::from_millis(450),
            "{:?}",
            started.elapsed()
        );
    }

    /// Requests are counted by the end of their headers, however the bytes
    /// are cut into reads.
    #[tokio::test]
    async fn requests_are_counted_across_reads() {
        let server = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server_addr = server.local_addr().unwrap();
        let drained = tokio::spawn(async move {
            let (mut s, _) = server.accept().await.unwrap();
            let mut all = Vec::new();
            s.read_to_end(&mut all).await.unwrap();
            all.len()
        });
        let wan = Wan::start(
            &format!("http://{server_addr}"),
            Duration::ZERO,
            1_000_000_000,
        )
        .await
        .unwrap();
        let mut s = TcpStream::connect(wan.addr).await.unwrap();
        let two = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nHEAD /b HTTP/1.1\r\nHost: x\r\n\r\n";
        for piece in two.chunks(3) {
            s.write_all(piece).await.unwrap();
            s.flush().await.unwrap();
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        s.shutdown().await.unwrap();
        assert_eq!(drained.await.unwrap(), two.len());
        assert_eq!(wan.counts(), (1, 2));
    }
}
