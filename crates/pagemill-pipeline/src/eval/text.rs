//! Text normalization and dates for comparing answers with gold.

use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;

/// Lowercase, without diacritics, punctuation as space, whitespace collapsed: "Kraków," and
/// "krakow" are the same.
pub fn normalize(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.nfkd().filter(|c| !is_combining_mark(*c)) {
        if c.is_alphanumeric() {
            out.extend(c.to_lowercase());
        } else if !out.is_empty() && !out.ends_with(' ') {
            out.push(' ');
        }
    }
    out.truncate(out.trim_end().len());
    out
}

/// The words of a text, normalized (see [`normalize`]).
pub fn tokens(s: &str) -> Vec<String> {
    normalize(s)
        .split(' ')
        .filter(|w| !w.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Titles before a name that do not change whom it names.
const HONORIFICS: [&str; 10] = [
    "dr",
    "prof",
    "professor",
    "mr",
    "mrs",
    "ms",
    "miss",
    "mx",
    "sir",
    "dame",
];

/// A list value (an author, a party) normalized, less honorifics before it: "Dr. Helena
/// Kowalczyk" and "Helena Kowalczyk" name the same author.
pub fn name_key(s: &str) -> String {
    let words = tokens(s);
    let skip = words
        .iter()
        .take_while(|w| HONORIFICS.contains(&w.as_str()))
        .count()
        .min(words.len().saturating_sub(1));
    words[skip..].join(" ")
}

/// A calendar date written in a common way: `2025-03-14`, `14 March 2025`, `March 14, 2025`,
/// `14 Mar. 2025`, `2025-03`, `March 2025`, `2025`. `(year, month, day)`; numeric day-month
/// orders other than ISO's are ambiguous and not read.
pub fn calendar_date(s: &str) -> Option<(u16, Option<u8>, Option<u8>)> {
    let s = s.trim();
    let iso: Vec<&str> = s.split('-').collect();
    if iso[0].len() == 4
        && iso
            .iter()
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
    {
        let year = iso[0].parse().ok()?;
        let month = iso
            .get(1)
            .and_then(|m| m.parse::<u8>().ok())
            .filter(|m| (1..=12).contains(m));
        let day = iso
            .get(2)
            .and_then(|d| d.parse::<u8>().ok())
            .filter(|d| (1..=31).contains(d));
        if iso.len() > 3 || (iso.len() >= 2 && month.is_none()) || (iso.len() == 3 && day.is_none())
        {
            return None;
        }
        return Some((year, month, day));
    }
    let words = tokens(s);
    let mut year = None;
    let mut month = None;
    let mut day = None;
    for w in &words {
        if let Some(m) = crate::run::checks::month_of(w) {
            month.get_or_insert(m);
        } else if w.len() == 4 && w.chars().all(|c| c.is_ascii_digit()) {
            year.get_or_insert(w.parse().ok()?);
        } else if let Some(d) = w
            .trim_end_matches(|c: char| c.is_ascii_alphabetic())
            .parse::<u8>()
            .ok()
            .filter(|d| (1..=31).contains(d))
        {
            day.get_or_insert(d);
        } else {
            return None;
        }
    }
    let year = year?;
    if day.is_some() && month.is_none() {
        return None;
    }
    Some((year, month, day))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn honorifics_do_not_change_a_name() {
        assert_eq!(name_key("Dr. Helena Kowalczyk"), "helena kowalczyk");
        assert_eq!(name_key("Prof. Dr. Achim Zeileis"), "achim zeileis");
        // A name that is only a title keeps it.
        assert_eq!(name_key("Dr."), "dr");
        assert_eq!(name_key("Drake Mills"), "drake mills");
    }

    #[test]
    fn normalization_forgets_case_accents_punctuation_and_spacing() {
        assert_eq!(normalize("  Kraków,  Poland! "), "krakow poland");
        assert_eq!(normalize("Zieliński"), "zielinski");
        assert_eq!(normalize("GBP 186,000"), "gbp 186 000");
        assert_eq!(tokens("The  Vistula—river."), ["the", "vistula", "river"]);
    }

    #[test]
    fn dates_are_the_same_whatever_their_format() {
        let d = Some((2025, Some(3), Some(14)));
        for s in [
            "2025-03-14",
            "14 March 2025",
            "March 14, 2025",
            "14th Mar 2025",
        ] {
            assert_eq!(calendar_date(s), d, "{s}");
        }
        assert_eq!(calendar_date("March 2025"), Some((2025, Some(3), None)));
        assert_eq!(calendar_date("2025"), Some((2025, None, None)));
        assert_eq!(
            calendar_date("14/03/2025"),
            None,
            "ambiguous orders are not read"
        );
        assert_eq!(calendar_date("next Tuesday"), None);
        assert_eq!(calendar_date("2025-13-01"), None);
    }
}
