//! Metadata candidates a document gives away by its form, before any model reads it: a PDF's
//! document properties (`pdfinfo`'s Title and Author) and its first page's layout (the title
//! set in the largest type near the top, the names under it), an HTML page's `<title>` and
//! `<meta name="author">`.
//!
//! Small models are good at choosing and copying and bad at inventing: given candidates, the
//! metadata task asks the model to choose among them (and, where the endpoint takes a schema
//! per request, constrains it to them), instead of having it write a title from scratch.

use serde::{Deserialize, Serialize};

/// Candidates for metadata fields, best first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hints {
    /// Possible titles.
    pub titles: Vec<String>,
    /// Possible authors, one name each.
    pub authors: Vec<String>,
}

impl Hints {
    /// True when there is nothing to offer.
    pub fn is_empty(&self) -> bool {
        self.titles.is_empty() && self.authors.is_empty()
    }

    pub(crate) fn add_title(&mut self, t: &str) {
        let t = squash(t);
        let words = t.split_whitespace().count();
        if (1..=40).contains(&words)
            && t.chars().count() <= 200
            && !self.titles.iter().any(|x| x.eq_ignore_ascii_case(&t))
        {
            self.titles.push(t);
        }
    }

    fn add_author(&mut self, name: &str) {
        let name = squash(name.trim_matches(|c: char| !c.is_alphabetic()));
        if looks_like_name(&name) && !self.authors.iter().any(|a| a.eq_ignore_ascii_case(&name)) {
            self.authors.push(name);
        }
    }

    /// At most `n` of each, so a prompt or schema built from them stays small.
    fn cap(mut self, n: usize) -> Self {
        self.titles.truncate(n);
        self.authors.truncate(n * 2);
        self
    }
}

fn squash(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Words in names that are not names: affiliations, headings.
const NOT_NAME: [&str; 24] = [
    "university",
    "universität",
    "universitat",
    "université",
    "institut",
    "institute",
    "department",
    "school",
    "college",
    "inc",
    "ltd",
    "associates",
    "laboratory",
    "abstract",
    "introduction",
    "contents",
    "keywords",
    "faculty",
    "center",
    "centre",
    "wien",
    "germany",
    "austria",
    "usa",
];

/// A person's name as papers print it: two to five words, each starting with a capital
/// (particles such as "van", "de" allowed), letters, hyphens, apostrophes and initials only.
fn looks_like_name(s: &str) -> bool {
    let words: Vec<&str> = s.split_whitespace().collect();
    if !(2..=5).contains(&words.len()) {
        return false;
    }
    let particles = [
        "van", "von", "de", "der", "den", "da", "di", "la", "le", "du", "del",
    ];
    words.iter().all(|w| {
        let lower = w.to_lowercase();
        let ok_chars = w
            .chars()
            .all(|c| c.is_alphabetic() || "-'.\u{2019}".contains(c));
        let lower = lower.trim_end_matches('.');
        let not_name = NOT_NAME.iter().any(|n| {
            if n.len() >= 5 {
                lower.contains(n)
            } else {
                lower == *n
            }
        });
        ok_chars
            && !not_name
            && (w.chars().next().is_some_and(char::is_uppercase) || particles.contains(&lower))
    }) && words
        .last()
        .is_some_and(|w| w.chars().filter(|c| c.is_alphabetic()).count() >= 2)
}

/// Splits a line of names ("A. Smith, B. Jones and C. Lee") into names.
fn split_names(line: &str) -> Vec<&str> {
    line.split([',', ';', '&'])
        .flat_map(|p| p.split(" and "))
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect()
}

/// Hints of a PDF from `pdfinfo`'s output and `pdftotext -bbox-layout` of its first page.
pub(crate) fn from_pdf(info: &str, layout: &str) -> Hints {
    let mut h = Hints::default();
    let field = |name: &str| {
        info.lines()
            .find_map(|l| l.strip_prefix(name))
            .map(str::trim)
            .filter(|v| !v.is_empty())
    };
    if let Some(t) = field("Title:") {
        // Properties titles that are file names or tool defaults say nothing.
        let lower = t.to_lowercase();
        if !(lower.ends_with(".dvi")
            || lower.ends_with(".pdf")
            || lower.ends_with(".tex")
            || lower.starts_with("microsoft word")
            || lower == "untitled")
        {
            h.add_title(t);
        }
    }
    if let Some(a) = field("Author:") {
        for n in split_names(a) {
            h.add_author(n);
        }
    }
    let lines = layout_lines(layout);
    if let Some(page_h) = page_height(layout) {
        let top: Vec<&Line> = lines.iter().filter(|l| l.y < page_h * 0.45).collect();
        let biggest = top.iter().map(|l| l.height).fold(0.0_f64, f64::max);
        let body = median_height(&lines);
        if biggest > body * 1.15 {
            // The title: consecutive lines in the biggest type (within half a point).
            let first = top.iter().position(|l| l.height >= biggest - 0.5);
            if let Some(first) = first {
                // The title: that line and the lines right under it that are not names (line
                // heights from glyph boxes vary too much to tell a title's second line by).
                let mut title = vec![top[first].text.as_str()];
                let mut i = first + 1;
                while i < top.len()
                    && title.len() < 4
                    && top[i].y - top[i - 1].y < biggest * 1.6
                    && split_names(&strip_marks(&top[i].text))
                        .iter()
                        .all(|n| !looks_like_name(n))
                {
                    title.push(top[i].text.as_str());
                    i += 1;
                }
                h.add_title(&title.join(" "));
                // Names: the lines after the title, up to the abstract or first heading.
                for l in &top[i..] {
                    let lower = l.text.to_lowercase();
                    if lower.starts_with("abstract")
                        || lower.starts_with("summary")
                        || lower.starts_with("keywords")
                        || lower.starts_with("1 ")
                        || lower.starts_with("introduction")
                    {
                        break;
                    }
                    for n in split_names(&strip_marks(&l.text)) {
                        h.add_author(n);
                    }
                }
            }
        }
    }
    // A title's second line can look like a name ("Ordered Observations"): not when a title
    // candidate holds it.
    let lower: Vec<String> = h.titles.iter().map(|t| t.to_lowercase()).collect();
    h.authors
        .retain(|a| !lower.iter().any(|t| t.contains(&a.to_lowercase())));
    h.cap(4)
}

/// Footnote marks after names (†, ‡, *, superscript digits and letters as poppler writes them).
fn strip_marks(s: &str) -> String {
    s.chars()
        .filter(|c| {
            !"†‡*∗§¶#".contains(*c) && !c.is_ascii_digit() && !('\u{2070}'..='\u{209F}').contains(c)
        })
        .collect()
}

struct Line {
    y: f64,
    height: f64,
    text: String,
}

fn attr(tag: &str, name: &str) -> Option<f64> {
    let at = tag.find(&format!("{name}=\""))? + name.len() + 2;
    let end = tag[at..].find('"')?;
    tag[at..at + end].parse().ok()
}

fn page_height(layout: &str) -> Option<f64> {
    let at = layout.find("<page ")?;
    let end = layout[at..].find('>')?;
    attr(&layout[at..at + end], "height")
}

/// The lines of poppler's bbox layout (XHTML), in reading order, with their heights.
fn layout_lines(layout: &str) -> Vec<Line> {
    let mut out = Vec::new();
    let mut rest = layout;
    while let Some(at) = rest.find("<line ") {
        rest = &rest[at..];
        let Some(tag_end) = rest.find('>') else { break };
        let tag = &rest[..tag_end];
        let Some(close) = rest.find("</line>") else {
            break;
        };
        let body = &rest[tag_end + 1..close];
        let mut words = Vec::new();
        let mut b = body;
        while let Some(w) = b.find("<word ") {
            b = &b[w..];
            let Some(s) = b.find('>') else { break };
            let Some(e) = b.find("</word>") else { break };
            if s < e {
                words.push(unescape(&b[s + 1..e]));
            }
            b = &b[e + 7..];
        }
        if let (Some(y0), Some(y1)) = (attr(tag, "yMin"), attr(tag, "yMax"))
            && !words.is_empty()
        {
            // Punctuation set as its own word ("strucchange :") joins the word before it.
            let mut text = String::new();
            for w in &words {
                if !text.is_empty() && !w.chars().all(|c| ",.:;".contains(c)) {
                    text.push(' ');
                }
                text.push_str(w);
            }
            out.push(Line {
                y: y0,
                height: y1 - y0,
                text,
            });
        }
        rest = &rest[close + 7..];
    }
    out
}

fn median_height(lines: &[Line]) -> f64 {
    let mut h: Vec<f64> = lines.iter().map(|l| l.height).collect();
    if h.is_empty() {
        return 0.0;
    }
    h.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    h[h.len() / 2]
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

/// Hints of an HTML page: its `<title>` and `<meta name="author">`.
pub(crate) fn from_html(title: Option<&str>, author: Option<&str>) -> Hints {
    let mut h = Hints::default();
    if let Some(t) = title {
        h.add_title(t);
    }
    if let Some(a) = author {
        for n in split_names(a) {
            h.add_author(n);
        }
    }
    h.cap(4)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LAYOUT: &str = r#"<page width="612.000000" height="792.000000"><flow><block>
<line xMin="100" yMin="149.0" xMax="500" yMax="164.5"><word xMin="1" yMin="1" xMax="2" yMax="2">Diagnostic</word><word xMin="1" yMin="1" xMax="2" yMax="2">Checking</word></line>
<line xMin="100" yMin="166.0" xMax="500" yMax="181.5"><word xMin="1" yMin="1" xMax="2" yMax="2">in</word><word xMin="1" yMin="1" xMax="2" yMax="2">Regression</word></line>
<line xMin="100" yMin="190.0" xMax="500" yMax="200.1"><word xMin="1" yMin="1" xMax="2" yMax="2">Achim</word><word xMin="1" yMin="1" xMax="2" yMax="2">Zeileis†</word></line>
<line xMin="100" yMin="190.0" xMax="500" yMax="200.1"><word xMin="1" yMin="1" xMax="2" yMax="2">Torsten</word><word xMin="1" yMin="1" xMax="2" yMax="2">Hothorn‡</word></line>
<line xMin="100" yMin="204.0" xMax="500" yMax="214.1"><word xMin="1" yMin="1" xMax="2" yMax="2">Universität</word><word xMin="1" yMin="1" xMax="2" yMax="2">Wien</word></line>
<line xMin="100" yMin="247.0" xMax="500" yMax="257.2"><word xMin="1" yMin="1" xMax="2" yMax="2">Abstract</word></line>
<line xMin="100" yMin="262.0" xMax="500" yMax="272.0"><word xMin="1" yMin="1" xMax="2" yMax="2">Jane</word><word xMin="1" yMin="1" xMax="2" yMax="2">Roe</word></line>
<line xMin="100" yMin="282.0" xMax="500" yMax="292.0"><word xMin="1" yMin="1" xMax="2" yMax="2">body</word><word xMin="1" yMin="1" xMax="2" yMax="2">text</word></line>
</block></flow></page>"#;

    #[test]
    fn a_first_page_gives_its_title_and_names() {
        let h = from_pdf("Title:          \nAuthor:         \nPages: 5\n", LAYOUT);
        assert_eq!(h.titles, vec!["Diagnostic Checking in Regression"]);
        assert_eq!(
            h.authors,
            vec!["Achim Zeileis", "Torsten Hothorn"],
            "not the affiliation, nothing after the abstract"
        );
    }

    #[test]
    fn a_title_line_that_looks_like_a_name_is_no_author() {
        let info = "Title: zoo: An S3 Class and Methods for Indexed Totally Ordered Observations\n";
        let layout = LAYOUT
            .replace(">Torsten</word>", ">Ordered</word>")
            .replace(">Hothorn‡</word>", ">Observations</word>");
        let h = from_pdf(info, &layout);
        assert_eq!(h.authors, vec!["Achim Zeileis"]);
    }

    #[test]
    fn properties_come_first_and_names_split() {
        let info =
            "Title:          zoo: An S3 Class\nAuthor:         Achim Zeileis, Gabor Grothendieck\n";
        let h = from_pdf(info, "");
        assert_eq!(h.titles, vec!["zoo: An S3 Class"]);
        assert_eq!(h.authors, vec!["Achim Zeileis", "Gabor Grothendieck"]);
        let h = from_pdf(
            "Title: paper.dvi\nAuthor: A. B. Smith and Ludwig van Beethoven\n",
            "",
        );
        assert!(h.titles.is_empty(), "a file name is no title");
        assert_eq!(h.authors, vec!["A. B. Smith", "Ludwig van Beethoven"]);
    }

    #[test]
    fn what_is_not_a_name() {
        for s in [
            "Universität Innsbruck",
            "GKX Associates Inc.",
            "1 Introduction",
            "Abstract",
            "x",
            "Smith",
        ] {
            assert!(!looks_like_name(s), "{s}");
        }
        assert!(looks_like_name("Kurt Hornik"));
        assert!(looks_like_name("Jean-Luc O'Neil"));
    }
}
