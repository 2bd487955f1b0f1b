//! Where a bucket's listing is split into key ranges: found by probing the
//! store (or read from the ledger's keys), and split again while it runs.
//! It must not record a key: boundaries are strings, never claims about keys.
//!
//! A probe is a ListObjectsV2 of one key after a point, which tells where
//! keys really are whatever their shape (numbered, hashed, dated, ISBNs).
//! The ranges it gives are only a start: when a range ends early, its lister
//! takes half of what is left of the busiest range still running.

use futures::future::try_join_all;

use super::PageSource;
use crate::store::StoreError;

/// The largest character: every key under a prefix sorts before the prefix
/// followed by it (keys are UTF-8, and S3 sorts them byte by byte).
pub const TOP: char = '\u{10FFFF}';

/// Probes sent side by side in one round.
const PROBES_A_ROUND: usize = 15;

/// Rounds that narrow where the keys end.
const ZOOM_ROUNDS: usize = 2;

/// How a fresh listing starts: the last key of each range but the last,
/// and a key no key is thought to pass (for estimating the open last range).
#[derive(Clone, Debug, Default)]
pub struct RangePlan {
    pub bounds: Vec<String>,
    pub upper: Option<String>,
}

/// A string strictly between `lo` and `hi`, `frac` of the way from one to the
/// other. The eight characters after their common prefix are read as digits
/// of printable ASCII (base 96; anything above `~` is the top digit), so the
/// point is printable ASCII after the prefix, whatever bytes the keys hold.
/// None when no such string lies between them.
pub fn key_between(lo: &str, hi: &str, frac: f64) -> Option<String> {
    let (a, b) = (lo.as_bytes(), hi.as_bytes());
    let common = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    let (x, y) = (number_at(a, common), number_at(b, common));
    if y <= x {
        return None;
    }
    let point = x + ((y - x) as f64 * frac.clamp(0.0, 1.0)) as u64;
    let point = spell(&a[..common], point)?;
    (point.as_str() > lo && point.as_str() < hi).then_some(point)
}

/// The scale a lister's own keys vary on: from a few characters before
/// two keys part, each position counted in the alphabet both keys use
/// there (decimal digits, hex digits, or any printable character), so that
/// numbered, dated and hashed keys carry as numbers do. Keys often cluster
/// far below the scale of their range's ends.
pub struct Scale {
    prefix: String,
    alphabets: Vec<Alphabet>,
}

impl Scale {
    /// The scale of a page that went from `first` to `last`.
    pub fn of(first: &str, last: &str) -> Scale {
        let (f, l) = (first.as_bytes(), last.as_bytes());
        let mut from = f.iter().zip(l).take_while(|(x, y)| x == y).count();
        from = from.saturating_sub(CARRY_ROOM);
        while !last.is_char_boundary(from) {
            from -= 1;
        }
        Scale {
            prefix: last[..from].to_owned(),
            alphabets: (from..from + DIGITS)
                .map(|i| Alphabet::of(f.get(i).copied(), l.get(i).copied()))
                .collect(),
        }
    }

    /// A key's place on the scale; None for a key that does not start with
    /// the scale's prefix (it lies off the scale, before or after).
    pub fn number(&self, key: &str) -> Option<u64> {
        let rest = key.as_bytes().strip_prefix(self.prefix.as_bytes())?;
        Some(
            self.alphabets
                .iter()
                .enumerate()
                .fold(0, |n, (i, alphabet)| {
                    n * alphabet.base() + rest.get(i).map_or(0, |&c| alphabet.digit(c))
                }),
        )
    }

    /// The key at a place on the scale; None past its end.
    pub fn key(&self, mut number: u64) -> Option<String> {
        let mut digits = vec![0u8; DIGITS];
        for (slot, alphabet) in digits.iter_mut().zip(&self.alphabets).rev() {
            *slot = alphabet.char(number % alphabet.base());
            number /= alphabet.base();
        }
        if number > 0 {
            return None;
        }
        let mut key = self.prefix.clone().into_bytes();
        key.extend(digits);
        String::from_utf8(key).ok()
    }
}

/// Where a lister whose last page went from `first` to `last` would be
/// after `pages` more such pages. None off the scale.
pub fn key_beyond(first: &str, last: &str, pages: f64) -> Option<String> {
    let scale = Scale::of(first, last);
    let (x, y) = (scale.number(first)?, scale.number(last)?);
    if y <= x {
        return None;
    }
    let point = scale.key(y.checked_add(((y - x) as f64 * pages) as u64)?)?;
    (point.as_str() > last).then_some(point)
}

/// How many pages like the one from `first` to `last` lie between `last`
/// and `end`. None when `end` is off the page's scale (far away).
pub fn pages_to(first: &str, last: &str, end: &str) -> Option<f64> {
    let scale = Scale::of(first, last);
    let (x, y, e) = (
        scale.number(first)?,
        scale.number(last)?,
        scale.number(end)?,
    );
    (y > x && e >= y).then(|| (e - y) as f64 / (y - x) as f64)
}

/// Characters before the keys part that [`key_beyond`] may carry into.
const CARRY_ROOM: usize = 3;

/// What one character position of a key is counted in.
#[derive(Clone, Copy, Debug)]
enum Alphabet {
    Decimal,
    Hex,
    Printable,
}

impl Alphabet {
    /// The smallest alphabet both characters are in.
    fn of(a: Option<u8>, b: Option<u8>) -> Alphabet {
        match (a, b) {
            (Some(a), Some(b)) if a.is_ascii_digit() && b.is_ascii_digit() => Alphabet::Decimal,
            (Some(a), Some(b)) if is_lower_hex(a) && is_lower_hex(b) => Alphabet::Hex,
            _ => Alphabet::Printable,
        }
    }

    fn base(self) -> u64 {
        match self {
            Alphabet::Decimal => 10,
            Alphabet::Hex => 16,
            Alphabet::Printable => BASE,
        }
    }

    /// A character's digit; one outside the alphabet counts as its nearest end.
    fn digit(self, c: u8) -> u64 {
        match self {
            Alphabet::Decimal => u64::from(c.clamp(b'0', b'9') - b'0'),
            Alphabet::Hex if c.is_ascii_digit() => u64::from(c - b'0'),
            Alphabet::Hex if c < b'a' => 9,
            Alphabet::Hex => u64::from(c.min(b'f') - b'a') + 10,
            Alphabet::Printable => u64::from(c.clamp(b' ', 0x7F) - b' '),
        }
    }

    fn char(self, digit: u64) -> u8 {
        match self {
            Alphabet::Decimal => b'0' + digit as u8,
            Alphabet::Hex => b"0123456789abcdef"[digit as usize],
            Alphabet::Printable => b' ' + (digit as u8).min(94),
        }
    }
}

fn is_lower_hex(c: u8) -> bool {
    c.is_ascii_digit() || (b'a'..=b'f').contains(&c)
}

/// `prefix` followed by `number`'s base-96 digits as printable ASCII.
fn spell(prefix: &[u8], mut number: u64) -> Option<String> {
    let mut digits = [0u8; DIGITS];
    for slot in digits.iter_mut().rev() {
        *slot = (number % BASE) as u8;
        number /= BASE;
    }
    let mut bytes = prefix.to_vec();
    bytes.extend(digits.iter().map(|d| b' ' + (*d).min(94)));
    while bytes.len() > prefix.len() && bytes.last() == Some(&b' ') {
        bytes.pop();
    }
    String::from_utf8(bytes).ok()
}

/// Characters read as digits, and their base.
const DIGITS: usize = 8;
const BASE: u64 = 96;

/// The characters of `s` from `at` as a base-96 number (printable ASCII is
/// 0 to 94, anything above is 95; past the end, 0). It never decreases as
/// keys grow in S3's order.
fn number_at(s: &[u8], at: usize) -> u64 {
    (0..DIGITS).fold(0, |n, i| {
        let digit = s
            .get(at + i)
            .map_or(0, |&c| u64::from(c.clamp(b' ', 0x7F) - b' '));
        n * BASE + digit
    })
}

/// How far `at` has come from `start` towards `end`, from 0 to 1, on the
/// scale of [`key_between`]. None when the three are not in order.
pub fn progress(start: &str, at: &str, end: &str) -> Option<f64> {
    if !(start <= at && at < end) {
        return None;
    }
    let (s, e) = (start.as_bytes(), end.as_bytes());
    let common = s.iter().zip(e).take_while(|(x, y)| x == y).count();
    let (s, a, e) = (
        number_at(s, common) as f64,
        number_at(at.as_bytes(), common) as f64,
        number_at(e, common) as f64,
    );
    (e > s).then(|| ((a - s) / (e - s)).clamp(0.0, 1.0))
}

/// Probes `points` for where the keys end: the greatest key found raises
/// `last_found`, the first point with no key after it becomes `upper`.
/// False when nothing narrowed (no point, or a key after every point).
async fn narrow_end<P: PageSource>(
    pages: &impl Fn() -> P,
    mut points: Vec<String>,
    (last_found, upper): (&mut String, &mut String),
) -> Result<bool, StoreError> {
    points.retain(|p| p < upper);
    points.sort();
    points.dedup();
    let found = probe_all(pages, &points).await?;
    if let Some(key) = found.iter().flatten().max() {
        *last_found = last_found.clone().max(key.clone());
    }
    match found.iter().position(Option::is_none) {
        Some(j) => {
            *upper = points[j].clone();
            Ok(true)
        }
        None => Ok(false),
    }
}

/// The first key after each point, asked side by side.
async fn probe_all<P: PageSource>(
    pages: &impl Fn() -> P,
    points: &[String],
) -> Result<Vec<Option<String>>, StoreError> {
    try_join_all(points.iter().map(|point| async move {
        let mut source = pages();
        source.first_key_after(Some(point)).await
    }))
    .await
}

/// Splits a bucket under `prefix` into `n` ranges by probing: the first key;
/// the prefix all keys share (a point past a candidate prefix with no key
/// after it says every key has it); then where the keys end, narrowed
/// round by round, in base-96 steps and then on the keys' own scale; then
/// `n` ranges evenly between the first key and there (`even_cuts`).
/// About seven round trips, whatever the bucket's size.
pub async fn probe_plan<P: PageSource>(
    pages: impl Fn() -> P,
    prefix: &str,
    n: usize,
) -> Result<RangePlan, StoreError> {
    let Some(first) = pages().first_key_after(None).await? else {
        return Ok(RangePlan::default());
    };
    // Candidate shared prefixes: `first` cut at each character boundary.
    let cuts: Vec<usize> = (prefix.len()..=first.len())
        .filter(|&i| first.is_char_boundary(i))
        .collect();
    // cuts[shared] is a prefix of every key; cuts[not_shared] is not (or is
    // past the end).
    let (mut shared, mut not_shared) = (0, cuts.len());
    while not_shared - shared > 1 {
        let width = not_shared - shared;
        let mut tried: Vec<usize> = (1..=PROBES_A_ROUND)
            .map(|j| shared + j * width / (PROBES_A_ROUND + 1))
            .filter(|&i| i > shared && i < not_shared)
            .collect();
        tried.dedup();
        if tried.is_empty() {
            tried.push(shared + 1);
        }
        let points: Vec<String> = tried
            .iter()
            .map(|&i| format!("{}{TOP}", &first[..cuts[i]]))
            .collect();
        for (&i, after) in tried.iter().zip(probe_all(&pages, &points).await?) {
            match after {
                None => shared = shared.max(i),
                Some(_) => not_shared = not_shared.min(i),
            }
        }
        not_shared = not_shared.max(shared + 1);
    }
    let mut upper = format!("{}{TOP}", &first[..cuts[shared]]);
    // The greatest key the probes found: the keys' own scale runs to it.
    let mut last_found = first.clone();
    for _ in 0..ZOOM_ROUNDS {
        let points = (1..=PROBES_A_ROUND)
            .filter_map(|j| key_between(&first, &upper, j as f64 / (PROBES_A_ROUND + 1) as f64))
            .collect();
        if !narrow_end(&pages, points, (&mut last_found, &mut upper)).await? {
            break;
        }
    }
    // Base-96 steps cannot tell where dated or numbered keys end (most
    // steps fall between two years): zoom again on the keys' own scale,
    // from the last key found so far.
    let scale = Scale::of(&first, &last_found);
    for _ in 0..ZOOM_ROUNDS {
        let (Some(lo), Some(hi)) = (scale.number(&last_found), scale.number(&upper)) else {
            break;
        };
        let step = hi.saturating_sub(lo) / (PROBES_A_ROUND as u64 + 1);
        let points = (1..=PROBES_A_ROUND as u64)
            .filter_map(|j| scale.key(lo + step * j))
            .filter(|p| p.as_str() > last_found.as_str())
            .collect();
        if !narrow_end(&pages, points, (&mut last_found, &mut upper)).await? {
            break;
        }
    }
    Ok(RangePlan {
        bounds: even_cuts(&first, &last_found, &upper, n),
        upper: Some(upper),
    })
}

/// The last keys of `n` ranges of about equal width from `first` to where
/// keys end: on the scale of the keys themselves (`Scale`) from `first` to
/// the last key a probe found, so that dated and numbered keys are cut as
/// numbers are (years, not base-96 steps of which most fall between two
/// years); in base-96 steps to `upper` where they share no such scale.
fn even_cuts(first: &str, last_found: &str, upper: &str, n: usize) -> Vec<String> {
    let scale = Scale::of(first, last_found);
    let on_scale = scale
        .number(first)
        .zip(scale.number(last_found))
        .filter(|(x, y)| y > x);
    let mut bounds: Vec<String> = (1..n)
        .filter_map(|i| {
            let frac = i as f64 / n as f64;
            match on_scale {
                Some((x, y)) => scale.key(x + ((y - x) as f64 * frac) as u64),
                None => key_between(first, upper, frac),
            }
        })
        .filter(|b| b.as_str() > first && b.as_str() < upper)
        .collect();
    bounds.sort();
    bounds.dedup();
    bounds
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_point_between_two_keys_lies_strictly_between_them_and_is_valid_utf8() {
        let mid = key_between("onix/9780000000000.xml", "onix/9789999999999.xml", 0.5).unwrap();
        assert!(
            mid.as_str() > "onix/9784" && mid.as_str() < "onix/9785",
            "{mid}"
        );
        let quarter = key_between("a/", &format!("a/{TOP}"), 0.25).unwrap();
        assert!(quarter.as_str() > "a/" && quarter < format!("a/{TOP}"));
        // Non-ASCII on both sides: the point is still a string between them.
        let between = key_between("hörbuch/a", "hörbuch/ü", 0.5).unwrap();
        assert!(between.as_str() > "hörbuch/a" && between.as_str() < "hörbuch/ü");
        assert!(between["hörbuch/".len()..]
            .bytes()
            .all(|b| b.is_ascii_graphic()));
        // Neighbours have nothing between them at eight characters' resolution.
        assert_eq!(key_between("a", "a\u{0}", 0.5), None);
        assert_eq!(key_between("b", "a", 0.5), None);
    }

    #[test]
    fn a_key_beyond_is_as_far_again_on_the_keys_own_scale() {
        let next = key_beyond("onix/9780060000000.xml", "onix/9780060000999.xml", 1.0).unwrap();
        let left = pages_to(
            "onix/9780060000000.xml",
            "onix/9780060000999.xml",
            "onix/9780060009999.xml",
        );
        assert!((8.5..9.5).contains(&left.unwrap()), "{left:?}");
        assert!(
            next.as_str() > "onix/9780060001997" && next.as_str() < "onix/9780060001999",
            "{next}"
        );
        let next = key_beyond("media/00ff3a", "media/00ff4a", 2.0).unwrap();
        assert!(
            next.as_str() > "media/00ff5f" && next.as_str() < "media/00ff6b",
            "{next}"
        );
        assert_eq!(key_beyond("b", "a", 1.0), None);
    }

    #[test]
    fn progress_reads_a_key_on_the_scale_between_two_others() {
        let f = progress("k/000", "k/500", "k/999").unwrap();
        assert!((0.4..0.6).contains(&f), "{f}");
        assert_eq!(progress("k/5", "k/1", "k/9"), None);
    }
}
