//! Gold from the formats people already have: CoNLL/BIO token files for entities, a CSV for
//! metadata.

use serde_json::{Map, Value};

use super::gold::{DocRef, GoldDocument, GoldEntity, GoldError};

/// The entities of a CoNLL/BIO token file: one token per line, its tag in the last column
/// (`B-PER`, `I-PER`, `O`; IOB1's `I-` starting an entity is read too), blank lines between
/// sentences, `-DOCSTART-` and `#` lines ignored. Tokens are joined by spaces (the format
/// keeps no spacing): scoring normalizes punctuation and spacing away, so "GBP 186 , 000"
/// matches "GBP 186,000". Common labels become pagemill's types (PER → person, ORG →
/// organization, LOC/GPE/FAC → location, DATE, MONEY, LAW, PRODUCT); others are kept,
/// lowercased.
pub fn conll_entities(text: &str) -> Result<Vec<GoldEntity>, GoldError> {
    let mut out = Vec::new();
    let mut current: Option<(Vec<String>, String)> = None;
    let flush = |current: &mut Option<(Vec<String>, String)>, out: &mut Vec<GoldEntity>| {
        if let Some((tokens, label)) = current.take() {
            out.push(GoldEntity {
                text: tokens.join(" "),
                kind: label,
                page: None,
                start: None,
                end: None,
            });
        }
    };
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with("-DOCSTART-") {
            flush(&mut current, &mut out);
            continue;
        }
        let cols: Vec<&str> = line.split_whitespace().collect();
        let (token, tag) = match cols.as_slice() {
            [token, .., tag] => (*token, *tag),
            _ => {
                return Err(GoldError {
                    line: i + 1,
                    message: format!("expected a token and a tag: {line:?}"),
                });
            }
        };
        if tag == "O" {
            flush(&mut current, &mut out);
            continue;
        }
        let (prefix, label) = tag.split_once('-').ok_or_else(|| GoldError {
            line: i + 1,
            message: format!("tag {tag:?} is not O, B-X or I-X"),
        })?;
        let kind = pagemill_type(label);
        let continues = prefix == "I" && current.as_ref().is_some_and(|(_, k)| *k == kind);
        match prefix {
            "B" | "I" | "E" | "S" if !continues => {
                flush(&mut current, &mut out);
                current = Some((vec![token.to_owned()], kind));
            }
            "I" | "E" => {
                if let Some((tokens, _)) = &mut current {
                    tokens.push(token.to_owned());
                }
            }
            _ => {
                return Err(GoldError {
                    line: i + 1,
                    message: format!("tag {tag:?} is not O, B-X or I-X"),
                });
            }
        }
    }
    flush(&mut current, &mut out);
    Ok(out)
}

fn pagemill_type(label: &str) -> String {
    match label.to_ascii_uppercase().as_str() {
        "PER" | "PERSON" => "person".into(),
        "ORG" | "ORGANIZATION" | "ORGANISATION" => "organization".into(),
        "LOC" | "LOCATION" | "GPE" | "FAC" => "location".into(),
        "DATE" => "date".into(),
        "MONEY" => "money".into(),
        "LAW" => "law".into(),
        "PRODUCT" => "product".into(),
        _ => label.to_ascii_lowercase(),
    }
}

/// Gold metadata from a CSV with a header row: a `path` (or `id`) column naming the document,
/// one column per field. Empty cells are left out; in the columns `authors`, `parties` and
/// `keywords` (and any other in `list_fields`) values are separated by `;`.
pub fn metadata_csv(text: &str, list_fields: &[&str]) -> Result<Vec<GoldDocument>, GoldError> {
    let mut reader = csv::ReaderBuilder::new()
        .flexible(false)
        .from_reader(text.as_bytes());
    let err = |line: u64, message: String| GoldError {
        line: line as usize,
        message,
    };
    let headers = reader.headers().map_err(|e| err(1, e.to_string()))?.clone();
    if !headers.iter().any(|h| h == "path" || h == "id") {
        return Err(err(1, "the header needs a `path` or an `id` column".into()));
    }
    let lists = ["authors", "parties", "keywords"];
    let mut out = Vec::new();
    for record in reader.records() {
        let record =
            record.map_err(|e| err(e.position().map_or(0, |p| p.line()), e.to_string()))?;
        let line = record.position().map_or(0, |p| p.line());
        let mut document = DocRef::default();
        let mut fields = Map::new();
        for (h, cell) in headers.iter().zip(record.iter()) {
            let cell = cell.trim();
            match h {
                "path" if !cell.is_empty() => document.path = Some(cell.to_owned()),
                "id" if !cell.is_empty() => document.id = Some(cell.to_owned()),
                "path" | "id" => {}
                _ if cell.is_empty() => {}
                f if lists.contains(&f) || list_fields.contains(&f) => {
                    let items: Vec<Value> = cell
                        .split(';')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(|s| Value::String(s.to_owned()))
                        .collect();
                    fields.insert(f.to_owned(), Value::Array(items));
                }
                f => {
                    fields.insert(f.to_owned(), Value::String(cell.to_owned()));
                }
            }
        }
        if document.path.is_none() && document.id.is_none() {
            return Err(err(line, "a row with no path or id".into()));
        }
        out.push(GoldDocument {
            document,
            metadata: Some(fields),
            ..GoldDocument::default()
        });
    }
    Ok(out)
}

/// Lines for the same document merged: entities, metadata fields and summaries of later lines
/// join or replace those of earlier ones.
pub fn merge(lines: Vec<GoldDocument>) -> Vec<GoldDocument> {
    let mut out: Vec<GoldDocument> = Vec::new();
    for g in lines {
        let same = out.iter_mut().find(|o| {
            (o.document.path.is_some() && o.document.path == g.document.path)
                || (o.document.id.is_some() && o.document.id == g.document.id)
        });
        match same {
            None => out.push(g),
            Some(o) => {
                if let Some(e) = g.entities {
                    o.entities.get_or_insert_with(Vec::new).extend(e);
                }
                if let Some(m) = g.metadata {
                    o.metadata.get_or_insert_with(Map::new).extend(m);
                }
                if let Some(s) = g.summaries {
                    o.summaries.get_or_insert_with(Vec::new).extend(s);
                }
                if o.document.id.is_none() {
                    o.document.id = g.document.id;
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bio_tags_become_entities_with_pagemill_types() {
        let text = "-DOCSTART- -X- O O\n\nPrepared NNP O\nby IN O\nHelena NNP B-PER\nKowalczyk NNP I-PER\n\
                    for IN O\nthe DT O\nVistula NNP B-ORG\nBasin NNP I-ORG\nAuthority NNP I-ORG\n. . O\n\n\
                    Cost NN O\nPLN NNP B-MONEY\n214,000 CD I-MONEY\nin IN O\nKraków NNP I-LOC\nand CC O\nTarnobrzeg NNP B-LOC\n";
        let e = conll_entities(text).unwrap();
        let got: Vec<(&str, &str)> = e
            .iter()
            .map(|e| (e.text.as_str(), e.kind.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("Helena Kowalczyk", "person"),
                ("Vistula Basin Authority", "organization"),
                ("PLN 214,000", "money"),
                ("Kraków", "location"),
                ("Tarnobrzeg", "location"),
            ]
        );
        assert_eq!(conll_entities("word\n").unwrap_err().line, 1);
        assert!(
            conll_entities("word X-PER\n")
                .unwrap_err()
                .message
                .contains("X-PER")
        );
    }

    #[test]
    fn a_metadata_csv_becomes_gold_lines_with_lists() {
        let text = "path,title,authors,date\n\
                    docs/zoo.pdf,\"zoo: An S3 Class, and Methods\",Achim Zeileis; Gabor Grothendieck,2005-03-01\n\
                    docs/party.pdf,party,,\n";
        let g = metadata_csv(text, &[]).unwrap();
        assert_eq!(g.len(), 2);
        let m = g[0].metadata.as_ref().unwrap();
        assert_eq!(m["title"], "zoo: An S3 Class, and Methods");
        assert_eq!(
            m["authors"],
            serde_json::json!(["Achim Zeileis", "Gabor Grothendieck"])
        );
        assert!(
            !g[1].metadata.as_ref().unwrap().contains_key("authors"),
            "empty cells are left out"
        );
        assert!(metadata_csv("title\nx\n", &[]).is_err());
        // Entities from one source and metadata from another make one line per document.
        let mut with_entities = g[1].clone();
        with_entities.metadata = None;
        with_entities.entities = Some(conll_entities("party NNP B-PRODUCT\n").unwrap());
        let merged = merge(vec![g[0].clone(), g[1].clone(), with_entities]);
        assert_eq!(merged.len(), 2);
        assert_eq!(merged[1].entities.as_ref().unwrap()[0].kind, "product");
        assert_eq!(merged[1].metadata.as_ref().unwrap()["title"], "party");
    }
}
