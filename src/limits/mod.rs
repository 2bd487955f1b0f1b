//! Limits on what ferry asks of a store: requests and bytes per second, sockets,
//! and the budget. They sit below the store; they must not know what a request is for.
//!
//! Rates sit in the HTTP client itself, so every request counts: listings,
//! HEADs, the SDK's own retries, and the bodies of streamed GETs.
//! `max_connections` caps the sockets themselves (see [`connections`]);
//! `budget` bounds requests in flight and bytes held.

pub mod budget;
mod connections;

use std::future::Future;
use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
    SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::body::SdkBody;
use bytes::Bytes;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

/// The limits for one store; `None` is no limit.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Limits {
    pub requests_per_second: Option<u32>,
    /// Bytes per second of response bodies (what is read from the store).
    pub bytes_per_second: Option<u64>,
    /// TCP sessions open to the store at once.
    pub max_connections: Option<usize>,
}

impl Limits {
    pub fn is_empty(&self) -> bool {
        *self == Limits::default()
    }
}

struct Gates {
    requests: Option<DefaultDirectRateLimiter>,
    bytes: Option<Arc<DefaultDirectRateLimiter>>,
    /// The most bytes one wait may ask for: the bucket's burst.
    burst: u32,
}

/// An HTTP client (the SDK's default HTTPS client) behind `limits`.
pub fn http_client(limits: &Limits) -> SharedHttpClient {
    let inner = match limits.max_connections {
        Some(max) => connections::capped_client(max),
        None => aws_smithy_http_client::Builder::new()
            .tls_provider(Provider::Rustls(CryptoMode::AwsLc))
            .build_https(),
    };
    let nonzero =
        |n: u64| NonZeroU32::new(n.clamp(1, u32::MAX as u64) as u32).expect("clamped above 0");
    // A tenth of a second of burst: smooth over a few seconds, yet never
    // smaller than one body chunk.
    let burst = limits
        .bytes_per_second
        .map_or(1, |b| (b / 10).max(256 * 1024))
        .min(u32::MAX as u64);
    let gates = Gates {
        requests: limits.requests_per_second.map(|r| {
            RateLimiter::direct(Quota::per_second(nonzero(r as u64)).allow_burst(nonzero(1)))
        }),
        bytes: limits.bytes_per_second.map(|b| {
            Arc::new(RateLimiter::direct(
                Quota::per_second(nonzero(b)).allow_burst(nonzero(burst)),
            ))
        }),
        burst: burst as u32,
    };
    SharedHttpClient::new(Limited {
        inner,
        gates: Arc::new(gates),
    })
}

#[derive(Clone)]
struct Limited {
    inner: SharedHttpClient,
    gates: Arc<Gates>,
}

impl std::fmt::Debug for Limited {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Limited")
    }
}

impl HttpClient for Limited {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        SharedHttpConnector::new(LimitedConnector {
            inner: self.inner.http_connector(settings, components),
            gates: self.gates.clone(),
        })
    }
}

struct LimitedConnector {
    inner: SharedHttpConnector,
    gates: Arc<Gates>,
}

impl std::fmt::Debug for LimitedConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LimitedConnector")
    }
}

/// How long until `n` cells are free, or None if they are free now (taken).
fn wait_for(limiter: &DefaultDirectRateLimiter, n: u32) -> Option<Duration> {
    let n = NonZeroU32::new(n)?;
    match limiter.check_n(n) {
        Ok(Ok(())) => None,
        Ok(Err(not_until)) => Some(not_until.wait_time_from(DefaultClock::default().now())),
        // More than the burst: cannot happen, chunks are split to fit.
        Err(_) => None,
    }
}

impl HttpConnector for LimitedConnector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let (inner, gates) = (self.inner.clone(), self.gates.clone());
        HttpConnectorFuture::new(async move {
            if let Some(limiter) = &gates.requests {
                while let Some(wait) = wait_for(limiter, 1) {
                    tokio::time::sleep(wait).await;
                }
            }
            let mut response = inner.call(request).await?;
            if gates.bytes.is_some() {
                let body = response.take_body();
                *response.body_mut() = SdkBody::from_body_1_x(Paced {
                    inner: body,
                    gates: gates.clone(),
                    pending: None,
                    sleep: None,
                });
            }
            Ok(response)
        })
    }
}

/// A response body that keeps to the byte rate.
struct Paced {
    inner: SdkBody,
    gates: Arc<Gates>,
    /// A chunk waiting for the byte budget.
    pending: Option<Bytes>,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl http_body::Body for Paced {
    type Data = Bytes;
    type Error = aws_smithy_types::body::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        loop {
            if let Some(sleep) = self.sleep.as_mut() {
                ready!(sleep.as_mut().poll(cx));
                self.sleep = None;
            }
            if let Some(chunk) = self.pending.take() {
                let Some(limiter) = self.gates.bytes.clone() else {
                    return Poll::Ready(Some(Ok(http_body::Frame::data(chunk))));
                };
                let n = (chunk.len() as u32).min(self.gates.burst);
                match wait_for(&limiter, n) {
                    Some(wait) => {
                        self.pending = Some(chunk);
                        self.sleep = Some(Box::pin(tokio::time::sleep(wait)));
                        continue;
                    }
                    None if n as usize == chunk.len() => {
                        return Poll::Ready(Some(Ok(http_body::Frame::data(chunk))))
                    }
                    None => {
                        // A chunk larger than the burst goes out in pieces.
                        let mut rest = chunk;
                        let head = rest.split_to(n as usize);
                        self.pending = Some(rest);
                        return Poll::Ready(Some(Ok(http_body::Frame::data(head))));
                    }
                }
            }
            let frame = ready!(http_body::Body::poll_frame(Pin::new(&mut self.inner), cx));
            match frame {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => self.pending = Some(data),
                    Err(other) => return Poll::Ready(Some(Ok(other))),
                },
                other => return Poll::Ready(other),
            }
        }
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::Body::size_hint(&self.inner)
    }
}
