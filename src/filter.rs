//! Which keys of a bucket pair ferry takes: include and exclude regexes, size
//! and modification-time bounds. It must not delete or skip silently: a key
//! left out is recorded in the ledger as `filtered`, with the rule that left it out.

use std::time::SystemTime;

use regex::Regex;

/// The filters of one bucket pair. The default takes every key.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    pub include: Vec<Regex>,
    pub exclude: Vec<Regex>,
    pub min_size: Option<u64>,
    pub max_size: Option<u64>,
    pub modified_after: Option<SystemTime>,
    pub modified_before: Option<SystemTime>,
}

impl PartialEq for Filter {
    fn eq(&self, other: &Filter) -> bool {
        let patterns = |r: &[Regex]| r.iter().map(|r| r.as_str().to_owned()).collect::<Vec<_>>();
        patterns(&self.include) == patterns(&other.include)
            && patterns(&self.exclude) == patterns(&other.exclude)
            && (self.min_size, self.max_size) == (other.min_size, other.max_size)
            && (self.modified_after, self.modified_before)
                == (other.modified_after, other.modified_before)
    }
}

impl Eq for Filter {}

impl Filter {
    pub fn takes_everything(&self) -> bool {
        *self == Filter::default()
    }

    /// None when the key is taken; otherwise the rule that leaves it out, in
    /// the words of the config (`filter: exclude "^tmp/"`), for the ledger,
    /// `plan` and `report`.
    /// `modified` is the listing's RFC 3339 time; a key without one is not
    /// left out by a time bound.
    pub fn leaves_out(&self, key: &str, size: u64, modified: Option<&str>) -> Option<String> {
        if !self.include.is_empty() && !self.include.iter().any(|r| r.is_match(key)) {
            let patterns: Vec<_> = self.include.iter().map(Regex::as_str).collect();
            return Some(format!("filter: include matches none of {patterns:?}"));
        }
        if let Some(r) = self.exclude.iter().find(|r| r.is_match(key)) {
            return Some(format!("filter: exclude {:?}", r.as_str()));
        }
        if let Some(min) = self.min_size.filter(|min| size < *min) {
            return Some(format!(
                "filter: min_size {}",
                bytesize::ByteSize(min).display().iec()
            ));
        }
        if let Some(max) = self.max_size.filter(|max| size > *max) {
            return Some(format!(
                "filter: max_size {}",
                bytesize::ByteSize(max).display().iec()
            ));
        }
        let modified = modified.and_then(|m| humantime::parse_rfc3339_weak(m).ok());
        if let (Some(after), Some(at)) = (self.modified_after, modified) {
            if at <= after {
                return Some(format!(
                    "filter: modified_after {}",
                    humantime::format_rfc3339_seconds(after)
                ));
            }
        }
        if let (Some(before), Some(at)) = (self.modified_before, modified) {
            if at >= before {
                return Some(format!(
                    "filter: modified_before {}",
                    humantime::format_rfc3339_seconds(before)
                ));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> SystemTime {
        humantime::parse_rfc3339(text).unwrap()
    }

    #[test]
    fn each_rule_names_itself_when_it_leaves_a_key_out() {
        let f = Filter {
            include: vec![
                Regex::new(r"^audio/").unwrap(),
                Regex::new(r"\.xml$").unwrap(),
            ],
            exclude: vec![Regex::new(r"/tmp/").unwrap()],
            min_size: Some(10),
            max_size: Some(1000),
            modified_after: Some(at("2024-01-01T00:00:00Z")),
            modified_before: Some(at("2025-01-01T00:00:00Z")),
        };
        let mid = Some("2024-06-01T12:00:00Z");
        assert_eq!(f.leaves_out("audio/a.mp3", 100, mid), None);
        assert_eq!(f.leaves_out("feeds/onix.xml", 100, mid), None);
        assert!(f
            .leaves_out("video/a.mp4", 100, mid)
            .unwrap()
            .starts_with("filter: include"));
        assert_eq!(
            f.leaves_out("audio/tmp/a.mp3", 100, mid).unwrap(),
            r#"filter: exclude "/tmp/""#
        );
        assert!(f
            .leaves_out("audio/a.mp3", 9, mid)
            .unwrap()
            .starts_with("filter: min_size"));
        assert!(f
            .leaves_out("audio/a.mp3", 1001, mid)
            .unwrap()
            .starts_with("filter: max_size"));
        assert!(f
            .leaves_out("audio/a.mp3", 100, Some("2023-12-31T23:59:59Z"))
            .unwrap()
            .starts_with("filter: modified_after"));
        assert!(f
            .leaves_out("audio/a.mp3", 100, Some("2025-01-01T00:00:00Z"))
            .unwrap()
            .starts_with("filter: modified_before"));
        // No time from the listing: a time bound cannot decide.
        assert_eq!(f.leaves_out("audio/a.mp3", 100, None), None);
    }

    #[test]
    fn the_default_takes_every_key() {
        let f = Filter::default();
        assert!(f.takes_everything());
        assert_eq!(f.leaves_out("", 0, None), None);
    }
}
