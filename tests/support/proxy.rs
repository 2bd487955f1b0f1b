//! A TCP proxy of our own between ferry and a server: it counts the bytes
//! ferry sends through it and can hold them to a rate, so a test can see what
//! was re-sent after a crash and has time to crash ferry mid-object.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub struct Proxy {
    pub addr: SocketAddr,
    /// Bytes sent from the client towards the server, headers included.
    pub sent: Arc<AtomicU64>,
    pub stats: Arc<Stats>,
    task: tokio::task::JoinHandle<()>,
}

/// What the proxy saw besides the bytes sent.
#[derive(Default)]
pub struct Stats {
    /// Bytes from the server to the client.
    pub received: AtomicU64,
    pub open: AtomicU64,
    pub most_open: AtomicU64,
    /// When the first and the last byte came back from the server.
    pub window: Mutex<Option<(Instant, Instant)>>,
}

impl Stats {
    /// Bytes per second from the server over the time they flowed.
    pub fn received_rate(&self) -> f64 {
        let window = *self.window.lock().unwrap();
        match window {
            Some((first, last)) if last > first => {
                self.received.load(Ordering::Relaxed) as f64 / (last - first).as_secs_f64()
            }
            _ => 0.0,
        }
    }
}

struct Pace {
    bytes_per_sec: u64,
    state: Mutex<(Instant, u64)>,
}

impl Pace {
    /// How long to wait so that the bytes so far stay under the rate.
    fn delay(&self, n: u64) -> Duration {
        let mut state = self.state.lock().unwrap();
        state.1 += n;
        let due = Duration::from_secs_f64(state.1 as f64 / self.bytes_per_sec as f64);
        due.saturating_sub(state.0.elapsed())
    }
}

impl Proxy {
    /// Forwards 127.0.0.1:<random> to `upstream` (an `http://host:port` URL),
    /// holding client→server bytes to `bytes_per_sec` if given.
    pub async fn start(upstream: &str, bytes_per_sec: Option<u64>) -> Proxy {
        let upstream: SocketAddr = upstream
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .parse()
            .unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let sent = Arc::new(AtomicU64::new(0));
        let pace = bytes_per_sec.map(|r| {
            Arc::new(Pace {
                bytes_per_sec: r,
                state: Mutex::new((Instant::now(), 0)),
            })
        });
        let counter = sent.clone();
        let stats = Arc::new(Stats::default());
        let seen = stats.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                let (counter, pace, stats) = (counter.clone(), pace.clone(), seen.clone());
                tokio::spawn(async move {
                    // A socket ferry closed just before dialling this one may
                    // not have been read to its end yet by its own task; a
                    // moment's grace keeps that race out of the count, while a
                    // socket ferry really holds beside four others (pooled,
                    // kept alive) is still counted.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    let open = stats.open.fetch_add(1, Ordering::SeqCst) + 1;
                    stats.most_open.fetch_max(open, Ordering::SeqCst);
                    let Ok(server) = TcpStream::connect(upstream).await else {
                        stats.open.fetch_sub(1, Ordering::SeqCst);
                        return;
                    };
                    let (mut client_read, mut client_write) = client.into_split();
                    let (mut server_read, mut server_write) = server.into_split();
                    let upload = async {
                        let mut buf = vec![0u8; 64 * 1024];
                        loop {
                            let n = match client_read.read(&mut buf).await {
                                Ok(0) | Err(_) => break,
                                Ok(n) => n,
                            };
                            if let Some(p) = &pace {
                                tokio::time::sleep(p.delay(n as u64)).await;
                            }
                            if server_write.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                            counter.fetch_add(n as u64, Ordering::Relaxed);
                        }
                        // The client closed its socket: that is when it stops
                        // counting against its cap, whenever the server answers
                        // the close.
                        stats.open.fetch_sub(1, Ordering::SeqCst);
                        let _ = server_write.shutdown().await;
                    };
                    let download = async {
                        let mut buf = vec![0u8; 64 * 1024];
                        loop {
                            let n = match server_read.read(&mut buf).await {
                                Ok(0) | Err(_) => break,
                                Ok(n) => n,
                            };
                            {
                                let now = Instant::now();
                                let mut window = stats.window.lock().unwrap();
                                *window = Some((window.map_or(now, |w| w.0), now));
                            }
                            stats.received.fetch_add(n as u64, Ordering::Relaxed);
                            if client_write.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                        let _ = client_write.shutdown().await;
                    };
                    tokio::join!(upload, download);
                });
            }
        });
        Proxy {
            addr,
            sent,
            stats,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}
