//! The status page that `--metrics-addr` serves at `/`: per bucket, progress against what was listed, rate, ETA, the objects that failed or wait with their reasons, the last pass and the next; plain HTML that refreshes itself.
//! It must not write to the ledger, run a script, load anything from elsewhere, or put a key or a reason on the page unescaped.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use bytesize::ByteSize;

use crate::ledger::{self, BucketStatus, LedgerError, PassTimes, State, RATE_WINDOW_SECS};

/// How many objects of each kind of trouble the page lists.
const LISTED: usize = 50;
/// How often the page asks for itself again.
const REFRESH_SECS: u64 = 10;

/// What the page shows, read from the ledger in one go.
pub struct Page {
    pub buckets: Vec<BucketStatus>,
    pub passes: PassTimes,
    /// (what, bucket, key, reason) of failed, mismatched, conflicting and
    /// skipped objects, up to [`LISTED`] of each.
    pub troubles: Vec<(&'static str, String, String, String)>,
    /// The daemon's pause between passes; None for a single run.
    pub interval: Option<Duration>,
    /// The event feeds followed, with their lag.
    pub feeds: Vec<ledger::FeedStatus>,
}

impl Page {
    pub fn read(ledger_path: &Path, interval: Option<Duration>) -> Result<Page, LedgerError> {
        let conn = ledger::open_reader(ledger_path)?;
        let mut troubles = Vec::new();
        for (what, state) in [
            ("failed", State::Failed),
            ("mismatched", State::Mismatched),
            ("conflict", State::Conflict),
            ("skipped", State::Skipped),
            ("restoring", State::Restoring),
        ] {
            for (bucket, key, reason) in ledger::objects_in_state(&conn, state, LISTED)? {
                let reason = if reason.is_empty() && state == State::Restoring {
                    "archived: waiting for its restore at the source".to_owned()
                } else {
                    reason
                };
                troubles.push((what, bucket, key, reason));
            }
        }
        Ok(Page {
            buckets: ledger::bucket_status(&conn)?,
            passes: ledger::pass_times(&conn)?,
            troubles,
            interval,
            feeds: ledger::feed_status(&conn)?,
        })
    }

    pub fn html(&self) -> String {
        let mut h = String::new();
        let _ = write!(
            h,
            "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
             <meta http-equiv=\"refresh\" content=\"{REFRESH_SECS}\">\
             <meta name=\"viewport\" content=\"width=device-width\">\
             <title>ferry</title><style>{STYLE}</style></head><body>\n\
             <h1>ferry</h1>\n<p class=\"passes\">{}</p>\n",
            escape(&self.passes_line())
        );
        h.push_str(
            "<table id=\"buckets\"><thead><tr><th>bucket</th><th>destination</th><th>progress</th>\
             <th>listed</th><th>copied</th><th>verified</th><th>pending</th><th>failed</th>\
             <th>mismatched</th><th>conflict</th><th>skipped</th><th>restoring</th><th>bytes listed</th>\
             <th>bytes copied</th>",
        );
        let _ = writeln!(
            h,
            "<th>rate (last {} min)</th><th>ETA of what is pending</th></tr></thead><tbody>",
            RATE_WINDOW_SECS / 60
        );
        for b in &self.buckets {
            let rate = b.bytes_recent / RATE_WINDOW_SECS;
            let done = if b.bytes_listed == 0 {
                100.0
            } else {
                b.bytes_copied as f64 * 100.0 / b.bytes_listed as f64
            };
            let name = if b.prefix.is_empty() {
                b.source.clone()
            } else {
                format!("{}/{}", b.source, b.prefix)
            };
            let _ = write!(
                h,
                "<tr data-bucket=\"{}\"><td>{}</td><td>{}</td>\
                 <td><progress max=\"100\" value=\"{done:.1}\"></progress> {done:.1} %</td>",
                escape(&b.source),
                escape(&name),
                escape(&b.destination)
            );
            for (field, n) in [
                ("listed", b.listed),
                ("copied", b.copied),
                ("verified", b.verified),
                ("pending", b.pending),
                ("failed", b.failed),
                ("mismatched", b.mismatched),
                ("conflict", b.conflict),
                ("skipped", b.skipped),
                ("restoring", b.restoring),
            ] {
                let _ = write!(h, "<td class=\"n\" data-field=\"{field}\">{n}</td>");
            }
            let _ = writeln!(
                h,
                "<td class=\"n\" data-field=\"bytes_listed\" data-bytes=\"{}\">{}</td>\
                 <td class=\"n\" data-field=\"bytes_copied\" data-bytes=\"{}\">{}</td>\
                 <td class=\"n\">{}/s</td><td>{}</td></tr>",
                b.bytes_listed,
                ByteSize(b.bytes_listed).display().iec(),
                b.bytes_copied,
                ByteSize(b.bytes_copied).display().iec(),
                ByteSize(rate).display().iec(),
                escape(&eta(b, rate)),
            );
        }
        h.push_str("</tbody></table>\n");
        if !self.feeds.is_empty() {
            h.push_str(
                "<h2>Event feeds</h2>\n<table id=\"feeds\"><thead><tr><th>bucket</th><th>lag</th>\
                 <th>events awaiting their copy</th><th>events</th><th>older events ignored</th>\
                 <th>keys the feed missed</th><th>last event</th><th>queue last empty</th></tr></thead><tbody>\n",
            );
            for f in &self.feeds {
                let lag = f.lag_seconds.map_or("-".to_owned(), |s| {
                    humantime::format_duration(Duration::from_millis((s * 1000.0) as u64))
                        .to_string()
                });
                let _ = writeln!(
                    h,
                    "<tr data-bucket=\"{}\"><td>{}</td><td class=\"n\" data-field=\"lag_seconds\">{}</td>\
                     <td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
                     <td>{}</td><td>{}</td></tr>",
                    escape(&f.source),
                    escape(&f.source),
                    escape(&lag),
                    f.awaiting,
                    f.events,
                    f.stale_events,
                    f.missed_keys,
                    escape(f.last_event_at.as_deref().unwrap_or("-")),
                    escape(f.drained_at.as_deref().unwrap_or("-")),
                );
            }
            h.push_str("</tbody></table>\n");
        }
        h.push_str("<h2>Objects that need a look</h2>\n");
        if self.troubles.is_empty() {
            h.push_str("<p id=\"troubles\">None: nothing failed, differs, or waits.</p>\n");
        } else {
            h.push_str(
                "<table id=\"troubles\"><thead><tr><th>state</th><th>bucket</th><th>key</th>\
                 <th>reason</th></tr></thead><tbody>\n",
            );
            for (what, bucket, key, reason) in &self.troubles {
                let _ = writeln!(
                    h,
                    "<tr><td>{what}</td><td>{}</td><td class=\"key\">{}</td><td>{}</td></tr>",
                    escape(bucket),
                    escape(key),
                    escape(reason)
                );
            }
            let _ = write!(
                h,
                "</tbody></table>\n<p>At most {LISTED} of each state; `ferry report` lists them all.</p>\n"
            );
        }
        h.push_str("</body></html>\n");
        h
    }

    fn passes_line(&self) -> String {
        let mut line = match &self.passes.last_finished {
            Some((started, finished)) => {
                format!("Last pass: {started} to {finished}.")
            }
            None => "No pass has finished yet.".to_owned(),
        };
        if let Some(since) = &self.passes.running_since {
            let _ = write!(line, " A pass is running since {since}.");
        } else if let (Some(every), Some((_, finished))) =
            (self.interval, &self.passes.last_finished)
        {
            let _ = write!(
                line,
                " The next starts {} after the last one ended ({finished}).",
                humantime::format_duration(every)
            );
        }
        line
    }
}

/// The time left for the bytes still pending at the recent rate; failed,
/// skipped and conflicting objects wait for a person, not for time.
fn eta(b: &BucketStatus, rate: u64) -> String {
    let left = b.bytes_pending;
    match (left, rate) {
        (0, _) => "nothing pending".to_owned(),
        (_, 0) => "-".to_owned(),
        (left, rate) => humantime::format_duration(Duration::from_secs(left / rate)).to_string(),
    }
}

/// Text as HTML shows it: keys and reasons are user data.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}\
table{border-collapse:collapse;margin:1em 0}th,td{border:1px solid #ccc;padding:.3em .6em;text-align:left}\
th{background:#f3f3f3}td.n{text-align:right;white-space:nowrap;font-variant-numeric:tabular-nums}\
td.key{font-family:monospace;white-space:pre-wrap;word-break:break-all}progress{width:8em}";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_reasons_are_text_never_markup() {
        let page = Page {
            buckets: vec![BucketStatus {
                source: "audio".into(),
                destination: "hub-audio".into(),
                listed: 3,
                ..BucketStatus::default()
            }],
            passes: PassTimes::default(),
            troubles: vec![(
                "conflict",
                "audio".into(),
                "covers/<script>alert(1)</script>.jpg".into(),
                "another writer's \"object\" & more".into(),
            )],
            interval: None,
            feeds: vec![ledger::FeedStatus {
                bucket_id: 1,
                source: "audio/<b>".into(),
                queue_url: "https://sqs.eu-central-1.amazonaws.com/1/q".into(),
                following_since: "2026-12-07T06:00:00Z".into(),
                drained_at: None,
                received_at: None,
                last_event_at: None,
                events: 7,
                stale_events: 1,
                awaiting: 2,
                lag_seconds: Some(4.5),
                missed_keys: 0,
            }],
        };
        let html = page.html();
        assert!(
            html.contains("data-field=\"lag_seconds\">4s 500ms<"),
            "{html}"
        );
        assert!(!html.contains("<b>"), "{html}");
        assert!(!html.contains("<script"), "{html}");
        assert!(
            html.contains("covers/&lt;script&gt;alert(1)&lt;/script&gt;.jpg"),
            "{html}"
        );
        assert!(
            html.contains("another writer&#39;s &quot;object&quot; &amp; more"),
            "{html}"
        );
        assert!(html.contains("data-field=\"listed\">3<"), "{html}");
    }
}
