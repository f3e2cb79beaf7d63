//! Is what a model said true to the document? Checks that need no request: values that must
//! parse (dates, amounts), metadata values placed in the document like mentions, values taken
//! from the prompt's worked examples, summaries copied between sections, repeated keywords.
//!
//! The checks run at two moments. When an answer arrives (`exec`), copies and repeats are
//! reasons to re-ask once. When results are written (`output`), the policy decides what is
//! kept: by default only what is grounded and well-formed, every drop counted by reason;
//! `--ungrounded keep-flagged` keeps the rest with a flag. A value from the worked examples that
//! the document does not contain is never kept: it is the prompt talking, not the document.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::grounding::{Grounding, Mention, fold, ground};

/// Why a value was left out of the results (keys of `dropped` in document results).
pub mod reason {
    /// Not found in its page (entities) or in the document (metadata).
    pub const UNGROUNDED: &str = "ungrounded";
    /// Typed `date` but no date can be read in it.
    pub const NOT_A_DATE: &str = "not_a_date";
    /// Typed `money` but no amount with a currency can be read in it.
    pub const NOT_AN_AMOUNT: &str = "not_an_amount";
    /// Occurs in a prompt's worked examples and not in the document.
    pub const FROM_EXAMPLE: &str = "from_example";
}

const MONTHS: [&str; 12] = [
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
];
const WEEKDAYS: [&str; 7] = [
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
];

fn words(s: &str) -> impl Iterator<Item = String> + '_ {
    s.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
}

/// The month (1–12) a word names, in full or as a three-letter (or `sept`) abbreviation.
pub(crate) fn month_of(word: &str) -> Option<u8> {
    if word.len() < 3 {
        return None;
    }
    MONTHS
        .iter()
        .position(|m| *m == word || (word.len() <= 4 && m.starts_with(word)))
        .map(|i| i as u8 + 1)
}

/// Words a date may hold besides its numbers, months and weekdays.
const DATE_WORDS: [&str; 32] = [
    "the",
    "of",
    "in",
    "on",
    "at",
    "by",
    "from",
    "to",
    "until",
    "and",
    "early",
    "late",
    "mid",
    "end",
    "ending",
    "beginning",
    "start",
    "year",
    "years",
    "fiscal",
    "century",
    "decade",
    "quarter",
    "spring",
    "summer",
    "autumn",
    "fall",
    "winter",
    "st",
    "nd",
    "rd",
    "th",
];

/// Whether a mention typed `date` can be read as one: a year (or decade, century), a month or
/// weekday name, or a numeric date (`3/5/2021`, `2021-05-03`), with few other words. Neither
/// "MENSTRALES" nor "FIELD REPORT: RIVER SURVEY, AUTUMN 2025" is one.
pub fn looks_like_date(s: &str) -> bool {
    let other = words(s)
        .filter(|w| {
            !(DATE_WORDS.contains(&w.as_str())
                || w.chars().next().is_some_and(|c| c.is_ascii_digit())
                || month_of(w).is_some()
                || WEEKDAYS.contains(&w.as_str())
                || w.ends_with("teenth")
                || w.ends_with("tieth"))
        })
        .count();
    other <= 2 && has_date_part(s)
}

fn has_date_part(s: &str) -> bool {
    let numeric = s.split(|c: char| c.is_whitespace() || c == ',').any(|t| {
        let parts: Vec<&str> = t.split(['/', '-', '.']).collect();
        parts.len() == 3
            && parts
                .iter()
                .all(|p| !p.is_empty() && p.len() <= 4 && p.chars().all(|c| c.is_ascii_digit()))
    });
    numeric
        || words(s).any(|w| {
            let digits = w.trim_end_matches('s');
            ((digits.len() == 4 || (digits.len() == 2 && w.ends_with('s')))
                && digits.chars().all(|c| c.is_ascii_digit())
                && (digits.len() == 2
                    || (1000..=2999).contains(&digits.parse::<u32>().unwrap_or(0))))
                || month_of(&w).is_some()
                || WEEKDAYS.contains(&w.as_str())
                || w == "century"
                || w == "quarter"
                || (w.len() == 2
                    && w.starts_with('q')
                    && w[1..].chars().all(|c| c.is_ascii_digit()))
        })
}

const CURRENCY_WORDS: [&str; 24] = [
    "dollar", "dollars", "euro", "euros", "pound", "pounds", "yen", "yuan", "cent", "cents",
    "franc", "francs", "rupee", "rupees", "peso", "pesos", "krona", "kronor", "usd", "eur", "gbp",
    "jpy", "chf", "cad",
];
const NUMBER_WORDS: [&str; 20] = [
    "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
    "twelve", "twenty", "thirty", "forty", "fifty", "hundred", "thousand", "million", "billion",
];

/// ISO 4217 currency codes in use. A code counts only written in capitals: "ALL", "TOP" and
/// "TRY" are codes, "all", "top" and "try" are words.
const ISO_4217: &str = "AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB \
BRL BSD BTN BWP BYN BZD CAD CDF CHF CLP CNY COP CRC CUP CVE CZK DJF DKK DOP DZD EGP ERN ETB EUR FJD \
FKP GBP GEL GHS GIP GMD GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR IQD IRR ISK JMD JOD JPY KES KGS KHR \
KMF KPW KRW KWD KYD KZT LAK LBP LKR LRD LSL LYD MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MYR \
MZN NAD NGN NIO NOK NPR NZD OMR PAB PEN PGK PHP PKR PLN PYG QAR RON RSD RUB RWF SAR SBD SCR SDG SEK \
SGD SHP SLE SOS SRD SSP STN SYP SZL THB TJS TMT TND TOP TRY TTD TWD TZS UAH UGX USD UYU UZS VES VND \
VUV WST XAF XCD XOF XPF YER ZAR ZMW ZWL";

/// Whether a mention typed `money` can be read as an amount with its currency.
pub fn looks_like_money(s: &str) -> bool {
    let symbol = s.chars().any(|c| "$€£¥₹₩₽¢".contains(c));
    let lower: Vec<String> = words(s).collect();
    let code = s.split(|c: char| !c.is_alphanumeric()).any(|w| {
        w.len() == 3
            && w.chars().all(|c| c.is_ascii_uppercase())
            && ISO_4217.split(' ').any(|k| k == w)
    });
    let currency = symbol || code || lower.iter().any(|w| CURRENCY_WORDS.contains(&w.as_str()));
    let amount = s.chars().any(|c| c.is_ascii_digit())
        || lower
            .iter()
            .any(|w| NUMBER_WORDS.iter().any(|n| w.starts_with(n)));
    currency && amount
}

/// Why a grounded mention is still not kept by default (its flag), if it is not.
pub fn mention_flag(m: &Mention) -> Option<&'static str> {
    if m.grounding == Grounding::None {
        return Some(reason::UNGROUNDED);
    }
    match m.kind.as_str() {
        "date" if !looks_like_date(&m.text) => Some(reason::NOT_A_DATE),
        "money" if !looks_like_money(&m.text) => Some(reason::NOT_AN_AMOUNT),
        _ => None,
    }
}

/// Folded strings of a prompt's worked examples: the values its example answers hold and the
/// phrases it quotes ("Ada Lovelace"), so that one coming back for a document that lacks it is
/// recognised as the prompt's.
pub fn example_values(system_prompt: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in system_prompt.lines() {
        let line = line.trim();
        if line.starts_with('{') {
            if let Ok(v) = serde_json::from_str::<Value>(line) {
                collect_strings(&v, None, &mut out);
            }
            continue;
        }
        // Quoted phrases of the prose: "…" pairs.
        let mut parts = line.split('"');
        parts.next();
        while let (Some(quoted), Some(_)) = (parts.next(), parts.next()) {
            out.push(fold(quoted));
        }
    }
    out.retain(|s| s.chars().filter(|c| c.is_alphanumeric()).count() >= 3);
    out.sort();
    out.dedup();
    out
}

fn collect_strings(v: &Value, key: Option<&str>, out: &mut Vec<String>) {
    match v {
        // Ids, entity types and classifications are the task's vocabulary, not example content.
        Value::String(s) if !matches!(key, Some("id" | "type" | "document_type" | "language")) => {
            out.push(fold(s));
        }
        Value::Array(a) => a.iter().for_each(|x| collect_strings(x, key, out)),
        Value::Object(o) => o.iter().for_each(|(k, x)| collect_strings(x, Some(k), out)),
        _ => {}
    }
}

/// The words (lowercase, four letters or more) of a prompt's example answers.
pub fn example_words(system_prompt: &str) -> std::collections::HashSet<String> {
    let mut out = std::collections::HashSet::new();
    for line in system_prompt
        .lines()
        .filter(|l| l.trim_start().starts_with('{'))
    {
        if let Ok(v) = serde_json::from_str::<Value>(line.trim()) {
            let mut strings = Vec::new();
            collect_strings(&v, None, &mut strings);
            for s in strings {
                out.extend(words(&s).filter(|w| w.chars().count() >= 4));
            }
        }
    }
    out
}

/// How many distinct words of `answer` come from the example and not from `source`.
pub fn borrowed_words(
    answer: &str,
    example: &std::collections::HashSet<String>,
    source: &str,
) -> usize {
    let source: std::collections::HashSet<String> = words(source).collect();
    let mine: std::collections::HashSet<String> = words(answer).collect();
    mine.iter()
        .filter(|w| example.contains(*w) && !source.contains(*w))
        .count()
}

/// Whether `text` is (or holds) one of the example values.
pub fn from_example(text: &str, examples: &[String]) -> bool {
    let f = fold(text);
    !f.is_empty()
        && examples
            .iter()
            .any(|e| f == *e || (e.len() >= 8 && f.contains(e.as_str())))
}

/// One metadata value, placed in the document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ValueGrounding {
    /// The metadata field.
    pub field: String,
    /// Position in the field's list (list fields).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<usize>,
    /// The value as answered.
    pub value: String,
    /// The source's text at the place found, when it differs from the value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_text: Option<String>,
    /// 1-based page (`None` when ungrounded).
    pub page: Option<u32>,
    /// First character within the page's text.
    pub start: Option<usize>,
    /// One past the last character.
    pub end: Option<usize>,
    /// How it was found.
    pub grounding: Grounding,
    /// Similarity of the match.
    pub score: f64,
    /// Where it was found: `text` (a page, at the offsets) or `properties` (the file's own
    /// title or author fields, or its HTML `<title>`, which no page shows); `None` when not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub found_in: Option<String>,
}

/// Fields that classify the document rather than quote it: not looked up in the text.
pub const DERIVED_FIELDS: [&str; 2] = ["document_type", "language"];

/// Places every string value of a metadata answer (list fields item by item) in `pages`
/// (page number, text), first page first. `date` is found as a date: an ISO `YYYY-MM-DD` answer
/// matches "1 March 2022" or "March 1, 2022" in the text.
///
/// A title or author not in any page but equal (folded) to one of the file's own properties
/// (`hints`) is found in `properties`.
pub fn ground_metadata(
    pages: &[(u32, &str)],
    answer: &Value,
    hints: &crate::ingest::Hints,
) -> Vec<ValueGrounding> {
    let mut out = Vec::new();
    let Some(fields) = answer.as_object() else {
        return out;
    };
    for (field, v) in fields {
        if DERIVED_FIELDS.contains(&field.as_str()) {
            continue;
        }
        let values: Vec<(Option<usize>, &str)> = match v {
            Value::String(s) => vec![(None, s.as_str())],
            Value::Array(a) => a
                .iter()
                .enumerate()
                .filter_map(|(i, x)| x.as_str().map(|s| (Some(i), s)))
                .collect(),
            _ => continue,
        };
        for (index, value) in values {
            if value.trim().is_empty() {
                continue;
            }
            let mut g = ValueGrounding {
                field: field.clone(),
                index,
                value: value.to_owned(),
                source_text: None,
                page: None,
                start: None,
                end: None,
                grounding: Grounding::None,
                score: 0.0,
                found_in: None,
            };
            let found = if field == "date" {
                pages
                    .iter()
                    .find_map(|(n, t)| find_date(t, value).map(|m| (*n, m)))
            } else {
                pages.iter().find_map(|(n, t)| {
                    let m = ground(t, *n, &[(value.to_owned(), String::new())]).pop()?;
                    (m.grounding != Grounding::None).then_some((*n, m))
                })
            };
            if let Some((n, m)) = found {
                if m.text != value {
                    g.source_text = Some(m.text.clone());
                }
                g.page = Some(n);
                g.start = m.start;
                g.end = m.end;
                g.grounding = m.grounding;
                g.score = m.score;
                g.found_in = Some("text".into());
            } else {
                let props = match field.as_str() {
                    "title" => &hints.titles,
                    "authors" => &hints.authors,
                    _ => &Vec::new(),
                };
                if props.iter().any(|p| fold(p) == fold(value)) {
                    g.grounding = Grounding::Exact;
                    g.score = 1.0;
                    g.found_in = Some("properties".into());
                }
            }
            out.push(g);
        }
    }
    out
}

/// Finds an ISO-style date answer (`YYYY`, `YYYY-MM`, `YYYY-MM-DD`) written in any common way
/// in `page`: the year, with the month (name or number) and the day close by.
fn find_date(page: &str, iso: &str) -> Option<Mention> {
    let parts: Vec<&str> = iso.trim().split('-').collect();
    let year = *parts.first()?;
    if year.len() != 4 || !year.chars().all(|c| c.is_ascii_digit()) {
        // Not ISO: look for it as written.
        let m = ground(page, 0, &[(iso.to_owned(), String::new())]).pop()?;
        return (m.grounding != Grounding::None).then_some(m);
    }
    if let Some(m) = ground(page, 0, &[(iso.to_owned(), String::new())])
        .pop()
        .filter(|m| m.grounding != Grounding::None && m.grounding != Grounding::Fuzzy)
    {
        return Some(m);
    }
    let month: Option<u8> = parts.get(1).and_then(|m| m.parse().ok());
    let day: Option<u8> = parts.get(2).and_then(|d| d.parse().ok());
    let chars: Vec<(usize, char)> = page.char_indices().collect();
    let char_at = |byte: usize| chars.partition_point(|(b, _)| *b < byte);
    let mut at = 0;
    while let Some(rel) = page.get(at..).and_then(|p| p.find(year)) {
        let ys = at + rel;
        let ye = ys + year.len();
        at = ye;
        let digit = |c: Option<char>| c.is_some_and(|c| c.is_ascii_digit());
        if digit(page[..ys].chars().next_back()) || digit(page[ye..].chars().next()) {
            continue;
        }
        // The window before and after the year where its month and day are written.
        let mut lo = ys;
        for _ in 0..24 {
            match page[..lo].chars().next_back() {
                Some(c) => lo -= c.len_utf8(),
                None => break,
            }
        }
        let mut hi = ye;
        for _ in 0..16 {
            match page[hi..].chars().next() {
                Some(c) => hi += c.len_utf8(),
                None => break,
            }
        }
        let (mut s, mut e) = (ys, ye);
        if let Some(m) = month {
            let window = &page[lo..hi];
            let mut hit = None;
            let mut off = 0;
            for w in window.split(|c: char| !c.is_alphanumeric()) {
                let ws = window[off..].find(w).map_or(off, |r| off + r);
                off = ws + w.len();
                // Month names only: a bare number near a year could be a day or anything.
                if !w.is_empty() && month_of(&w.to_lowercase()) == Some(m) {
                    hit = Some((lo + ws, lo + ws + w.len()));
                    break;
                }
            }
            let Some((ms, me)) = hit else { continue };
            if let Some(d) = day {
                let window = &page[lo..hi];
                let has_day = window
                    .split(|c: char| !c.is_ascii_digit())
                    .any(|t| !t.is_empty() && t.len() <= 2 && t.parse::<u8>().ok() == Some(d));
                if !has_day {
                    continue;
                }
            }
            s = s.min(ms);
            e = e.max(me);
            // Take the day in when it sits right before the month ("1 March 2022").
            if let Some(d) = day {
                let before = page[lo..s].trim_end();
                let tail: String = before
                    .chars()
                    .rev()
                    .take_while(|c| c.is_ascii_digit())
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect();
                if tail.parse::<u8>().ok() == Some(d) {
                    s = lo + before.len() - tail.len();
                }
            }
        }
        return Some(Mention {
            text: page[s..e].to_owned(),
            answer_text: None,
            kind: "date".into(),
            page: 0,
            start: Some(char_at(s)),
            end: Some(char_at(e)),
            grounding: if &page[s..e] == iso {
                Grounding::Exact
            } else {
                Grounding::Normalized
            },
            score: 1.0,
            flag: None,
        });
    }
    None
}

/// Metadata as kept under the policy, with what was left out and why.
///
/// Returns the metadata kept and the grounding of its values (list indices as they are after
/// the removals).
pub fn keep_metadata(
    answer: &Value,
    grounding: Vec<ValueGrounding>,
    keep_flagged: bool,
    examples: &[String],
    dropped: &mut BTreeMap<String, usize>,
) -> (Value, Vec<ValueGrounding>) {
    let mut out = answer.clone();
    let mut remove: Vec<(String, Option<usize>)> = Vec::new();
    let mut kept = Vec::with_capacity(grounding.len());
    for g in grounding {
        let why = if g.grounding != Grounding::None {
            None
        } else if from_example(&g.value, examples) {
            Some(reason::FROM_EXAMPLE)
        } else if keep_flagged {
            None
        } else {
            Some(reason::UNGROUNDED)
        };
        match why {
            Some(why) => {
                *dropped.entry(why.to_owned()).or_default() += 1;
                remove.push((g.field, g.index));
            }
            None => kept.push(g),
        }
    }
    for g in &mut kept {
        if let Some(i) = g.index.as_mut() {
            let before = remove
                .iter()
                .filter(|(f, r)| *f == g.field && r.is_some_and(|r| r < *i))
                .count();
            *i -= before;
        }
    }
    // Indices from the back, so earlier ones stay valid.
    remove.sort_by_key(|r| std::cmp::Reverse(r.1));
    for (field, index) in remove {
        match (out.get_mut(&field), index) {
            (Some(Value::Array(a)), Some(i)) if i < a.len() => {
                a.remove(i);
            }
            (Some(v), None) => *v = Value::Null,
            _ => {}
        }
    }
    (out, kept)
}

/// Similarity of two texts as word sets (Dice over folded words): 1 for the same words.
pub fn similarity(a: &str, b: &str) -> f64 {
    let set = |s: &str| -> std::collections::BTreeSet<String> { words(s).collect() };
    let (x, y) = (set(a), set(b));
    if x.is_empty() || y.is_empty() {
        return 0.0;
    }
    let common = x.intersection(&y).count();
    2.0 * common as f64 / (x.len() + y.len()) as f64
}

/// Words too common to say what a text is about.
pub(crate) const STOPWORDS: [&str; 24] = [
    "this", "that", "with", "from", "have", "will", "shall", "which", "their", "there", "they",
    "been", "were", "what", "when", "into", "also", "such", "other", "than", "them", "these",
    "those", "about",
];

/// The content words of a summary that its section's text does not contain (by their first
/// five letters, so "agrees" finds "agreement"), when most of them are missing: a summary of
/// something else (another section, another document, the prompt). `None` when it is
/// supported.
pub fn unsupported_words(summary: &str, section: &str) -> Option<Vec<String>> {
    let stem = |w: &str| w.chars().take(5).collect::<String>();
    let source: std::collections::HashSet<String> = words(section).map(|w| stem(&w)).collect();
    let mut content: Vec<String> = words(summary)
        .filter(|w| w.chars().count() >= 4 && !STOPWORDS.contains(&w.as_str()))
        .collect();
    content.sort();
    content.dedup();
    if content.len() < 3 {
        return None;
    }
    let missing: Vec<String> = content
        .iter()
        .filter(|w| !source.contains(&stem(w)))
        .cloned()
        .collect();
    (missing.len() * 2 > content.len()).then_some(missing)
}

/// Why `summary` is no summary of `section` (whose first line is its heading), if it is not:
/// a word or three for a section of some length ("Song:", "TIDEWATER"), or nothing but words
/// of the heading ("Data protection" for "3. Data protection"). A short section may have a
/// short summary: sections under [`SUMMARY_MIN_SECTION_WORDS`] words are not judged.
pub fn not_a_summary(summary: &str, section: &str) -> Option<&'static str> {
    if words(section).count() < SUMMARY_MIN_SECTION_WORDS {
        return None;
    }
    let said: Vec<String> = words(summary).collect();
    let heading: std::collections::HashSet<String> =
        words(section.lines().find(|l| !l.trim().is_empty()).unwrap_or("")).collect();
    if !said.is_empty() && said.iter().all(|w| heading.contains(w)) {
        return Some("repeats the section's heading");
    }
    (said.len() < SUMMARY_MIN_WORDS).then_some("too short to be a summary")
}

/// Fewer words than this are no summary (of a section of [`SUMMARY_MIN_SECTION_WORDS`]).
pub const SUMMARY_MIN_WORDS: usize = 4;
/// Sections shorter than this (in words) may be summed up in a word or two.
pub const SUMMARY_MIN_SECTION_WORDS: usize = 25;

/// Summaries this close (word-set similarity) for different sections are copies.
pub const COPY_MIN: f64 = 0.9;

/// The entries of a list of strings that occur more than once (folded), each named once with
/// its count: `"Poland" ×5`.
pub fn repeated(list: &[Value]) -> Vec<String> {
    let mut counts: Vec<(String, String, usize)> = Vec::new();
    for s in list.iter().filter_map(Value::as_str) {
        let f = fold(s);
        match counts.iter_mut().find(|(k, _, _)| *k == f) {
            Some(c) => c.2 += 1,
            None => counts.push((f, s.to_owned(), 1)),
        }
    }
    counts
        .into_iter()
        .filter(|c| c.2 > 1)
        .map(|(_, s, n)| format!("{s:?} ×{n}"))
        .collect()
}

/// The list without its repeats (folded), first occurrences kept.
pub fn dedup_list(list: &[Value]) -> Vec<Value> {
    let mut seen = std::collections::HashSet::new();
    list.iter()
        .filter(|v| v.as_str().is_none_or(|s| seen.insert(fold(s))))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn dates_and_amounts_that_parse_and_nonsense_that_does_not() {
        for d in [
            "3 May 2021",
            "June 1790",
            "fiscal year 2023",
            "the 1990s",
            "2021-05-03",
            "3/5/2021",
            "Monday",
            "Sept. 4",
            "Q3 2021",
            "the nineteenth century",
        ] {
            assert!(looks_like_date(d), "{d}");
        }
        for d in [
            "MENSTRALES, THEY'S THE BEST",
            "FIELD REPORT: RIVER SURVEY, AUTUMN 2025",
            "Acme Corp",
            "42",
            "the 45",
            "Mayhem",
        ] {
            assert!(!looks_like_date(d), "{d}");
        }
        for m in [
            "$5,000",
            "EUR 12 million",
            "forty dollars",
            "£3.50",
            "12 cents",
            "PLN 214,000",
            "SEK 48.2 million",
            "CHF 3m",
        ] {
            assert!(looks_like_money(m), "{m}");
        }
        for m in [
            "5,000",
            "dollars",
            "the price",
            "Euro zone",
            "top 10",
            "all 3",
            "ABC 5",
        ] {
            assert!(!looks_like_money(m), "{m}");
        }
    }

    #[test]
    fn metadata_values_are_placed_in_the_document_or_flagged() {
        let p1 = "SUPPLY AGREEMENT\nbetween Northwind Traders and Globex Corporation, made on 14 March 2023.";
        let p2 = "Keywords: delivery schedule, penalties";
        let answer = json!({
            "title": "Supply Agreement",
            "authors": [],
            "date": "2023-03-14",
            "document_type": "contract",
            "language": "en",
            "keywords": ["delivery schedule", "hosting services"],
            "parties": ["Northwind Traders", "Initech Ltd"]
        });
        let g = ground_metadata(&[(1, p1), (2, p2)], &answer, &Default::default());
        let by = |f: &str, i: Option<usize>| {
            g.iter()
                .find(|x| x.field == f && x.index == i)
                .unwrap_or_else(|| panic!("{f} {i:?}"))
        };
        assert_eq!(by("title", None).grounding, Grounding::Normalized);
        assert_eq!(
            by("title", None).source_text.as_deref(),
            Some("SUPPLY AGREEMENT")
        );
        let date = by("date", None);
        assert_eq!(date.source_text.as_deref(), Some("14 March 2023"));
        let minutes =
            "Held on 9 October 2025 in Uppsala. Cash at 30 September stood at SEK 9.7 million.";
        let wrong = ground_metadata(
            &[(1, minutes)],
            &json!({"date": "2025-09-09"}),
            &Default::default(),
        );
        assert_eq!(
            wrong[0].grounding,
            Grounding::None,
            "9 October is not 2025-09-09"
        );
        let right = ground_metadata(
            &[(1, minutes)],
            &json!({"date": "2025-10-09"}),
            &Default::default(),
        );
        assert_eq!(right[0].source_text.as_deref(), Some("9 October 2025"));
        assert_eq!(date.page, Some(1));
        assert_eq!(by("keywords", Some(0)).page, Some(2));
        assert_eq!(by("keywords", Some(1)).grounding, Grounding::None);
        assert_eq!(by("parties", Some(0)).start, Some(25));
        assert_eq!(by("parties", Some(1)).grounding, Grounding::None);
        assert!(
            g.iter()
                .all(|x| x.field != "language" && x.field != "document_type")
        );

        let examples = vec![fold("Initech Ltd"), fold("hosting services")];
        let mut dropped = BTreeMap::new();
        let (kept, _) = keep_metadata(&answer, g.clone(), true, &examples, &mut dropped);
        assert_eq!(
            kept["parties"],
            json!(["Northwind Traders"]),
            "an example never leaks"
        );
        assert_eq!(kept["keywords"], json!(["delivery schedule"]));
        assert_eq!(dropped[reason::FROM_EXAMPLE], 2);
        let answer2 = json!({"title": "Made Up", "parties": ["Globex Corporation"]});
        let hints = crate::ingest::Hints {
            titles: vec!["Made Up".into()],
            authors: vec![],
        };
        assert_eq!(
            ground_metadata(&[(1, p1)], &answer2, &hints)
                .iter()
                .find(|g| g.field == "title")
                .and_then(|g| g.found_in.as_deref()),
            Some("properties"),
            "a title from the file's properties is grounded there"
        );
        let g2 = ground_metadata(&[(1, p1)], &answer2, &Default::default());
        let mut dropped = BTreeMap::new();
        let (kept, _) = keep_metadata(&answer2, g2.clone(), false, &examples, &mut dropped);
        assert_eq!(kept["title"], Value::Null);
        assert_eq!(kept["parties"], json!(["Globex Corporation"]));
        assert_eq!(dropped[reason::UNGROUNDED], 1);
        let (kept, _) = keep_metadata(&answer2, g2, true, &examples, &mut BTreeMap::new());
        assert_eq!(
            kept["title"], "Made Up",
            "keep-flagged keeps what is not an example"
        );
    }

    #[test]
    fn example_values_come_from_the_example_answers_only() {
        let prompt = "Rules.\nAnswer:\n{\"items\": [{\"id\": \"example-1\", \"entities\": [{\"text\": \"Quillfeather Bakery\", \"type\": \"organization\"}]}]}";
        let v = example_values(prompt);
        assert_eq!(v, vec!["quillfeather bakery".to_owned()]);
        assert!(from_example("QUILLFEATHER BAKERY", &v));
        assert!(from_example("the Quillfeather Bakery ltd", &v));
        assert!(!from_example("Bakery", &v));
    }

    #[test]
    fn a_summary_of_something_else_is_caught() {
        let section = "The next meeting will be held on 22 January 2026 in Stockholm.";
        assert_eq!(
            unsupported_words(
                "The board meets next on 22 January 2026 in Stockholm.",
                section
            ),
            None
        );
        let other = unsupported_words(
            "The Supplier will deliver 2,400 polypropylene mooring lines to the North Sea.",
            section,
        )
        .unwrap();
        assert!(other.contains(&"polypropylene".to_owned()), "{other:?}");
    }

    #[test]
    fn copies_and_repeats() {
        let a = "The buyer pays each invoice within 30 days.";
        assert!(similarity(a, "the buyer pays each invoice within 30 days") >= COPY_MIN);
        assert!(similarity(a, "The seller ships goods within 10 days of an order.") < COPY_MIN);
        let k = vec![json!("penalties"), json!("Penalties"), json!("delivery")];
        assert_eq!(repeated(&k), vec!["\"penalties\" ×2".to_owned()]);
        assert_eq!(dedup_list(&k), vec![json!("penalties"), json!("delivery")]);
    }

    #[test]
    fn a_word_or_the_heading_is_no_summary_of_a_section() {
        let section = "3. Data protection\n\nThe board approved the new retention policy: \
            customer records are kept for five years after the end of a contract and then \
            deleted, and the data protection officer reports twice a year to the board.";
        assert_eq!(
            not_a_summary("Song:", section),
            Some("too short to be a summary")
        );
        assert_eq!(
            not_a_summary("TIDEWATER", section),
            Some("too short to be a summary")
        );
        assert_eq!(
            not_a_summary("Data protection", section),
            Some("repeats the section's heading")
        );
        assert_eq!(
            not_a_summary("3. Data Protection.", section),
            Some("repeats the section's heading")
        );
        assert_eq!(
            not_a_summary(
                "Customer records are kept five years, then deleted.",
                section
            ),
            None
        );
        // A short section may be summed up in a few words.
        assert_eq!(
            not_a_summary("Next meeting", "4. Next meeting\n\n12 May."),
            None
        );
    }
}
