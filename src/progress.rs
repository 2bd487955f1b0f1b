//! What ferry tells a person or a log shipper while it works: bars on a terminal,
//! log lines elsewhere. It must not print through the bars, nor print a secret.
//!
//! On a terminal: a bar for the pass (bytes and objects, rate, ETA) and a
//! line for each large object in flight with its parts; log lines are
//! printed above the bars, never through them. Elsewhere: log lines only,
//! as text or JSON.

use std::io::{IsTerminal, Write};
use std::sync::OnceLock;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

struct Bars {
    multi: MultiProgress,
    pass: ProgressBar,
}

static BARS: OnceLock<Bars> = OnceLock::new();

/// Whether bars are drawn: asked for, or by default when stderr is a
/// terminal and the logs are text.
pub fn wanted(flag: Option<bool>, format: LogFormat) -> bool {
    flag.unwrap_or(format == LogFormat::Text && std::io::stderr().is_terminal())
}

/// Logs go to stderr, so stdout carries only results (tables, summaries).
/// `FERRY_LOG` takes tracing's filter syntax, e.g. `FERRY_LOG=debug`.
pub fn init(format: LogFormat, bars: bool) {
    let filter = EnvFilter::try_from_env("FERRY_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    if bars {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(10));
        let pass = multi.add(ProgressBar::new(0));
        let _ = BARS.set(Bars {
            multi: multi.clone(),
            pass,
        });
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_ansi(true)
            .with_writer(AboveBars(multi))
            .finish()
            .with(no_secrets())
            .init();
        return;
    }
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.finish().with(no_secrets()).init(),
        LogFormat::Json => builder.json().finish().with(no_secrets()).init(),
    }
}

/// Whatever `FERRY_LOG` asks for, the signer's trace events stay off: they
/// print each request with its headers, and the SSE-C key is a header.
fn no_secrets() -> tracing_subscriber::filter::FilterFn<impl Fn(&tracing::Metadata<'_>) -> bool> {
    tracing_subscriber::filter::filter_fn(|meta| {
        !(meta.target().starts_with("aws_sigv4") && *meta.level() == tracing::Level::TRACE)
    })
}

/// A log writer that lifts the bars, writes the line, and redraws them.
#[derive(Clone)]
struct AboveBars(MultiProgress);

impl Write for AboveBars {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.suspend(|| std::io::stderr().write_all(buf))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

impl<'a> MakeWriter<'a> for AboveBars {
    type Writer = AboveBars;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// A pass's copy phase begins: `objects` objects of `bytes` bytes to go.
pub fn pass_started(what: &str, objects: u64, bytes: u64) {
    let Some(bars) = BARS.get() else { return };
    bars.pass.set_style(
        ProgressStyle::with_template(
            "{spinner} {prefix} [{bar:32}] {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}  {msg}",
        )
        .expect("template")
        .progress_chars("█▌ "),
    );
    bars.pass.set_prefix(what.to_owned());
    bars.pass.set_length(bytes);
    bars.pass.set_position(0);
    bars.pass.set_message(format!("objects 0/{objects}"));
    bars.pass.enable_steady_tick(Duration::from_millis(200));
    bars.pass.reset_eta();
}

/// A listing that feeds the pass found `bytes` more to move.
pub fn more_work(bytes: u64) {
    if let Some(bars) = BARS.get() {
        bars.pass.inc_length(bytes);
    }
}

/// Bytes that arrived (a part, a small object) or were read back.
pub fn bytes_done(bytes: u64) {
    if let Some(bars) = BARS.get() {
        bars.pass.inc(bytes);
    }
}

/// Objects done so far out of the pass's total.
pub fn objects_done(done: u64, objects: u64) {
    if let Some(bars) = BARS.get() {
        bars.pass.set_message(format!("objects {done}/{objects}"));
    }
}

pub fn pass_finished() {
    if let Some(bars) = BARS.get() {
        bars.pass.finish_and_clear();
    }
}

/// A line for one large object while its parts travel; cleared when dropped.
pub struct ObjectBar(Option<ProgressBar>);

impl ObjectBar {
    pub fn new(key: &str, parts: u64) -> ObjectBar {
        let Some(bars) = BARS.get() else {
            return ObjectBar(None);
        };
        let bar = bars.multi.add(ProgressBar::new(parts));
        bar.set_style(
            ProgressStyle::with_template("  {msg:40!} [{bar:20}] part {pos}/{len}")
                .expect("template")
                .progress_chars("█▌ "),
        );
        bar.set_message(key.to_owned());
        ObjectBar(Some(bar))
    }

    pub fn part_done(&self, bytes: u64) {
        bytes_done(bytes);
        if let Some(bar) = &self.0 {
            bar.inc(1);
        }
    }
}

impl Drop for ObjectBar {
    fn drop(&mut self) {
        if let (Some(bar), Some(bars)) = (&self.0, BARS.get()) {
            bar.finish_and_clear();
            bars.multi.remove(bar);
        }
    }
}
