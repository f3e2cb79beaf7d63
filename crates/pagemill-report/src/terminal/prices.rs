//! What `pagemill prices` prints: each endpoint's prices and where they come from, or a
//! model's entries in the price tables.

use pagemill_client::prices::Entry;
use pagemill_client::{Endpoint, Prices};

use super::{right, table};
use crate::fmt::{count, inert, opt, pct, price};

/// Input, cached, cache write, output (USD per 1M tokens) and the batch discount.
fn cells(p: &Prices) -> [String; 5] {
    [
        opt(p.input, price),
        opt(p.cached_input, price),
        opt(p.cache_write, price),
        opt(p.output, price),
        opt(p.batch_discount, |d| format!("−{}", pct(d))),
    ]
}

const PRICE_COLUMNS: [&str; 5] = ["input", "cached", "cache write", "output", "batch"];

/// Price table entries (`pagemill prices MODEL`); `true` marks the user's imported table.
pub fn entries(entries: &[(&Entry, bool)]) -> String {
    let mut header = vec!["provider", "model"];
    header.extend(PRICE_COLUMNS);
    header.extend(["context", "as of", "from"]);
    let mut t = table(&header);
    for (e, imported) in entries {
        let mut row = vec![inert(&e.provider), inert(&e.model)];
        row.extend(cells(&e.prices()));
        row.extend([
            e.context_window.map_or_else(|| "–".into(), count),
            inert(&e.as_of),
            if *imported { "imported" } else { "pagemill" }.to_owned(),
        ]);
        t.add_row(row);
    }
    right(&mut t, 2);
    format!("{t}\nUSD per 1M tokens; sources in the tables' `source` fields\n")
}

/// What each endpoint will be charged, and from where (`pagemill prices`).
pub fn endpoints(endpoints: &[Endpoint]) -> String {
    if endpoints.is_empty() {
        return "no endpoint configured".into();
    }
    let mut header = vec!["endpoint", "model"];
    header.extend(PRICE_COLUMNS);
    header.push("prices from");
    let mut t = table(&header);
    for e in endpoints {
        let mut row = vec![inert(&e.name), inert(&e.model)];
        row.extend(cells(&e.prices));
        row.push(e.price_source.to_string());
        t.add_row(row);
    }
    t.to_string()
}
