//! A fault-injecting HTTP proxy of our own, between ferry and a server. At
//! configured rates it answers 503 SlowDown or 500, resets the connection
//! before or during a body, stalls, truncates a response body, or flips one
//! bit in a request body (towards the destination) or a response body (from
//! the source). It counts everything it injected. It can also play parts of
//! S3 that the local servers lack: an archive tier (Glacier) for keys with a
//! given prefix, empty listing pages that are not the last, and part answers
//! with the part's own ETag (as moto gives them). It counts RestoreObject
//! requests by key.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::body::{Body, Frame, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

type ProxyBody = BoxBody<Bytes, std::io::Error>;

fn io(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

/// Chances per request, each from 0 to 1; at most one fault per request.
#[derive(Clone, Copy, Debug, Default)]
pub struct Rates {
    pub slow_down: f64,
    pub internal_error: f64,
    pub reset_before: f64,
    pub reset_during: f64,
    pub stall: f64,
    pub truncate: f64,
    pub flip_request: f64,
    pub flip_response: f64,
}

/// What the proxy plays of S3 beyond the server behind it.
#[derive(Clone, Debug, Default)]
pub struct Plays {
    /// Keys starting with this are listed in the DEEP_ARCHIVE storage class.
    pub listed: Option<String>,
    /// GETs of keys starting with this answer 403 InvalidObjectState, as
    /// S3 does for an archived object that is not restored.
    pub refused: Option<String>,
    /// As `refused`, for the first GET of each key starting with this
    /// only: an object whose restored copy expired before it was read, or
    /// an Intelligent-Tiering object in an archive tier (moto has neither).
    pub refused_once: Option<String>,
    /// ListObjectsV2 asking for `x-amz-optional-object-attributes` answers
    /// 403 AccessDenied, as AWS may for credentials without the permission.
    pub refuse_restore_status: bool,
    /// Answers the first page of every ListObjectsV2 listing with no keys,
    /// IsTruncated and a continuation token for the real first page, as S3
    /// may. (The token is in Garage's own format: `[` and the base64 of the
    /// key to start at, or `]` and of the key to start after.)
    pub empty_first_page: bool,
    /// Keys starting with this are SSE-C objects read without their key:
    /// HEAD answers 400 with no body, GET 400 InvalidRequest, as S3 does.
    pub customer_key: Option<String>,
    /// Keys starting with this answer HEAD and GET as SSE-KMS objects do
    /// (`x-amz-server-side-encryption: aws:kms`). Their ETags stay the
    /// server's: ferry's If-Match is signed, so the proxy cannot map a fake
    /// one back.
    pub kms: Option<String>,
    /// Every ListObjectsV2 page is answered this much later: a large bucket
    /// far away, whose listing takes a while.
    pub list_delay: Option<std::time::Duration>,
    /// Plays credentials without s3:GetObjectTagging, as AWS answers them:
    /// `?tagging` GETs answer 403 AccessDenied, and GetObject and HeadObject
    /// leave out `x-amz-tagging-count`.
    pub tags_denied: bool,
    /// The first GET whose Range header starts with this gets one bit of
    /// its answer flipped (once).
    pub flip_range: Option<String>,
    /// UploadPart of this part number answers 500 InternalError, every time.
    pub refuse_part: Option<u32>,
    /// The first PUT with If-None-Match of a key ending with this waits
    /// for `Injected::release` before it goes on: the test writes the key
    /// meanwhile, as another writer slipping in just before ferry.
    pub hold_put: Option<String>,
    /// SQS DeleteMessage(Batch) requests are held for good (never sent on),
    /// counted in `Injected::queue_deletes_held`: a ferry killed meanwhile
    /// has committed its events but not deleted their messages.
    pub hold_queue_deletes: bool,
    /// The first SQS ReceiveMessage answer that holds this text has its
    /// first byte changed (once), and the message's MD5 left as SQS sent
    /// it: a message damaged on the way, which names another bucket.
    pub damage_queue_message: Option<String>,
    /// The first PUT of a key ending with this is done by the store, but
    /// ferry hears SlowDown instead of the answer: a lost acknowledgement.
    pub lose_put_answer: Option<String>,
    /// Keys starting with this are left out of every ListObjectsV2 page,
    /// though the store holds them: a listing that misses keys.
    pub unlisted: Option<String>,
    /// The first GET of a key ending with this gets one bit of its answer
    /// flipped (once): a read that goes wrong on the way, not at rest.
    pub flip_get: Option<String>,
    /// HEAD and GET `?partNumber=N` answer with the part's own ETag, as moto
    /// does: If-Match with the object's ETag gets 412 PreconditionFailed.
    pub part_etags: bool,
    /// CompleteMultipartUpload answers 500 InternalError, every time: the
    /// parts stay uploaded, the upload uncompleted.
    pub refuse_complete: bool,
    /// The first PutObject or CreateMultipartUpload of a key ending with
    /// this is done by the store, but its answer is held until
    /// `Injected::release` and then lost (ferry hears SlowDown): a run
    /// killed meanwhile never heard it; one let go hears it failed.
    pub hold_and_lose_answer: Option<String>,
    /// As `hold_and_lose_answer`, for the first CompleteMultipartUpload of
    /// a key ending with this: the object is complete at the store, and a
    /// run killed while the answer is held never heard so.
    pub hold_complete_answer: Option<String>,
    /// Every PutObject of a key ending with this answers 412
    /// PreconditionFailed and is not sent on: a store that refuses writes
    /// with a precondition they do not carry.
    pub refuse_puts: Option<String>,
}

#[derive(Debug, Default)]
pub struct Injected {
    /// GETs answered InvalidObjectState.
    pub refused_gets: AtomicU64,
    /// Keys `Plays::refused_once` refused a GET of.
    pub refused_once_keys: std::sync::Mutex<std::collections::HashSet<String>>,
    /// Listings refused by `Plays::refuse_restore_status`, and listings
    /// that asked for RestoreStatus at all.
    pub restore_status_refused: AtomicU64,
    pub restore_status_asked: AtomicU64,
    /// The key (as sent, percent-encoded) of every RestoreObject sent on.
    pub restores: std::sync::Mutex<Vec<String>>,
    /// HEADs and GETs of SSE-C objects, refused.
    pub customer_key_requests: AtomicU64,
    /// Keys (decoded) of every object body that went through whole with a
    /// flipped bit: what the receiver could and must have caught.
    pub flipped_keys: std::sync::Mutex<Vec<String>>,
    pub requests: AtomicU64,
    /// PUT, POST and DELETE requests: every S3 call that changes a store.
    pub writes: AtomicU64,
    /// Every ListObjectsV2 request, in order.
    pub listings: std::sync::Mutex<Vec<Listing>>,
    /// When the first and the last request arrived.
    pub window: std::sync::Mutex<Option<(std::time::Instant, std::time::Instant)>>,
    pub slow_down: AtomicU64,
    pub internal_error: AtomicU64,
    pub reset_before: AtomicU64,
    pub reset_during: AtomicU64,
    pub stall: AtomicU64,
    pub truncate: AtomicU64,
    pub flip_request: AtomicU64,
    pub flip_response: AtomicU64,
    /// Whether `Plays::flip_range` has flipped its answer.
    pub range_flipped: std::sync::atomic::AtomicBool,
    /// Whether `Plays::flip_get` has flipped its answer.
    pub get_flipped: std::sync::atomic::AtomicBool,
    /// Keys (decoded) of every CompleteMultipartUpload sent upstream.
    pub completes: std::sync::Mutex<Vec<String>>,
    /// Keys (decoded) of every PutObject sent upstream.
    pub put_keys: std::sync::Mutex<Vec<String>>,
    /// HEAD requests of an object (not of a bucket).
    pub object_heads: AtomicU64,
    /// PUT requests that carried If-None-Match.
    pub puts_if_absent: AtomicU64,
    /// `Plays::hold_queue_deletes`: SQS deletes held so far.
    pub queue_deletes_held: AtomicU64,
    /// `Plays::damage_queue_message`: SQS answers damaged so far.
    pub queue_messages_damaged: AtomicU64,
    /// `Plays::hold_put`: told when the PUT is held, and when to let it go.
    pub holding: tokio::sync::Notify,
    pub release: tokio::sync::Notify,
    held_once: std::sync::atomic::AtomicBool,
    answer_lost: std::sync::atomic::AtomicBool,
    /// GETs of an object's bytes (not of its tags, nor listings).
    pub object_gets: AtomicU64,
    /// `Plays::part_etags`: part requests answered 412 to their If-Match.
    pub part_answers_refused: AtomicU64,
    answer_held: std::sync::atomic::AtomicBool,
    /// The upload id of every CreateMultipartUpload the store answered, in
    /// order, whether or not its answer reached the client.
    pub created_uploads: std::sync::Mutex<Vec<String>>,
    /// The upload id of every AbortMultipartUpload sent on.
    pub aborted_uploads: std::sync::Mutex<Vec<String>>,
    /// PutObjects answered 412 by `Plays::refuse_puts`.
    pub refused_puts: AtomicU64,
}

/// One ListObjectsV2 request.
#[derive(Clone, Debug)]
pub struct Listing {
    pub bucket: String,
    /// One key asked for: the range splitter probing where keys lie.
    pub probe: bool,
    /// The key it asked to start after, if any.
    pub start_after: Option<String>,
    /// It went on from an earlier page's continuation token.
    pub continued: bool,
}

impl Injected {
    /// ListObjectsV2 requests for `bucket`: (pages, probes).
    pub fn listings_of(&self, bucket: &str) -> (usize, usize) {
        let listings = self.listings.lock().unwrap();
        let of = listings.iter().filter(|l| l.bucket == bucket);
        let probes = of.clone().filter(|l| l.probe).count();
        (of.count() - probes, probes)
    }

    /// Where each page listing of `bucket` that did not go on from a token
    /// started: after a key (a range's start, or a cursor), or at the top.
    pub fn page_starts_of(&self, bucket: &str) -> Vec<Option<String>> {
        let listings = self.listings.lock().unwrap();
        listings
            .iter()
            .filter(|l| l.bucket == bucket && !l.probe && !l.continued)
            .map(|l| l.start_after.clone())
            .collect()
    }

    pub fn flips(&self) -> u64 {
        self.flip_request.load(Ordering::Relaxed) + self.flip_response.load(Ordering::Relaxed)
    }

    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Requests per second between the first and the last.
    pub fn request_rate(&self) -> f64 {
        match *self.window.lock().unwrap() {
            Some((first, last)) if last > first => {
                (self.requests() - 1) as f64 / (last - first).as_secs_f64()
            }
            _ => 0.0,
        }
    }

    pub fn total(&self) -> u64 {
        [
            &self.slow_down,
            &self.internal_error,
            &self.reset_before,
            &self.reset_during,
            &self.stall,
            &self.truncate,
            &self.flip_request,
            &self.flip_response,
        ]
        .iter()
        .map(|c| c.load(Ordering::Relaxed))
        .sum()
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Fault {
    None,
    SlowDown,
    InternalError,
    ResetBefore,
    ResetDuring,
    Stall,
    Truncate,
    FlipRequest,
    FlipResponse,
}

impl Rates {
    fn roll(&self) -> Fault {
        let mut x = fastrand::f64();
        for (rate, fault) in [
            (self.slow_down, Fault::SlowDown),
            (self.internal_error, Fault::InternalError),
            (self.reset_before, Fault::ResetBefore),
            (self.reset_during, Fault::ResetDuring),
            (self.stall, Fault::Stall),
            (self.truncate, Fault::Truncate),
            (self.flip_request, Fault::FlipRequest),
            (self.flip_response, Fault::FlipResponse),
        ] {
            if x < rate {
                return fault;
            }
            x -= rate;
        }
        Fault::None
    }
}

pub struct FaultProxy {
    pub addr: SocketAddr,
    pub injected: Arc<Injected>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    /// `stall` is how long a stalled response waits before its body: longer
    /// than ferry's read timeout.
    pub async fn start(upstream: &str, rates: Rates, stall: Duration) -> FaultProxy {
        Self::start_with(upstream, rates, stall, Plays::default()).await
    }

    /// A proxy that injects nothing but plays what `plays` says.
    pub async fn playing(upstream: &str, plays: Plays) -> FaultProxy {
        Self::start_with(upstream, Rates::default(), Duration::ZERO, plays).await
    }

    async fn start_with(upstream: &str, rates: Rates, stall: Duration, plays: Plays) -> FaultProxy {
        let plays = Arc::new(plays);
        let upstream = upstream.trim_end_matches('/').to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let injected = Arc::new(Injected::default());
        let client: Client<_, ProxyBody> = Client::builder(TokioExecutor::new()).build_http();
        let counts = injected.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (client, counts, upstream, plays) = (
                    client.clone(),
                    counts.clone(),
                    upstream.clone(),
                    plays.clone(),
                );
                tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        let (client, counts, upstream, plays) = (
                            client.clone(),
                            counts.clone(),
                            upstream.clone(),
                            plays.clone(),
                        );
                        async move {
                            let faults = Faults {
                                rates,
                                stall,
                                plays: &plays,
                            };
                            handle(req, client, counts, &upstream, faults).await
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        FaultProxy {
            addr,
            injected,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn slow_down() -> Response<ProxyBody> {
    Response::builder()
        .status(503)
        .body(error_body("SlowDown", "Please reduce your request rate."))
        .unwrap()
}

fn error_body(code: &str, message: &str) -> ProxyBody {
    let xml = format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{code}</Code><Message>{message}</Message></Error>");
    Full::new(Bytes::from(xml)).map_err(|e| match e {}).boxed()
}

type Upstream = Client<hyper_util::client::legacy::connect::HttpConnector, ProxyBody>;

struct Faults<'a> {
    rates: Rates,
    stall: Duration,
    plays: &'a Plays,
}

/// The key of a path-style request (`/bucket/key`), still percent-encoded.
fn key_of(path: &str) -> &str {
    path.splitn(3, '/').nth(2).unwrap_or("")
}

/// A page with no keys that says the listing goes on, with a token that
/// starts the real listing where this request asked it to start.
fn empty_page(query: &str) -> Response<ProxyBody> {
    use base64::Engine as _;
    let after = query
        .split('&')
        .find_map(|p| p.strip_prefix("start-after="))
        .map(|a| {
            percent_encoding::percent_decode_str(a)
                .decode_utf8_lossy()
                .into_owned()
        });
    let token = match after {
        Some(key) => format!("]{}", base64::engine::general_purpose::STANDARD.encode(key)),
        None => "[".to_owned(),
    };
    let xml = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\
         <KeyCount>0</KeyCount><MaxKeys>1000</MaxKeys><IsTruncated>true</IsTruncated>\
         <NextContinuationToken>{}</NextContinuationToken></ListBucketResult>",
        xml_escape(&token)
    );
    Response::builder()
        .status(200)
        .header("content-type", "application/xml")
        .body(Full::new(Bytes::from(xml)).map_err(|e| match e {}).boxed())
        .unwrap()
}

fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A ListObjectsV2 answer with every key under `prefix` in DEEP_ARCHIVE.
/// The listing without the entries of keys starting with `prefix`; keys
/// are percent-encoded when the listing asked for `encoding-type=url`.
fn unlisted(xml: &str, prefix: &str, url_encoded: bool) -> String {
    let hidden = |entry: &str| {
        let Some(key) = entry
            .split_once("<Key>")
            .and_then(|(_, rest)| rest.split_once("</Key>"))
            .map(|(key, _)| key)
        else {
            return false;
        };
        let key = if url_encoded {
            percent_encoding::percent_decode_str(key)
                .decode_utf8_lossy()
                .into_owned()
        } else {
            key.to_owned()
        };
        key.starts_with(prefix)
    };
    xml.split("<Contents>")
        .enumerate()
        .filter(|(i, entry)| *i == 0 || !hidden(entry))
        .map(|(_, entry)| entry)
        .collect::<Vec<_>>()
        .join("<Contents>")
}

fn archive_listing(xml: &str, prefix: &str) -> String {
    xml.split("<Contents>")
        .enumerate()
        .map(|(i, entry)| {
            if i == 0 || !entry.contains(&format!("<Key>{prefix}")) {
                return entry.to_owned();
            }
            let class = "<StorageClass>DEEP_ARCHIVE</StorageClass>";
            match (entry.find("<StorageClass>"), entry.find("</StorageClass>")) {
                (Some(start), Some(end)) => {
                    let end = end + "</StorageClass>".len();
                    format!("{}{class}{}", &entry[..start], &entry[end..])
                }
                _ => entry.replacen("</Contents>", &format!("{class}</Contents>"), 1),
            }
        })
        .collect::<Vec<_>>()
        .join("<Contents>")
}

async fn handle(
    req: Request<Incoming>,
    client: Upstream,
    counts: Arc<Injected>,
    upstream: &str,
    Faults {
        rates,
        stall,
        plays,
    }: Faults<'_>,
) -> Result<Response<ProxyBody>, std::io::Error> {
    counts.requests.fetch_add(1, Ordering::Relaxed);
    if matches!(
        *req.method(),
        hyper::Method::PUT | hyper::Method::POST | hyper::Method::DELETE
    ) {
        counts.writes.fetch_add(1, Ordering::Relaxed);
    }
    {
        let now = std::time::Instant::now();
        let mut window = counts.window.lock().unwrap();
        *window = Some((window.map_or(now, |w| w.0), now));
    }
    let fault = rates.roll();
    let count = |c: &AtomicU64| {
        c.fetch_add(1, Ordering::Relaxed);
    };
    match fault {
        Fault::SlowDown => {
            count(&counts.slow_down);
            return Ok(slow_down());
        }
        Fault::InternalError => {
            count(&counts.internal_error);
            return Ok(Response::builder()
                .status(500)
                .body(error_body("InternalError", "injected"))
                .unwrap());
        }
        Fault::ResetBefore => {
            count(&counts.reset_before);
            return Err(io("injected reset"));
        }
        _ => {}
    }
    let (parts, body) = req.into_parts();
    let target = parts
        .headers
        .get("x-amz-target")
        .and_then(|t| t.to_str().ok());
    if plays.hold_queue_deletes && target.is_some_and(|t| t.starts_with("AmazonSQS.DeleteMessage"))
    {
        count(&counts.queue_deletes_held);
        std::future::pending::<()>().await;
    }
    let key = key_of(parts.uri.path());
    if parts.method == hyper::Method::HEAD && !key.is_empty() {
        count(&counts.object_heads);
    }
    if parts.method == hyper::Method::GET
        && !key.is_empty()
        && parts.uri.query().is_none_or(|q| !q.contains("tagging"))
    {
        count(&counts.object_gets);
    }
    if parts.method == hyper::Method::PUT && parts.headers.contains_key("if-none-match") {
        count(&counts.puts_if_absent);
        let held = plays.hold_put.as_deref().is_some_and(|k| key.ends_with(k));
        if held && !counts.held_once.swap(true, Ordering::SeqCst) {
            counts.holding.notify_one();
            counts.release.notified().await;
        }
    }
    if let Some(prefix) = &plays.refused {
        if parts.method == hyper::Method::GET && key.starts_with(prefix.as_str()) {
            count(&counts.refused_gets);
            return Ok(Response::builder()
                .status(403)
                .body(error_body(
                    "InvalidObjectState",
                    "The operation is not valid for the object's storage class",
                ))
                .unwrap());
        }
    }
    if let Some(prefix) = &plays.refused_once {
        if parts.method == hyper::Method::GET
            && key.starts_with(prefix.as_str())
            && counts
                .refused_once_keys
                .lock()
                .unwrap()
                .insert(key.to_owned())
        {
            count(&counts.refused_gets);
            return Ok(Response::builder()
                .status(403)
                .body(error_body(
                    "InvalidObjectState",
                    "The operation is not valid for the object's storage class",
                ))
                .unwrap());
        }
    }
    if parts.method == hyper::Method::POST
        && parts
            .uri
            .query()
            .is_some_and(|q| q.split('&').any(|p| p == "restore" || p == "restore="))
    {
        counts.restores.lock().unwrap().push(key.to_owned());
    }
    if let Some(prefix) = &plays.customer_key {
        if key.starts_with(prefix.as_str()) && !parts.uri.query().unwrap_or("").contains("uploadId")
        {
            let body = match parts.method {
                hyper::Method::GET => error_body(
                    "InvalidRequest",
                    "The object was stored using a form of Server Side Encryption. The correct parameters must be provided to retrieve the object.",
                ),
                hyper::Method::HEAD => Full::new(Bytes::new()).map_err(|e| match e {}).boxed(),
                _ => return Err(io("the proxy plays SSE-C for reads only")),
            };
            count(&counts.customer_key_requests);
            return Ok(Response::builder().status(400).body(body).unwrap());
        }
    }
    let query = parts.uri.query().unwrap_or("");
    if plays.tags_denied && parts.method == hyper::Method::GET && query.contains("tagging") {
        return Ok(Response::builder()
            .status(403)
            .body(error_body("AccessDenied", "Access Denied"))
            .unwrap());
    }
    if parts.method == hyper::Method::PUT
        && plays
            .refuse_part
            .is_some_and(|n| query.split('&').any(|p| p == format!("partNumber={n}")))
    {
        count(&counts.internal_error);
        return Ok(Response::builder()
            .status(500)
            .body(error_body("InternalError", "injected for this part"))
            .unwrap());
    }
    if plays.refuse_complete && parts.method == hyper::Method::POST && query.contains("uploadId") {
        count(&counts.internal_error);
        return Ok(Response::builder()
            .status(500)
            .body(error_body("InternalError", "injected for every Complete"))
            .unwrap());
    }
    let part_answer = plays.part_etags
        && matches!(parts.method, hyper::Method::HEAD | hyper::Method::GET)
        && query.split('&').any(|p| p.starts_with("partNumber="));
    if part_answer && parts.headers.contains_key(hyper::header::IF_MATCH) {
        count(&counts.part_answers_refused);
        let body = match parts.method {
            hyper::Method::HEAD => Full::new(Bytes::new()).map_err(|e| match e {}).boxed(),
            _ => error_body(
                "PreconditionFailed",
                "At least one of the pre-conditions you specified did not hold",
            ),
        };
        return Ok(Response::builder().status(412).body(body).unwrap());
    }
    // PutObject, not UploadPart nor PutObjectTagging; CreateMultipartUpload.
    let is_put_object = parts.method == hyper::Method::PUT
        && !key.is_empty()
        && !query.contains("uploadId")
        && !query.contains("tagging");
    let is_create = parts.method == hyper::Method::POST
        && query.split('&').any(|p| p == "uploads" || p == "uploads=");
    let is_complete = parts.method == hyper::Method::POST && query.contains("uploadId=");
    if is_put_object
        && plays
            .refuse_puts
            .as_deref()
            .is_some_and(|k| key.ends_with(k))
    {
        count(&counts.refused_puts);
        return Ok(Response::builder()
            .status(412)
            .body(error_body(
                "PreconditionFailed",
                "At least one of the pre-conditions you specified did not hold",
            ))
            .unwrap());
    }
    if parts.method == hyper::Method::DELETE {
        if let Some(id) = query.split('&').find_map(|p| p.strip_prefix("uploadId=")) {
            let id = percent_encoding::percent_decode_str(id).decode_utf8_lossy();
            counts.aborted_uploads.lock().unwrap().push(id.into_owned());
        }
    }
    let is_listing =
        parts.method == hyper::Method::GET && key.is_empty() && query.contains("list-type=2");
    if plays.empty_first_page && is_listing && !query.contains("continuation-token") {
        return Ok(empty_page(query));
    }
    if is_listing {
        let bucket = parts.uri.path().trim_matches('/').to_owned();
        let param = |name: &str| {
            query
                .split('&')
                .find_map(|p| p.strip_prefix(name))
                .map(|v| {
                    percent_encoding::percent_decode_str(v)
                        .decode_utf8_lossy()
                        .into_owned()
                })
        };
        counts.listings.lock().unwrap().push(Listing {
            bucket,
            probe: param("max-keys=").as_deref() == Some("1"),
            start_after: param("start-after="),
            continued: param("continuation-token=").is_some(),
        });
    }
    if is_listing
        && parts
            .headers
            .contains_key("x-amz-optional-object-attributes")
    {
        count(&counts.restore_status_asked);
        if plays.refuse_restore_status {
            count(&counts.restore_status_refused);
            return Ok(Response::builder()
                .status(403)
                .body(error_body("AccessDenied", "Access Denied"))
                .unwrap());
        }
    }
    if let Some(delay) = plays.list_delay.filter(|_| is_listing) {
        tokio::time::sleep(delay).await;
    }
    // Bits are flipped in object bytes only (PutObject and UploadPart
    // bodies, GetObject answers), never in the XML around them: that is what
    // ferry's checksums guard (TLS guards the rest in real life).
    let object_bytes =
        !key.is_empty() && !query.contains("uploads") && !query.contains("list-type");
    let decoded_key = percent_encoding::percent_decode_str(key)
        .decode_utf8_lossy()
        .into_owned();
    if parts.method == hyper::Method::POST && query.contains("uploadId") {
        counts.completes.lock().unwrap().push(decoded_key.clone());
    }
    if parts.method == hyper::Method::PUT
        && !key.is_empty()
        && !query.contains("uploadId")
        && !query.contains("tagging")
    {
        counts.put_keys.lock().unwrap().push(decoded_key.clone());
    }
    let flip_range = parts.method == hyper::Method::GET
        && plays.flip_range.as_deref().is_some_and(|start| {
            parts
                .headers
                .get(hyper::header::RANGE)
                .and_then(|r| r.to_str().ok())
                .is_some_and(|r| r.starts_with(start))
        })
        && !counts.range_flipped.swap(true, Ordering::Relaxed);
    let flip_get = parts.method == hyper::Method::GET
        && object_bytes
        && plays
            .flip_get
            .as_deref()
            .is_some_and(|k| decoded_key.ends_with(k))
        && !counts.get_flipped.swap(true, Ordering::Relaxed);
    let has_body = body.size_hint().lower() > 0;
    let flip_request = fault == Fault::FlipRequest
        && has_body
        && object_bytes
        && parts.method == hyper::Method::PUT;
    let body: ProxyBody = if flip_request {
        count(&counts.flip_request);
        FlipOne::new(
            body.map_err(io).boxed(),
            counts.clone(),
            decoded_key.clone(),
        )
        .boxed()
    } else {
        body.map_err(io).boxed()
    };
    let uri = format!(
        "{upstream}{}",
        parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/")
    );
    let mut forward = Request::builder().method(parts.method.clone()).uri(uri);
    for (k, v) in &parts.headers {
        forward = forward.header(k, v);
    }
    let response = client
        .request(forward.body(body).map_err(io)?)
        .await
        .map_err(io)?;
    let (mut head, body) = response.into_parts();
    let (body, created): (ProxyBody, bool) = if is_create && head.status.is_success() {
        let xml = body.collect().await.map_err(io)?.to_bytes();
        let text = String::from_utf8_lossy(&xml);
        if let Some(id) = text
            .split_once("<UploadId>")
            .and_then(|(_, rest)| rest.split_once("</UploadId>"))
        {
            counts.created_uploads.lock().unwrap().push(id.0.to_owned());
        }
        (Full::new(xml).map_err(|e| match e {}).boxed(), true)
    } else {
        (body.map_err(io).boxed(), false)
    };
    let hold = plays
        .hold_and_lose_answer
        .as_deref()
        .is_some_and(|k| key.ends_with(k));
    if hold
        && (is_put_object || created)
        && head.status.is_success()
        && !counts.answer_held.swap(true, Ordering::SeqCst)
    {
        counts.holding.notify_one();
        counts.release.notified().await;
        return Ok(slow_down());
    }
    let hold_complete = plays
        .hold_complete_answer
        .as_deref()
        .is_some_and(|k| key.ends_with(k));
    if hold_complete
        && is_complete
        && head.status.is_success()
        && !counts.answer_held.swap(true, Ordering::SeqCst)
    {
        counts.holding.notify_one();
        counts.release.notified().await;
        return Ok(slow_down());
    }
    let lose = plays
        .lose_put_answer
        .as_deref()
        .is_some_and(|k| key.ends_with(k));
    if lose
        && parts.method == hyper::Method::PUT
        && head.status.is_success()
        && !counts.answer_lost.swap(true, Ordering::SeqCst)
    {
        return Ok(slow_down());
    }
    let receive = target.is_some_and(|t| t == "AmazonSQS.ReceiveMessage");
    if let (Some(text), true) = (&plays.damage_queue_message, receive) {
        let json = body.collect().await.map_err(io)?.to_bytes();
        let mut answer = String::from_utf8_lossy(&json).into_owned();
        if answer.contains(text.as_str())
            && counts.queue_messages_damaged.load(Ordering::SeqCst) == 0
        {
            count(&counts.queue_messages_damaged);
            let mut damaged = text.clone().into_bytes();
            damaged[0] ^= 1;
            answer = answer.replacen(text.as_str(), &String::from_utf8(damaged).unwrap(), 1);
        }
        head.headers.remove(hyper::header::CONTENT_LENGTH);
        return Ok(Response::from_parts(
            head,
            Full::new(Bytes::from(answer))
                .map_err(|e| match e {})
                .boxed(),
        ));
    }
    if let (Some(prefix), true) = (&plays.unlisted, is_listing) {
        let xml = body.collect().await.map_err(io)?.to_bytes();
        let url_encoded = query.contains("encoding-type=url");
        let xml = unlisted(&String::from_utf8_lossy(&xml), prefix, url_encoded);
        head.headers.remove(hyper::header::CONTENT_LENGTH);
        return Ok(Response::from_parts(
            head,
            Full::new(Bytes::from(xml)).map_err(|e| match e {}).boxed(),
        ));
    }
    if let (Some(prefix), true) = (&plays.listed, is_listing) {
        let xml = body.collect().await.map_err(io)?.to_bytes();
        let xml = archive_listing(&String::from_utf8_lossy(&xml), prefix);
        head.headers.remove(hyper::header::CONTENT_LENGTH);
        return Ok(Response::from_parts(
            head,
            Full::new(Bytes::from(xml)).map_err(|e| match e {}).boxed(),
        ));
    }
    let len = body.size_hint().exact().unwrap_or(0);
    let body = match fault {
        _ if flip_range || flip_get => {
            count(&counts.flip_response);
            FlipOne::new(body, counts.clone(), decoded_key).boxed()
        }
        Fault::FlipResponse
            if len > 0
                && head.status.is_success()
                && object_bytes
                && !query.contains("uploadId")
                && parts.method == hyper::Method::GET =>
        {
            count(&counts.flip_response);
            FlipOne::new(body, counts.clone(), decoded_key).boxed()
        }
        Fault::Stall => {
            count(&counts.stall);
            tokio::time::sleep(stall).await;
            body
        }
        Fault::ResetDuring if len > 1 => {
            count(&counts.reset_during);
            Cut::new(body, len / 2, true).boxed()
        }
        Fault::Truncate if len > 1 => {
            count(&counts.truncate);
            // Claims the full length, ends early: the connection closes.
            Cut::new(body, len / 2, false).boxed()
        }
        // A body fault rolled for a response without a body (or a request
        // flip for one without a body): the store did the work, and the
        // client hears SlowDown anyway, so the rate injected is the rate rolled.
        Fault::FlipResponse | Fault::ResetDuring | Fault::Truncate => {
            count(&counts.slow_down);
            return Ok(slow_down());
        }
        Fault::FlipRequest if !flip_request => {
            count(&counts.slow_down);
            return Ok(slow_down());
        }
        _ => body,
    };
    head.headers.remove(hyper::header::TRANSFER_ENCODING);
    if part_answer {
        // The part's "own" ETag: the object's without its part count.
        let own = head
            .headers
            .get(hyper::header::ETAG)
            .and_then(|e| e.to_str().ok())
            .and_then(|e| e.trim_matches('"').split_once('-'))
            .and_then(|(md5, _)| hyper::header::HeaderValue::from_str(&format!("\"{md5}\"")).ok());
        if let Some(own) = own {
            head.headers.insert(hyper::header::ETAG, own);
        }
    }
    if plays.tags_denied {
        head.headers.remove("x-amz-tagging-count");
    }
    if let Some(prefix) = &plays.kms {
        if key.starts_with(prefix.as_str()) && head.status.is_success() {
            head.headers.insert(
                "x-amz-server-side-encryption",
                hyper::header::HeaderValue::from_static("aws:kms"),
            );
        }
    }
    Ok(Response::from_parts(head, body))
}

/// Flips one bit in the first non-empty data frame; notes the key once the
/// whole body has gone through.
struct FlipOne {
    inner: ProxyBody,
    done: bool,
    counts: Arc<Injected>,
    key: String,
    /// Bytes still to come when the length is known: hyper stops polling a
    /// body once its Content-Length has passed, so its end is never seen.
    left: Option<u64>,
}

impl FlipOne {
    fn new(inner: ProxyBody, counts: Arc<Injected>, key: String) -> Self {
        let left = inner.size_hint().exact();
        FlipOne {
            inner,
            done: false,
            counts,
            key,
            left,
        }
    }

    fn went_through_whole(&mut self) {
        let key = std::mem::take(&mut self.key);
        if self.done && !key.is_empty() {
            self.counts.flipped_keys.lock().unwrap().push(key);
        }
    }
}

impl Body for FlipOne {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        let frame = match polled {
            Poll::Ready(None) => {
                self.went_through_whole();
                return Poll::Ready(None);
            }
            Poll::Ready(Some(Ok(frame))) => frame,
            other => return other,
        };
        let frame = match frame.into_data() {
            Ok(data) => {
                let data = if !self.done && !data.is_empty() {
                    self.done = true;
                    let mut bytes = BytesMut::from(&data[..]);
                    let at = bytes.len() / 2;
                    bytes[at] ^= 0x10;
                    bytes.freeze()
                } else {
                    data
                };
                if let Some(left) = self.left.as_mut() {
                    *left = left.saturating_sub(data.len() as u64);
                    if *left == 0 {
                        self.went_through_whole();
                    }
                }
                Frame::data(data)
            }
            Err(frame) => frame,
        };
        Poll::Ready(Some(Ok(frame)))
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// Passes `keep` bytes, then fails (a reset) or ends (a truncation).
struct Cut {
    inner: ProxyBody,
    left: u64,
    fail: bool,
    hint: hyper::body::SizeHint,
}

impl Cut {
    fn new(inner: ProxyBody, keep: u64, fail: bool) -> Self {
        let hint = inner.size_hint();
        Cut {
            inner,
            left: keep,
            fail,
            hint,
        }
    }
}

impl Body for Cut {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if self.left == 0 {
            return Poll::Ready(if self.fail {
                Some(Err(io("injected reset mid-body")))
            } else {
                None
            });
        }
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                Ok(mut data) => {
                    if data.len() as u64 > self.left {
                        data.truncate(self.left as usize);
                    }
                    self.left -= data.len() as u64;
                    Poll::Ready(Some(Ok(Frame::data(data))))
                }
                Err(frame) => Poll::Ready(Some(Ok(frame))),
            },
            other => other,
        }
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.hint
    }
}
