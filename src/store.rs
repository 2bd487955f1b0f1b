//! Building the source and destination S3 clients, and classifying their errors
//! for workers and people. It must not know the copy engine, nor log a secret.

use std::error::Error as StdError;
use std::fmt;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::BehaviorVersion;
use aws_sdk_s3::config::{
    Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::Client;

use std::sync::Arc;

use aws_sdk_s3::config::interceptors::BeforeDeserializationInterceptorContextRef;
use aws_sdk_s3::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_smithy_runtime_api::box_error::BoxError;

use crate::config::{StoreConfig, TransferConfig};
use crate::limits::budget::Budget;

/// Which side of the copy a client or an error belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Source,
    Destination,
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Side::Source => "source",
            Side::Destination => "destination",
        })
    }
}

/// Builds a client for one store.
///
/// For any store that is not AWS itself (an endpoint is set), request
/// checksums are "when required": the SDK's default CRC32 and aws-chunked
/// bodies are refused by Ceph (Hetzner) and other S3-compatible stores.
/// ferry computes and checks MD5, SHA-256 and the source's stored checksum
/// itself in any case, so response validation is "when required" everywhere.
pub async fn client(side: Side, store: &StoreConfig, transfer: &TransferConfig) -> Client {
    client_with(side, store, transfer, None).await
}

/// As [`client`], telling `budget` of every throttling answer (503, 429,
/// SlowDown), the SDK's own retries included, so ferry sends less.
pub async fn client_with(
    side: Side,
    store: &StoreConfig,
    transfer: &TransferConfig,
    budget: Option<Arc<Budget>>,
) -> Client {
    let shared = shared_config(store, transfer, transfer.read_timeout).await;
    let mut builder = aws_sdk_s3::config::Builder::from(&shared).force_path_style(store.path_style);
    if let Some(budget) = budget {
        builder = builder.interceptor(ThrottleWatch(budget));
    }
    // ferry asks for and checks the source's stored checksum itself
    // (`ask_stored_checksum`), once per byte: the SDK must not hash every
    // GET from AWS a second time.
    builder = builder.response_checksum_validation(ResponseChecksumValidation::WhenRequired);
    if let Some(endpoint) = &store.endpoint {
        builder = builder
            .endpoint_url(endpoint)
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired);
    }
    tracing::debug!(%side, region = %store.region, endpoint = ?store.endpoint, "client ready");
    Client::from_conf(builder.build())
}

/// A client of the SQS queue at `endpoint` (the queue URL's host), with the
/// source's credentials and region: S3 sends a bucket's events to a queue
/// of its own account and region. `wait` is the longest long poll: the read
/// timeout must outlast it.
pub async fn queue_client(
    store: &StoreConfig,
    transfer: &TransferConfig,
    endpoint: &str,
    wait: std::time::Duration,
) -> aws_sdk_sqs::Client {
    let read_timeout = transfer
        .read_timeout
        .max(wait + std::time::Duration::from_secs(10));
    let shared = shared_config(store, transfer, read_timeout).await;
    let config = aws_sdk_sqs::config::Builder::from(&shared)
        .endpoint_url(endpoint)
        .build();
    aws_sdk_sqs::Client::from_conf(config)
}

/// What both stores' and the queue's clients share: region, credentials,
/// retries, timeouts and the socket limits.
async fn shared_config(
    store: &StoreConfig,
    transfer: &TransferConfig,
    read_timeout: std::time::Duration,
) -> aws_config::SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(store.region.clone()))
        // One retry layer per request, 4 tries in all: the SDK's for calls
        // it can replay (HEAD, List, Create, Complete, Abort, Delete); ferry's
        // own for the streamed GET → PUT of an object or part, which the SDK
        // cannot replay and ferry redoes by fetching the range again. Those
        // calls switch the SDK's off with [`no_sdk_retries`].
        .retry_config(RetryConfig::standard().with_max_attempts(ATTEMPTS))
        // No overall operation timeout: a 5 GiB part legitimately takes
        // minutes. A stream that stalls is caught by the read timeout.
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(transfer.connect_timeout)
                .read_timeout(read_timeout)
                .build(),
        );
    if !store.limits.is_empty() {
        loader = loader.http_client(crate::limits::http_client(&store.limits));
    }
    if let Some(profile) = &store.profile {
        loader = loader.profile_name(profile);
    }
    if let Some(keys) = &store.keys {
        loader = loader.credentials_provider(Credentials::new(
            keys.access_key_id.clone(),
            keys.secret_access_key.expose().to_owned(),
            None,
            None,
            "ferry-config",
        ));
    }
    loader.load().await
}

/// Asks the source for the checksum it stored with the object
/// (`x-amz-checksum-mode: ENABLED`) as a plain header: the SDK's own
/// `checksum_mode` would also have it hash the body a second time, and
/// ferry computes that checksum itself, once, as the bytes pass.
pub fn ask_stored_checksum(request: &mut aws_smithy_runtime_api::http::Request) {
    request
        .headers_mut()
        .insert("x-amz-checksum-mode", "ENABLED");
}

/// Tries per request, in whichever layer retries it.
pub const ATTEMPTS: u32 = 4;

/// For a request ferry retries itself: the SDK tries it once.
pub fn no_sdk_retries() -> aws_sdk_s3::config::Builder {
    aws_sdk_s3::config::Builder::default().retry_config(RetryConfig::disabled())
}

/// Sees every response, and lowers the requests in flight on a throttle.
#[derive(Debug)]
struct ThrottleWatch(Arc<Budget>);

impl Intercept for ThrottleWatch {
    fn name(&self) -> &'static str {
        "ferry-throttle-watch"
    }

    fn read_after_transmit(
        &self,
        context: &BeforeDeserializationInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if matches!(context.response().status().as_u16(), 429 | 503) {
            self.0.throttled();
        }
        Ok(())
    }
}

/// What went wrong with a store call, sorted by what a worker should do next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureKind {
    /// Credentials refused or missing: retrying will not help.
    AccessDenied,
    NoSuchBucket,
    NoSuchKey,
    /// The multipart upload is gone: completed, aborted or expired.
    NoSuchUpload,
    /// If-Match failed: the source object changed since it was listed.
    SourceChanged,
    /// A write with If-None-Match found the destination key taken: whose it
    /// is must be asked (HEAD) before anything is written there.
    Occupied,
    /// The bytes read from the source do not hash to the source's ETag: read
    /// again, from the start of the object.
    SourceCorrupt,
    /// The object is archived (Glacier) and must be restored first.
    Archived,
    /// The object is encrypted with a key its owner keeps (SSE-C): it cannot
    /// be read without that key.
    CustomerKey,
    /// Network trouble or a timeout: worth retrying.
    Unreachable,
    /// 5xx or SlowDown: worth retrying, later.
    Throttled,
    /// Bytes did not arrive as sent (ETag/MD5 mismatch, short body).
    Corrupt,
    /// Any other 4xx: the request itself is wrong for this store (say,
    /// EntityTooSmall); sending it again gets the same answer.
    Refused,
    Other,
}

impl FailureKind {
    pub const ALL: [FailureKind; 14] = [
        FailureKind::AccessDenied,
        FailureKind::NoSuchBucket,
        FailureKind::NoSuchKey,
        FailureKind::NoSuchUpload,
        FailureKind::SourceChanged,
        FailureKind::Occupied,
        FailureKind::SourceCorrupt,
        FailureKind::Archived,
        FailureKind::CustomerKey,
        FailureKind::Unreachable,
        FailureKind::Throttled,
        FailureKind::Corrupt,
        FailureKind::Refused,
        FailureKind::Other,
    ];

    /// A short label, for metrics.
    pub fn label(self) -> &'static str {
        match self {
            FailureKind::AccessDenied => "access_denied",
            FailureKind::NoSuchBucket => "no_such_bucket",
            FailureKind::NoSuchKey => "no_such_key",
            FailureKind::NoSuchUpload => "no_such_upload",
            FailureKind::SourceChanged => "source_changed",
            FailureKind::Occupied => "occupied",
            FailureKind::SourceCorrupt => "source_corrupt",
            FailureKind::Archived => "archived",
            FailureKind::CustomerKey => "customer_key",
            FailureKind::Unreachable => "unreachable",
            FailureKind::Throttled => "throttled",
            FailureKind::Corrupt => "corrupt",
            FailureKind::Refused => "refused",
            FailureKind::Other => "other",
        }
    }

    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            FailureKind::Unreachable
                | FailureKind::Throttled
                | FailureKind::Corrupt
                | FailureKind::Other
        )
    }
}

/// A failed store call, as a sentence that names the store, the call and the fix.
#[derive(Debug, thiserror::Error)]
#[error("{side} {action}: {message}")]
pub struct StoreError {
    pub side: Side,
    pub kind: FailureKind,
    pub action: String,
    pub message: String,
}

impl StoreError {
    pub fn new(
        side: Side,
        kind: FailureKind,
        action: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        StoreError {
            side,
            kind,
            action: action.into(),
            message: message.into(),
        }
    }

    /// A body whose stream broke off before its end: worth a retry.
    pub fn cut_off(side: Side, action: impl Into<String>, err: impl fmt::Display) -> Self {
        StoreError::new(
            side,
            FailureKind::Unreachable,
            action,
            format!("body cut off: {err}"),
        )
    }

    /// Classifies an SDK error. `action` says what was attempted, e.g.
    /// "GetObject audio/book.mp3"; no credentials ever reach the message.
    pub fn from_sdk<E, R>(side: Side, action: impl Into<String>, err: SdkError<E, R>) -> Self
    where
        E: ProvideErrorMetadata + StdError + 'static,
        R: HttpStatus + fmt::Debug + 'static,
    {
        let status = err.raw_response().map(|r| r.status_code());
        let code = err.code().map(str::to_owned);
        let (kind, message) = match &err {
            SdkError::TimeoutError(_) => (FailureKind::Unreachable, "timed out".to_owned()),
            SdkError::DispatchFailure(_) => (
                FailureKind::Unreachable,
                format!(
                    "could not reach the {side} endpoint ({}); check the endpoint URL and the network",
                    chain(&err)
                ),
            ),
            SdkError::ResponseError(_) => (FailureKind::Unreachable, format!("bad response: {}", chain(&err))),
            _ => classify(side, status, code.as_deref(), err.message()),
        };
        StoreError::new(side, kind, action, message)
    }
}

fn classify(
    side: Side,
    status: Option<u16>,
    code: Option<&str>,
    message: Option<&str>,
) -> (FailureKind, String) {
    let detail = match (code, message, status) {
        (Some(c), Some(m), _) => format!("{c}: {m}"),
        (Some(c), None, _) => c.to_owned(),
        (None, _, Some(s)) => format!("HTTP {s}"),
        _ => "unknown error".to_owned(),
    };
    match (code, status) {
        (Some("NoSuchBucket"), _) => (
            FailureKind::NoSuchBucket,
            format!("{detail}. Create the bucket at the {side}, or fix the bucket name in the config"),
        ),
        // S3 answers a GET of an archived object with 403: the code decides, not the status.
        (Some("InvalidObjectState"), _) => (
            FailureKind::Archived,
            format!("{detail}. The object is archived: restore it at the source first (ferry does, unless its bucket pair says restore = \"off\")"),
        ),
        // S3's answer to a GET of an SSE-C object sent without its key.
        (Some("InvalidRequest"), _)
            if message.is_some_and(|m| m.contains("Server Side Encryption")) =>
        {
            (
                FailureKind::CustomerKey,
                format!("{detail}. The object is encrypted at the {side} with a customer-provided key (SSE-C); ferry cannot read it without that key, so it is skipped"),
            )
        }
        (Some("AccessDenied" | "InvalidAccessKeyId" | "SignatureDoesNotMatch" | "ExpiredToken"), _)
        | (_, Some(401 | 403)) => (
            FailureKind::AccessDenied,
            format!("{detail}. Check the {side} credentials (the env vars named in the config) and their permissions"),
        ),
        (Some("NoSuchUpload"), _) => (FailureKind::NoSuchUpload, detail),
        (Some("NoSuchKey" | "NotFound"), _) | (None, Some(404)) => (FailureKind::NoSuchKey, detail),
        // Only writes to the destination carry If-None-Match.
        (Some("PreconditionFailed"), _) | (_, Some(412)) if side == Side::Destination => (
            FailureKind::Occupied,
            format!("{detail}: the key was taken at the destination before ferry wrote it"),
        ),
        (Some("PreconditionFailed"), _) | (_, Some(412)) => (
            FailureKind::SourceChanged,
            "the source object changed since it was listed; it will be listed and copied again".to_owned(),
        ),
        (Some("BadDigest" | "InvalidDigest" | "IncompleteBody"), _) => (FailureKind::Corrupt, detail),
        (Some("SlowDown" | "ServiceUnavailable" | "RequestTimeout" | "InternalError"), _)
        | (_, Some(408 | 429)) => (FailureKind::Throttled, detail),
        (_, Some(s)) if s >= 500 => (FailureKind::Throttled, detail),
        (_, Some(400..=499)) => (FailureKind::Refused, detail),
        _ => (FailureKind::Other, detail),
    }
}

/// The status code of a raw response, whatever its type.
pub trait HttpStatus {
    fn status_code(&self) -> u16;
}

impl HttpStatus for aws_smithy_runtime_api::http::Response {
    fn status_code(&self) -> u16 {
        self.status().as_u16()
    }
}

/// An error and its causes in one line.
pub fn chain(err: &dyn StdError) -> String {
    let mut text = err.to_string();
    let mut cause = err.source();
    while let Some(c) = cause {
        let s = c.to_string();
        if !text.contains(&s) {
            text.push_str(": ");
            text.push_str(&s);
        }
        cause = c.source();
    }
    text
}

/// SSE-C headers, on the requests that write or read a destination object's
/// bytes (PUT, the multipart calls, GET, HEAD). `None` leaves the request as it is.
pub trait WithCustomerKey: Sized {
    fn customer_key(self, key: Option<&crate::config::CustomerKey>) -> Self;
}

macro_rules! with_customer_key {
    ($($builder:ty),*) => {$(
        impl WithCustomerKey for $builder {
            fn customer_key(self, key: Option<&crate::config::CustomerKey>) -> Self {
                match key.map(|k| k.headers()) {
                    None => self,
                    Some((key, md5)) => self
                        .sse_customer_algorithm("AES256")
                        .sse_customer_key(key)
                        .sse_customer_key_md5(md5),
                }
            }
        }
    )*};
}

with_customer_key!(
    aws_sdk_s3::operation::put_object::builders::PutObjectFluentBuilder,
    aws_sdk_s3::operation::create_multipart_upload::builders::CreateMultipartUploadFluentBuilder,
    aws_sdk_s3::operation::upload_part::builders::UploadPartFluentBuilder,
    aws_sdk_s3::operation::complete_multipart_upload::builders::CompleteMultipartUploadFluentBuilder,
    aws_sdk_s3::operation::get_object::builders::GetObjectFluentBuilder,
    aws_sdk_s3::operation::head_object::builders::HeadObjectFluentBuilder
);
