//! An HTTPS client that never holds more than `max_connections` TCP sessions to
//! its store (Hetzner refuses more than 256 per IP). It must not retry on its own.
//!
//! Bounding requests in flight is not enough: hyper's pool opens a new
//! connection whenever none is idle at the instant of asking, so a busy client
//! drifts above any request bound. Here each socket holds a permit from the
//! moment it is dialled until it is closed, so the cap is on sockets
//! themselves. The SDK's own client cannot take a custom TCP connector, so
//! this one is built from the same parts (hyper-util's pool, rustls with the
//! system's roots) and classifies errors as the SDK does, so that retries
//! behave the same.
//!
//! Requests also take one of `max` slots, held until their response body is
//! read or dropped, so a request waits for a slot outside the read timeout
//! instead of timing out while queued in the pool for a socket.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
    SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::retry::ErrorKind;
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper::Uri;
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector as TcpDialer};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Pool = Client<hyper_rustls::HttpsConnector<CappedDialer>, SdkBody>;

/// A client whose sockets to the store never number more than `max`.
pub fn capped_client(max: usize) -> SharedHttpClient {
    SharedHttpClient::new(CappedClient {
        permits: Arc::new(Semaphore::new(max)),
        slots: Arc::new(Semaphore::new(max)),
        pool: Arc::new(OnceLock::new()),
    })
}

#[derive(Clone)]
struct CappedClient {
    /// One per open socket.
    permits: Arc<Semaphore>,
    /// One per request, until its response body is done.
    slots: Arc<Semaphore>,
    /// One pool for every operation, built with the first call's timeouts
    /// (ferry gives every operation of a store the same ones).
    pool: Arc<OnceLock<Result<Pool, String>>>,
}

impl std::fmt::Debug for CappedClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CappedClient({} free)", self.permits.available_permits())
    }
}

impl CappedClient {
    fn pool(&self, connect_timeout: Option<Duration>) -> Result<Pool, String> {
        self.pool
            .get_or_init(|| {
                let mut dialer = TcpDialer::new();
                dialer.enforce_http(false);
                dialer.set_nodelay(true);
                dialer.set_connect_timeout(connect_timeout);
                let capped = CappedDialer {
                    dialer,
                    permits: self.permits.clone(),
                };
                let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
                let https = hyper_rustls::HttpsConnectorBuilder::new()
                    .with_provider_and_native_roots(provider)
                    .map_err(|e| format!("cannot load the system's TLS root certificates: {e}"))?
                    .https_or_http()
                    .enable_http1()
                    .wrap_connector(capped);
                Ok(Client::builder(TokioExecutor::new()).build(https))
            })
            .clone()
    }
}

impl HttpClient for CappedClient {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        _components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        SharedHttpConnector::new(CappedConnector {
            pool: self.pool(settings.connect_timeout()),
            slots: self.slots.clone(),
            read_timeout: settings.read_timeout(),
        })
    }
}

#[derive(Debug)]
struct CappedConnector {
    pool: Result<Pool, String>,
    slots: Arc<Semaphore>,
    /// Time allowed from sending a request to its response's headers.
    read_timeout: Option<Duration>,
}

impl HttpConnector for CappedConnector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let pool = match &self.pool {
            Ok(pool) => pool.clone(),
            Err(e) => {
                return HttpConnectorFuture::ready(Err(ConnectorError::user(e.clone().into())))
            }
        };
        let request = match request.try_into_http1x() {
            Ok(request) => request,
            Err(e) => return HttpConnectorFuture::ready(Err(ConnectorError::user(e.into()))),
        };
        let (read_timeout, slots) = (self.read_timeout, self.slots.clone());
        HttpConnectorFuture::new(async move {
            let slot = slots
                .acquire_owned()
                .await
                .map_err(|e| ConnectorError::other(e.into(), None))?;
            let sent = pool.request(request);
            let response = match read_timeout {
                Some(limit) => match tokio::time::timeout(limit, sent).await {
                    Ok(response) => response,
                    Err(elapsed) => return Err(ConnectorError::timeout(elapsed.into())),
                },
                None => sent.await,
            };
            match response {
                Ok(response) => HttpResponse::try_from(
                    response.map(|body| SdkBody::from_body_1_x(SlotHeld { body, _slot: slot })),
                )
                .map_err(|e| ConnectorError::other(e.into(), None)),
                Err(e) => Err(classify(e)),
            }
        })
    }
}

/// A response body that frees its request's slot when read or dropped.
struct SlotHeld {
    body: hyper::body::Incoming,
    _slot: OwnedSemaphorePermit,
}

impl http_body::Body for SlotHeld {
    type Data = bytes::Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<bytes::Bytes>, hyper::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// The SDK's own reading of hyper's errors, so retries behave the same.
fn classify(error: hyper_util::client::legacy::Error) -> ConnectorError {
    if error.is_connect() {
        return ConnectorError::io(error.into());
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&error);
    while let Some(e) = source {
        if let Some(h) = e.downcast_ref::<hyper::Error>() {
            if h.is_timeout() {
                return ConnectorError::timeout(error.into());
            }
            if h.is_user() {
                return ConnectorError::user(error.into());
            }
            if h.is_incomplete_message() {
                return ConnectorError::other(error.into(), Some(ErrorKind::TransientError));
            }
            if h.is_closed() || h.is_canceled() {
                return ConnectorError::io(error.into());
            }
        }
        if e.is::<io::Error>() {
            return ConnectorError::io(error.into());
        }
        source = e.source();
    }
    ConnectorError::other(error.into(), None)
}

/// Dials TCP only with a permit in hand; the socket keeps it until closed.
#[derive(Clone)]
struct CappedDialer {
    dialer: TcpDialer,
    permits: Arc<Semaphore>,
}

impl tower_service::Service<Uri> for CappedDialer {
    type Response = CappedSocket;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<CappedSocket, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.dialer.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let (mut dialer, permits) = (self.dialer.clone(), self.permits.clone());
        Box::pin(async move {
            let permit = permits.acquire_owned().await?;
            let socket = dialer.call(uri).await?;
            Ok(CappedSocket {
                socket,
                _permit: permit,
            })
        })
    }
}

struct CappedSocket {
    socket: TokioIo<tokio::net::TcpStream>,
    _permit: OwnedSemaphorePermit,
}

impl Connection for CappedSocket {
    fn connected(&self) -> Connected {
        self.socket.connected()
    }
}

impl Read for CappedSocket {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.socket).poll_read(cx, buf)
    }
}

impl Write for CappedSocket {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.socket).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.socket).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.socket).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.socket).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.socket.is_write_vectored()
    }
}
