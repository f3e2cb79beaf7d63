//! What simulated answers say, and how many tokens they are.
//!
//! Token counts use OpenAI's `o200k_base` encoding, the same one pagemill's client uses by
//! default, so a prompt pagemill sized to N tokens is N tokens here too. Plain answers are made
//! of words that are one token each, so an answer of exactly `max_tokens` tokens is exact.
//! JSON answers are schema-valid instances built from the prompt's own words, so the pipeline
//! can be tested end to end — entities it asks for appear in its document.

use rand::Rng;
use serde_json::{Map, Value, json};
use tiktoken_rs::CoreBPE;

use pagemill_client::wire::Message;

fn bpe() -> &'static CoreBPE {
    tiktoken_rs::o200k_base_singleton()
}

/// Tokens in a text.
pub fn count(text: &str) -> u64 {
    if text.is_empty() {
        0
    } else {
        bpe().encode_ordinary(text).len() as u64
    }
}

/// The prompt's token ids (what the prefix cache hashes) and its token count under the chat
/// format's framing (3 a message + 3), matching `pagemill_client::Tokenizer::count_messages`.
pub fn prompt_tokens(messages: &[Message]) -> (Vec<u32>, u64) {
    let mut ids = Vec::new();
    for m in messages {
        ids.extend(bpe().encode_ordinary(&m.role));
        ids.extend(bpe().encode_ordinary(&m.content));
    }
    let n = ids.len() as u64 + 3 * messages.len() as u64 + 3;
    (ids, n)
}

fn words() -> &'static [&'static str] {
    pagemill_client::usage::one_token_words()
}

/// A plain answer of exactly `n` tokens, one piece a token.
pub fn plain_text(n: usize, rng: &mut impl Rng) -> Vec<String> {
    let w = words();
    (0..n)
        .map(|i| {
            let word = w
                .get(rng.random_range(0..w.len().max(1)))
                .copied()
                .unwrap_or("the");
            if i == 0 {
                word.to_owned()
            } else {
                format!(" {word}")
            }
        })
        .collect()
}

/// Splits a text into pieces of `per_piece` tokens each (the last may be shorter), never
/// splitting a UTF-8 character; returns each piece with its token count.
pub fn token_pieces(text: &str, per_piece: usize) -> Vec<(String, u32)> {
    let ids = bpe().encode_ordinary(text);
    let mut out = Vec::new();
    let mut carry: Vec<u8> = Vec::new();
    let mut carried_tokens = 0u32;
    for group in ids.chunks(per_piece.max(1)) {
        carry.extend(bpe().decode_bytes(group).unwrap_or_default());
        carried_tokens += group.len() as u32;
        // Emit the longest valid UTF-8 prefix; keep a split character for the next piece.
        let valid = match std::str::from_utf8(&carry) {
            Ok(_) => carry.len(),
            Err(e) => e.valid_up_to(),
        };
        if valid > 0 {
            let rest = carry.split_off(valid);
            out.push((String::from_utf8_lossy(&carry).into_owned(), carried_tokens));
            carry = rest;
            carried_tokens = 0;
        }
    }
    if !carry.is_empty() || carried_tokens > 0 {
        match out.last_mut() {
            Some(last) if carry.is_empty() => last.1 += carried_tokens,
            _ => out.push((String::from_utf8_lossy(&carry).into_owned(), carried_tokens)),
        }
    }
    out
}

/// The user message a pipeline's items are in: the last one holding `<item id=`, so a re-ask
/// (the earlier answer, then "that answer cannot be used…") still answers the items.
fn items_message(messages: &[Message]) -> Option<&Message> {
    let users = || messages.iter().rev().filter(|m| m.role == "user");
    users()
        .find(|m| m.content.contains("<item id=\""))
        .or_else(|| users().next())
}

/// The conversation a completion prompt writes in a chat template (ChatML's
/// `<|im_start|>role` … `<|im_end|>`, or Llama 3's headers), read back into messages as the
/// model would read it; any other prompt is one user message.
pub fn prompt_messages(prompt: &str) -> Vec<Message> {
    let turns: Vec<(&str, &str)> = if prompt.contains("<|im_start|>") {
        prompt
            .split("<|im_start|>")
            .skip(1)
            .filter_map(|t| {
                let (role, rest) = t.split_once('\n')?;
                Some((role.trim(), rest.split("<|im_end|>").next().unwrap_or(rest)))
            })
            .collect()
    } else if prompt.contains("<|start_header_id|>") {
        prompt
            .split("<|start_header_id|>")
            .skip(1)
            .filter_map(|t| {
                let (role, rest) = t.split_once("<|end_header_id|>")?;
                let rest = rest.strip_prefix("\n\n").unwrap_or(rest);
                Some((role.trim(), rest.split("<|eot_id|>").next().unwrap_or(rest)))
            })
            .collect()
    } else {
        return vec![Message::user(prompt)];
    };
    let messages: Vec<Message> = turns
        .into_iter()
        // The generation prompt: the assistant's turn, still empty.
        .filter(|(role, text)| !(text.is_empty() && *role == "assistant"))
        .map(|(role, text)| Message {
            role: role.to_owned(),
            content: text.to_owned(),
        })
        .collect();
    if messages.is_empty() {
        return vec![Message::user(prompt)];
    }
    messages
}

/// The words an answer may quote: those of the last user message (where the document goes;
/// with items, the one holding them), else of the whole prompt.
pub fn source_words(messages: &[Message]) -> Vec<String> {
    let last_user = items_message(messages);
    let text = match last_user {
        Some(m) if !m.content.trim().is_empty() => m.content.as_str(),
        _ => {
            return messages
                .iter()
                .flat_map(|m| m.content.split_whitespace())
                .map(str::to_owned)
                .collect();
        }
    };
    text.split_whitespace().map(str::to_owned).collect()
}

/// A JSON answer: an instance of the request's `json_schema`, or `{"text": …}` for
/// `json_object`.
pub fn json_answer(response_format: &Value, words: &[String], rng: &mut impl Rng) -> Value {
    let schema = response_format
        .get("json_schema")
        .and_then(|s| s.get("schema"))
        .filter(|s| s.is_object());
    match schema {
        Some(schema) => instance(schema, schema, words, rng, 0),
        None => json!({ "text": phrase(words, rng, 8) }),
    }
}

/// The items of a pipeline prompt (`<item id="ID">` … `</item>` in the last user message), as
/// (id, text).
pub fn prompt_items(messages: &[Message]) -> Vec<(String, String)> {
    prompt_items_exact(messages)
        .into_iter()
        .map(|(id, text)| (id, text.trim().to_owned()))
        .collect()
}

/// The items as [`prompt_items`] finds them, each text exactly as the pipeline put it between
/// its tags (less the one line break on each side), so character offsets into a page hold.
pub fn prompt_items_exact(messages: &[Message]) -> Vec<(String, String)> {
    let Some(user) = items_message(messages) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut rest = user.content.as_str();
    while let Some(open) = rest.find("<item id=\"") {
        let after = &rest[open + 10..];
        let Some(q) = after.find("\">") else { break };
        let id = &after[..q];
        let body = &after[q + 2..];
        let Some(close) = body.find("</item>") else {
            break;
        };
        let text = &body[..close];
        let text = text.strip_prefix('\n').unwrap_or(text);
        let text = text.strip_suffix('\n').unwrap_or(text);
        out.push((id.to_owned(), text.to_owned()));
        rest = &body[close + 7..];
    }
    out
}

/// A packed answer: when the schema asks for `{"items": [{"id", …}]}` and the prompt carries
/// items, one entry per item with its id, quoting only that item's words. Each entry's draws
/// come from a source seeded by the item alone (`seed`, id, text), so an item gets the same
/// answer whatever pack it travels in and whenever it is asked — the ground truth that lets
/// tests compare an interrupted run with an uninterrupted one.
pub fn packed_answer(response_format: &Value, messages: &[Message], seed: u64) -> Option<Value> {
    use rand::SeedableRng;
    use std::hash::{Hash, Hasher};
    let schema = response_format.get("json_schema")?.get("schema")?;
    let entry = resolve(schema.get("properties")?.get("items")?, schema).get("items")?;
    let entry = resolve(entry, schema);
    entry.get("properties")?.get("id")?;
    let items = prompt_items(messages);
    if items.is_empty() {
        return None;
    }
    let answers: Vec<Value> = items
        .iter()
        .map(|(id, text)| {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            (seed, id, text).hash(&mut h);
            let mut rng = rand::rngs::SmallRng::seed_from_u64(h.finish());
            let words: Vec<String> = text.split_whitespace().map(str::to_owned).collect();
            let mut v = instance(entry, schema, &words, &mut rng, 1);
            if let Some(o) = v.as_object_mut() {
                o.insert("id".into(), Value::String(id.clone()));
            }
            v
        })
        .collect();
    Some(json!({ "items": answers }))
}

/// A run of 1..=max consecutive words of the source, cleaned of edge punctuation.
fn phrase(words: &[String], rng: &mut impl Rng, max: usize) -> String {
    if words.is_empty() {
        return "text".into();
    }
    let len = rng.random_range(1..=max.max(1)).min(words.len());
    let start = rng.random_range(0..=words.len() - len);
    let text = words[start..start + len].join(" ");
    let trimmed = text.trim_matches(|c: char| !c.is_alphanumeric());
    if trimmed.is_empty() {
        words[start].clone()
    } else {
        trimmed.to_owned()
    }
}

fn resolve<'a>(schema: &'a Value, root: &'a Value) -> &'a Value {
    let mut cur = schema;
    for _ in 0..16 {
        let Some(r) = cur.get("$ref").and_then(Value::as_str) else {
            return cur;
        };
        let Some(path) = r.strip_prefix("#/") else {
            return cur;
        };
        let mut target = root;
        for seg in path.split('/') {
            match target.get(seg) {
                Some(t) => target = t,
                None => return cur,
            }
        }
        cur = target;
    }
    cur
}

/// A value valid for `schema` (the subset of JSON Schema that structured outputs use).
fn instance(
    schema: &Value,
    root: &Value,
    words: &[String],
    rng: &mut impl Rng,
    depth: usize,
) -> Value {
    let schema = resolve(schema, root);
    if depth > 8 {
        return Value::Null;
    }
    if let Some(c) = schema.get("const") {
        return c.clone();
    }
    if let Some(options) = schema
        .get("enum")
        .and_then(Value::as_array)
        .filter(|a| !a.is_empty())
    {
        return options[rng.random_range(0..options.len())].clone();
    }
    for key in ["anyOf", "oneOf", "allOf"] {
        if let Some(alts) = schema.get(key).and_then(Value::as_array) {
            let pick = alts
                .iter()
                .find(|a| resolve(a, root).get("type") != Some(&json!("null")));
            if let Some(a) = pick.or(alts.first()) {
                return instance(a, root, words, rng, depth + 1);
            }
        }
    }
    let ty = match schema.get("type") {
        Some(Value::String(t)) => t.as_str(),
        Some(Value::Array(ts)) => ts
            .iter()
            .filter_map(Value::as_str)
            .find(|t| *t != "null")
            .unwrap_or("null"),
        _ if schema.get("properties").is_some() => "object",
        _ if schema.get("items").is_some() => "array",
        _ => "string",
    };
    let num = |k: &str| schema.get(k).and_then(Value::as_f64);
    match ty {
        "object" => {
            let mut out = Map::new();
            let required: Vec<&str> = schema
                .get("required")
                .and_then(Value::as_array)
                .map(|r| r.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                for (name, sub) in props {
                    if required.contains(&name.as_str()) || rng.random_bool(0.7) {
                        out.insert(name.clone(), instance(sub, root, words, rng, depth + 1));
                    }
                }
            }
            Value::Object(out)
        }
        "array" => {
            let min = num("minItems").unwrap_or(0.0) as usize;
            let max = num("maxItems").map_or(min + 4, |m| m as usize).max(min);
            let n = rng.random_range(min..=max.min(min + 4));
            let items = schema
                .get("items")
                .cloned()
                .unwrap_or(json!({"type": "string"}));
            Value::Array(
                (0..n)
                    .map(|_| instance(&items, root, words, rng, depth + 1))
                    .collect(),
            )
        }
        "integer" => {
            let lo = num("minimum").unwrap_or(0.0).ceil() as i64;
            let hi = num("maximum").unwrap_or(lo as f64 + 100.0).floor() as i64;
            json!(rng.random_range(lo..=hi.max(lo)))
        }
        "number" => {
            let lo = num("minimum").unwrap_or(0.0);
            let hi = num("maximum").unwrap_or(lo + 100.0).max(lo);
            json!(((lo + rng.random::<f64>() * (hi - lo)) * 100.0).round() / 100.0)
        }
        "boolean" => json!(rng.random_bool(0.5)),
        "null" => Value::Null,
        _ => {
            let mut s = match schema.get("format").and_then(Value::as_str) {
                Some("date") => format!(
                    "20{:02}-{:02}-{:02}",
                    rng.random_range(0..30),
                    rng.random_range(1..13),
                    rng.random_range(1..29)
                ),
                Some("date-time") => "2024-01-15T09:30:00Z".to_owned(),
                Some("email") => "someone@example.org".to_owned(),
                Some("uri") => "https://example.org/".to_owned(),
                _ => phrase(words, rng, 4),
            };
            if let Some(max) = num("maxLength") {
                s = s.chars().take(max as usize).collect();
            }
            let min = num("minLength").unwrap_or(0.0) as usize;
            while s.chars().count() < min {
                s.push('x');
            }
            Value::String(s)
        }
    }
}

/// Spoils a JSON answer the way weak models do: cut short, an item missing or repeated, or an
/// extra field. Returns the text and what was done.
pub fn sloppy(answer: &Value, rng: &mut impl Rng) -> (String, &'static str) {
    let text = answer.to_string();
    match rng.random_range(0..4) {
        0 => (
            text[..floor_char(&text, text.len() * 3 / 5)].to_owned(),
            "invalid_json",
        ),
        kind @ (1 | 2) => {
            let mut v = answer.clone();
            if let Some(arr) = first_array(&mut v).filter(|a| !a.is_empty()) {
                if kind == 1 {
                    arr.pop();
                    return (v.to_string(), "missing_item");
                }
                let dup = arr[0].clone();
                arr.push(dup);
                return (v.to_string(), "extra_item");
            }
            (
                text[..floor_char(&text, text.len() / 2)].to_owned(),
                "invalid_json",
            )
        }
        _ => {
            let mut v = answer.clone();
            if let Some(o) = v.as_object_mut() {
                o.insert("unexpected".into(), json!(true));
            }
            (v.to_string(), "extra_field")
        }
    }
}

fn floor_char(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn first_array(v: &mut Value) -> Option<&mut Vec<Value>> {
    match v {
        Value::Array(_) => v.as_array_mut(),
        Value::Object(o) => o.values_mut().find_map(first_array),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::SmallRng;

    #[test]
    fn a_templated_prompt_reads_back_into_its_conversation() {
        let chatml = "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nTwo\nlines<|im_end|>\n<|im_start|>assistant\n";
        let llama3 = "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nTwo\nlines<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n";
        for p in [chatml, llama3] {
            assert_eq!(
                prompt_messages(p),
                vec![Message::system("Be brief."), Message::user("Two\nlines")],
                "{p}"
            );
        }
        assert_eq!(
            prompt_messages("Once upon"),
            vec![Message::user("Once upon")]
        );
    }

    #[test]
    fn plain_answers_are_exactly_the_requested_tokens() {
        let mut rng = SmallRng::seed_from_u64(3);
        for n in [1, 2, 17, 256] {
            let pieces = plain_text(n, &mut rng);
            assert_eq!(pieces.len(), n);
            assert_eq!(count(&pieces.concat()), n as u64, "n = {n}");
        }
        assert!(words().len() > 40);
    }

    #[test]
    fn token_pieces_cover_the_text_with_the_right_counts() {
        let text = "Grüße aus Köln — 日本語のテキスト 🎉 and plain words";
        for per in [1, 2, 3] {
            let pieces = token_pieces(text, per);
            let joined: String = pieces.iter().map(|p| p.0.as_str()).collect();
            assert_eq!(joined, text);
            let tokens: u64 = pieces.iter().map(|p| u64::from(p.1)).sum();
            assert_eq!(tokens, count(text));
        }
    }

    #[test]
    fn packed_answers_carry_every_item_id_and_do_not_depend_on_the_pack() {
        let schema = json!({"type": "object", "properties": {"items": {"type": "array", "items": {
            "type": "object",
            "properties": {"id": {"type": "string"}, "entities": {"type": "array", "minItems": 1, "items": {
                "type": "object", "properties": {"text": {"type": "string"}, "type": {"enum": ["person"]}},
                "required": ["text", "type"]}}},
            "required": ["id", "entities"]}}}, "required": ["items"]});
        let format = json!({"type": "json_schema", "json_schema": {"schema": schema}});
        let item = |id: &str, text: &str| format!("<item id=\"{id}\">\n{text}\n</item>\n");
        let a = item("d1:p1", "Alpha beta gamma delta.");
        let b = item("d1:p2", "Epsilon zeta eta theta.");
        let pack = |body: String| {
            vec![
                Message::system("rules"),
                Message::user(format!("Items:\n{body}")),
            ]
        };
        let both = packed_answer(&format, &pack(format!("{a}\n{b}")), 7).unwrap();
        let alone = packed_answer(&format, &pack(b.clone()), 7).unwrap();
        let entries = both["items"].as_array().unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0]["id"], "d1:p1");
        assert_eq!(entries[1]["id"], "d1:p2");
        assert_eq!(
            entries[1], alone["items"][0],
            "same item, same answer, any pack"
        );
        for e in entries[1]["entities"].as_array().unwrap() {
            let t = e["text"].as_str().unwrap();
            assert!(
                "Epsilon zeta eta theta".contains(t),
                "quotes its own item: {t}"
            );
        }
        let plain = json!({"type": "json_schema", "json_schema": {"schema": {"type": "object"}}});
        assert!(packed_answer(&plain, &pack(a), 7).is_none());
    }

    #[test]
    fn prompt_count_matches_the_clients_tokenizer() {
        let msgs = vec![
            Message::system("You extract entities."),
            Message::user("Acme Corp hired Jane Doe in Paris."),
        ];
        let client = pagemill_client::Tokenizer::o200k().count_messages(&msgs);
        assert_eq!(prompt_tokens(&msgs).1, client);
    }

    #[test]
    fn schema_instances_are_valid_and_quote_the_prompt() {
        let schema = json!({
            "type": "object",
            "properties": {
                "entities": {"type": "array", "minItems": 2, "maxItems": 5, "items": {"$ref": "#/$defs/entity"}},
                "date": {"type": "string", "format": "date"},
                "pages": {"type": "integer", "minimum": 1, "maximum": 9},
                "kind": {"enum": ["memo", "contract"]},
                "note": {"type": ["string", "null"], "maxLength": 5}
            },
            "required": ["entities", "date", "pages", "kind", "note"],
            "additionalProperties": false,
            "$defs": {"entity": {"type": "object", "properties": {
                "text": {"type": "string"}, "type": {"enum": ["person", "org"]}},
                "required": ["text", "type"]}}
        });
        let words: Vec<String> = "Acme Corp hired Jane Doe in Paris"
            .split(' ')
            .map(String::from)
            .collect();
        let source = words.join(" ");
        let mut rng = SmallRng::seed_from_u64(11);
        for _ in 0..50 {
            let v = json_answer(
                &json!({"type": "json_schema", "json_schema": {"schema": schema}}),
                &words,
                &mut rng,
            );
            let ents = v["entities"].as_array().unwrap();
            assert!((2..=5).contains(&ents.len()));
            for e in ents {
                assert!(source.contains(e["text"].as_str().unwrap()), "{e}");
                assert!(["person", "org"].contains(&e["type"].as_str().unwrap()));
            }
            assert!((1..=9).contains(&v["pages"].as_i64().unwrap()));
            assert!(v["note"].as_str().unwrap().chars().count() <= 5);
            assert_eq!(v["date"].as_str().unwrap().len(), 10);
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_answer() {
        let words: Vec<String> = vec!["a".into(), "b".into(), "c".into()];
        let f = json!({"type": "json_object"});
        let a = json_answer(&f, &words, &mut SmallRng::seed_from_u64(5));
        let b = json_answer(&f, &words, &mut SmallRng::seed_from_u64(5));
        assert_eq!(a, b);
    }

    #[test]
    fn sloppy_answers_are_spoiled_in_each_way() {
        let good = json!({"items": [1, 2, 3]});
        let mut seen = std::collections::HashSet::new();
        let mut rng = SmallRng::seed_from_u64(1);
        for _ in 0..200 {
            let (text, kind) = sloppy(&good, &mut rng);
            seen.insert(kind);
            match kind {
                "invalid_json" => assert!(serde_json::from_str::<Value>(&text).is_err()),
                "missing_item" => assert_eq!(
                    serde_json::from_str::<Value>(&text).unwrap()["items"]
                        .as_array()
                        .unwrap()
                        .len(),
                    2
                ),
                "extra_item" => assert_eq!(
                    serde_json::from_str::<Value>(&text).unwrap()["items"]
                        .as_array()
                        .unwrap()
                        .len(),
                    4
                ),
                "extra_field" => assert_eq!(
                    serde_json::from_str::<Value>(&text).unwrap()["unexpected"],
                    true
                ),
                other => panic!("{other}"),
            }
        }
        assert_eq!(seen.len(), 4);
    }
}
