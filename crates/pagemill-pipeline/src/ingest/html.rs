//! HTML: the main content as text — navigation, headers, footers, sidebars, scripts and forms
//! left out — with `h1`–`h6` as headings and entities decoded (html5ever). The tree is walked
//! with an explicit stack and a depth bound, so hostile nesting cannot overflow anything.

use scraper::{ElementRef, Html, Node};

use super::{Extracted, Limits};

const SKIP: &[&str] = &[
    "nav", "header", "footer", "aside", "script", "style", "noscript", "form", "button", "svg",
    "iframe", "template", "select", "head",
];
const BLOCK: &[&str] = &[
    "p",
    "div",
    "section",
    "article",
    "main",
    "li",
    "ul",
    "ol",
    "dl",
    "dt",
    "dd",
    "pre",
    "blockquote",
    "table",
    "tr",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "figure",
    "figcaption",
    "br",
    "hr",
    "address",
];

fn skipped(el: &ElementRef<'_>) -> bool {
    let v = el.value();
    if SKIP.contains(&v.name()) {
        return true;
    }
    let role = v.attr("role").unwrap_or("");
    if matches!(
        role,
        "navigation" | "banner" | "contentinfo" | "search" | "complementary"
    ) {
        return true;
    }
    v.classes().any(|c| {
        let c = c.to_ascii_lowercase();
        c.starts_with("nav")
            || c.contains("breadcrumb")
            || c.contains("sidebar")
            || c == "toc"
            || c.contains("menu")
            || c.contains("skip")
    })
}

/// The charset a page declares in its first 1,024 bytes (`<meta charset=…>` or
/// `content="…; charset=…"`), when encoding_rs knows it.
fn declared_charset(bytes: &[u8]) -> Option<&'static encoding_rs::Encoding> {
    let head = String::from_utf8_lossy(&bytes[..bytes.len().min(1024)]).to_ascii_lowercase();
    let at = head.find("charset=")? + "charset=".len();
    let label: String = head[at..]
        .trim_start_matches(['"', '\''])
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || "-_:.".contains(*c))
        .collect();
    encoding_rs::Encoding::for_label(label.as_bytes())
}

/// Decodes a page: UTF-8 (or a BOM) as text is; otherwise the charset it declares, else the
/// one detected.
fn decode(bytes: &[u8]) -> (String, String) {
    if std::str::from_utf8(bytes).is_err()
        && let Some(e) = declared_charset(bytes).filter(|e| *e != encoding_rs::UTF_8)
    {
        let (text, _, _) = e.decode(bytes);
        return (
            text.into_owned(),
            format!("{} (declared)", e.name().to_ascii_lowercase()),
        );
    }
    let (text, name) = super::text::decode(bytes);
    (text, name.to_owned())
}

pub(crate) fn extract(bytes: &[u8], limits: &Limits) -> Extracted {
    let (raw, encoding) = decode(bytes);
    let doc = Html::parse_document(&raw);
    let main = ["main", "article", "[role=main]", "body"]
        .iter()
        .filter_map(|s| scraper::Selector::parse(s).ok())
        .find_map(|sel| doc.select(&sel).next());
    let root = main.unwrap_or_else(|| doc.root_element());

    let mut out = String::new();
    let mut headings: Vec<(usize, String, u8)> = Vec::new();
    let mut warnings = Vec::new();
    let mut too_deep = false;
    // (node, depth, entering?) — entering pushes children; leaving closes blocks.
    let mut stack: Vec<(ego_tree::NodeId, usize, bool)> = vec![(root.id(), 0, true)];
    let mut pre_depth = 0usize;
    let mut open_heading: Option<(usize, u8)> = None;
    while let Some((id, depth, entering)) = stack.pop() {
        let Some(node) = doc.tree.get(id) else {
            continue;
        };
        match node.value() {
            Node::Text(t) if entering => {
                if pre_depth > 0 {
                    out.push_str(t);
                } else {
                    push_collapsed(&mut out, t);
                }
            }
            Node::Element(e) => {
                let Some(el) = ElementRef::wrap(node) else {
                    continue;
                };
                let name = e.name();
                let block = BLOCK.contains(&name);
                if entering {
                    if skipped(&el) {
                        continue;
                    }
                    if depth > limits.max_depth {
                        too_deep = true;
                        continue;
                    }
                    if block {
                        new_block(&mut out);
                    }
                    if let Some(level) = heading_level(name) {
                        open_heading = Some((out.len(), level));
                    }
                    if name == "pre" {
                        pre_depth += 1;
                    }
                    stack.push((id, depth, false));
                    let children: Vec<_> = node.children().map(|c| c.id()).collect();
                    for c in children.into_iter().rev() {
                        stack.push((c, depth + 1, true));
                    }
                } else {
                    if name == "pre" {
                        pre_depth = pre_depth.saturating_sub(1);
                    }
                    if heading_level(name).is_some()
                        && let Some((start, level)) = open_heading.take()
                    {
                        let title = out[start..]
                            .split_whitespace()
                            .collect::<Vec<_>>()
                            .join(" ");
                        if !title.is_empty() {
                            headings.push((start, title, level));
                        }
                    }
                    if block {
                        new_block(&mut out);
                    } else if matches!(name, "td" | "th") {
                        out.push_str(" | ");
                    }
                }
            }
            _ => {}
        }
    }
    if too_deep {
        warnings.push(format!(
            "elements nested deeper than {} were left out",
            limits.max_depth
        ));
    }
    let text = out.trim_end().to_owned();
    let ranges = super::text::paginate_ranges(&text, limits.text_page_chars);
    let mut ex = Extracted {
        encoding: Some(encoding),
        warnings,
        ..Extracted::default()
    };
    ex.headings = super::place_headings(&ranges, headings);
    let first = |css: &str| {
        scraper::Selector::parse(css)
            .ok()
            .and_then(|sel| doc.select(&sel).next())
    };
    let title = first("title").map(|t| t.text().collect::<String>());
    let author =
        first("meta[name=author]").and_then(|m| m.value().attr("content").map(str::to_owned));
    ex.hints = super::hints::from_html(title.as_deref(), author.as_deref());
    ex.pages = ranges
        .iter()
        .map(|&(a, b)| (text[a..b].to_owned(), None))
        .collect();
    ex
}

fn heading_level(name: &str) -> Option<u8> {
    match name {
        "h1" => Some(1),
        "h2" => Some(2),
        "h3" => Some(3),
        "h4" => Some(4),
        "h5" => Some(5),
        "h6" => Some(6),
        _ => None,
    }
}

fn new_block(out: &mut String) {
    let trimmed = out.trim_end_matches([' ', '\t']).len();
    out.truncate(trimmed);
    if !out.is_empty() && !out.ends_with("\n\n") {
        out.push_str(if out.ends_with('\n') { "\n" } else { "\n\n" });
    }
}

fn push_collapsed(out: &mut String, t: &str) {
    let starts_space = t.starts_with(char::is_whitespace);
    let ends_space = t.ends_with(char::is_whitespace);
    let words: Vec<&str> = t.split_whitespace().collect();
    if words.is_empty() {
        if starts_space && !out.is_empty() && !out.ends_with([' ', '\n']) {
            out.push(' ');
        }
        return;
    }
    if starts_space && !out.is_empty() && !out.ends_with([' ', '\n']) {
        out.push(' ');
    }
    out.push_str(&words.join(" "));
    if ends_space {
        out.push(' ');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_is_read_in_the_charset_it_declares() {
        let (body, _, _) = encoding_rs::WINDOWS_1250.encode("Łódź, żółw i gęś.");
        let mut page = b"<html><head><meta charset=\"windows-1250\"></head><body><p>".to_vec();
        page.extend_from_slice(&body);
        page.extend_from_slice(b"</p></body></html>");
        let ex = extract(&page, &Limits::default());
        assert_eq!(ex.encoding.as_deref(), Some("windows-1250 (declared)"));
        assert!(
            ex.pages[0].0.contains("Łódź, żółw i gęś."),
            "{:?}",
            ex.pages
        );
        // UTF-8 stays UTF-8 whatever is declared.
        let utf8 = "<meta charset=\"iso-8859-1\"><p>Kraków</p>";
        assert_eq!(
            extract(utf8.as_bytes(), &Limits::default())
                .encoding
                .as_deref(),
            Some("utf-8")
        );
    }

    fn text_of(html: &str) -> (String, Vec<(String, u8)>) {
        let ex = extract(html.as_bytes(), &Limits::default());
        let text = ex
            .pages
            .iter()
            .map(|p| p.0.clone())
            .collect::<Vec<_>>()
            .join("\n\n");
        (text, ex.headings.into_iter().map(|h| (h.2, h.3)).collect())
    }

    #[test]
    fn main_content_without_chrome_with_headings_and_entities() {
        let (text, headings) = text_of(
            "<html><head><title>T</title><style>p{}</style></head><body><nav>Home | About</nav>\
             <div class=\"navheader\">Prev Next</div><h1>Caf&eacute; &amp; Co</h1><p>First   para\ngraph.</p>\
             <script>evil()</script><h2>Part <em>two</em></h2><ul><li>one</li><li>two</li></ul>\
             <table><tr><td>a</td><td>b</td></tr></table><footer>(c) 2024</footer></body></html>",
        );
        assert!(
            text.starts_with("Café & Co\n\nFirst para graph."),
            "{text:?}"
        );
        for gone in ["Home", "Prev", "evil", "(c)", "p{}"] {
            assert!(!text.contains(gone), "{gone} in {text:?}");
        }
        assert!(text.contains("one\n\ntwo"));
        assert!(text.contains("a | b"));
        assert_eq!(headings, [("Café & Co".into(), 1), ("Part two".into(), 2)]);
    }

    #[test]
    fn deep_nesting_is_bounded_not_fatal() {
        let html = format!(
            "<body>{}deep{}<p>after</p></body>",
            "<div>".repeat(5_000),
            "</div>".repeat(5_000)
        );
        let ex = extract(html.as_bytes(), &Limits::default());
        assert!(ex.warnings.iter().any(|w| w.contains("nested deeper")));
    }
}
