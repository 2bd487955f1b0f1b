//! An SQS message's body read as S3 events: S3's own format, the same wrapped
//! in SNS, and EventBridge's. It must not decide what an event means for a key.

use serde_json::Value;

/// What one event says happened to one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    pub bucket: String,
    /// The key as S3 spells it (decoded from the event's form encoding).
    pub key: String,
    pub removed: bool,
    pub sequencer: Option<String>,
    /// The event's time, RFC 3339 to the millisecond (one form for S3's
    /// and EventBridge's, so that times compare as text).
    pub event_at: String,
    /// What the event says the object is, for a created one: taken only
    /// when the source cannot be asked (the copy's If-Match checks it).
    pub size: Option<u64>,
    pub etag: Option<String>,
}

/// A message, read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// Object changes (possibly none: events of no interest, such as tags).
    Changes(Vec<Change>),
    /// `s3:TestEvent`, sent when a notification is configured.
    Test,
}

/// Reads a message body, or says why it cannot be read.
pub fn parse(body: &str) -> Result<Message, String> {
    let value: Value = serde_json::from_str(body).map_err(|e| format!("not JSON ({e})"))?;
    parse_value(&value, 0)
}

fn parse_value(value: &Value, depth: u8) -> Result<Message, String> {
    if value.get("Event").and_then(Value::as_str) == Some("s3:TestEvent") {
        return Ok(Message::Test);
    }
    if let Some(records) = value.get("Records") {
        let records = records.as_array().ok_or("`Records` is not a list")?;
        return records
            .iter()
            .filter_map(|r| s3_record(r).transpose())
            .collect::<Result<_, _>>()
            .map(Message::Changes);
    }
    // SNS: the S3 message is a JSON string in `Message`.
    if value.get("Type").and_then(Value::as_str) == Some("Notification") && depth == 0 {
        let inner = value
            .get("Message")
            .and_then(Value::as_str)
            .ok_or("an SNS notification without a `Message`")?;
        let inner: Value = serde_json::from_str(inner)
            .map_err(|e| format!("an SNS notification whose Message is not JSON ({e})"))?;
        return parse_value(&inner, depth + 1);
    }
    if value.get("source").and_then(Value::as_str) == Some("aws.s3") {
        return eventbridge(value).map(|c| Message::Changes(c.into_iter().collect()));
    }
    Err("neither an S3 event, an SNS notification of one, nor an EventBridge S3 event".into())
}

fn text<'a>(value: &'a Value, path: &[&str]) -> Result<&'a str, String> {
    path.iter()
        .try_fold(value, |v, name| v.get(name))
        .and_then(Value::as_str)
        .ok_or_else(|| format!("no `{}`", path.join(".")))
}

/// One record of S3's own format; None for an event that changes no bytes
/// (tags, ACLs, restores, storage class transitions).
fn s3_record(record: &Value) -> Result<Option<Change>, String> {
    let name = text(record, &["eventName"])?;
    let name = name.strip_prefix("s3:").unwrap_or(name);
    let removed = if name.starts_with("ObjectCreated:") {
        false
    } else if name.starts_with("ObjectRemoved:") || name.starts_with("LifecycleExpiration:") {
        true
    } else {
        return Ok(None);
    };
    let encoded = text(record, &["s3", "object", "key"])?;
    Ok(Some(Change {
        bucket: text(record, &["s3", "bucket", "name"])?.to_owned(),
        key: form_decode(encoded)
            .ok_or_else(|| format!("key {encoded:?} is not form-encoded UTF-8"))?,
        removed,
        sequencer: record
            .pointer("/s3/object/sequencer")
            .and_then(Value::as_str)
            .map(str::to_owned),
        event_at: time(text(record, &["eventTime"])?)?,
        size: record.pointer("/s3/object/size").and_then(Value::as_u64),
        etag: record
            .pointer("/s3/object/eTag")
            .and_then(Value::as_str)
            .filter(|e| !e.is_empty())
            .map(str::to_owned),
    }))
}

/// An event's time in one form: RFC 3339, milliseconds, UTC.
fn time(text: &str) -> Result<String, String> {
    humantime::parse_rfc3339_weak(text.trim())
        .map(|t| humantime::format_rfc3339_millis(t).to_string())
        .map_err(|_| format!("time {text:?} is not RFC 3339"))
}

/// EventBridge's `Object Created` / `Object Deleted`; its keys are not
/// form-encoded.
fn eventbridge(value: &Value) -> Result<Option<Change>, String> {
    let removed = match text(value, &["detail-type"])? {
        "Object Created" => false,
        "Object Deleted" => true,
        _ => return Ok(None),
    };
    Ok(Some(Change {
        bucket: text(value, &["detail", "bucket", "name"])?.to_owned(),
        key: text(value, &["detail", "object", "key"])?.to_owned(),
        removed,
        sequencer: value
            .pointer("/detail/object/sequencer")
            .and_then(Value::as_str)
            .map(str::to_owned),
        event_at: time(text(value, &["time"])?)?,
        size: value.pointer("/detail/object/size").and_then(Value::as_u64),
        etag: value
            .pointer("/detail/object/etag")
            .and_then(Value::as_str)
            .filter(|e| !e.is_empty())
            .map(str::to_owned),
    }))
}

/// S3 writes event keys form-encoded: a space as `+`, a `+` as `%2B`.
fn form_decode(encoded: &str) -> Option<String> {
    let spaced = encoded.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8()
        .ok()
        .map(|k| k.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s3(name: &str, key: &str, sequencer: &str) -> String {
        format!(
            r#"{{"Records":[{{"eventVersion":"2.1","eventSource":"aws:s3","eventTime":"2026-12-07T06:24:38.204Z","eventName":"{name}","s3":{{"bucket":{{"name":"onix"}},"object":{{"key":"{key}","size":5,"eTag":"5d41402abc4b2a76b9719d911017c592","sequencer":"{sequencer}"}}}}}}]}}"#
        )
    }

    #[test]
    fn s3_sns_and_eventbridge_messages_name_the_same_change() {
        let own = parse(&s3(
            "ObjectCreated:Put",
            "feeds/a+b%2Bc+%C3%A9.xml",
            "0055AED6DCD90281E5",
        ))
        .unwrap();
        let want = Change {
            bucket: "onix".into(),
            key: "feeds/a b+c é.xml".into(),
            removed: false,
            sequencer: Some("0055AED6DCD90281E5".into()),
            event_at: "2026-12-07T06:24:38.204Z".into(),
            size: Some(5),
            etag: Some("5d41402abc4b2a76b9719d911017c592".into()),
        };
        assert_eq!(own, Message::Changes(vec![want.clone()]));
        let sns = serde_json::json!({"Type": "Notification", "MessageId": "m",
            "Message": s3("ObjectCreated:Put", "feeds/a+b%2Bc+%C3%A9.xml", "0055AED6DCD90281E5")});
        assert_eq!(parse(&sns.to_string()).unwrap(), own);
        let bridge = serde_json::json!({"version": "0", "detail-type": "Object Deleted",
            "source": "aws.s3", "time": "2026-12-07T06:24:38Z",
            "detail": {"bucket": {"name": "onix"},
                       "object": {"key": "feeds/a b+c é.xml", "sequencer": "0055AED6DCD90281E5"}}});
        assert_eq!(
            parse(&bridge.to_string()).unwrap(),
            Message::Changes(vec![Change {
                removed: true,
                event_at: "2026-12-07T06:24:38.000Z".into(),
                size: None,
                etag: None,
                ..want
            }])
        );
    }

    #[test]
    fn test_events_and_tag_events_change_nothing_and_garbage_is_named() {
        let test = r#"{"Service":"Amazon S3","Event":"s3:TestEvent","Time":"2026-12-07T06:24:38.197Z","Bucket":"onix"}"#;
        assert_eq!(parse(test).unwrap(), Message::Test);
        assert_eq!(
            parse(&s3("ObjectTagging:Put", "a", "01")).unwrap(),
            Message::Changes(vec![])
        );
        assert!(parse(&s3("ObjectRemoved:Delete", "a", "01")).is_ok());
        assert!(parse("{not json").unwrap_err().contains("not JSON"));
        assert!(parse(r#"{"Records":[{"eventName":"ObjectCreated:Put"}]}"#)
            .unwrap_err()
            .contains("s3.object.key"));
        assert!(parse(r#"{"hello":1}"#).is_err());
        assert!(parse(&s3("ObjectCreated:Put", "%FF", "01")).is_err());
    }
}
