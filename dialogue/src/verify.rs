//! The grounding verifier: an answer is checked against the database, not against
//! what the code that wrote it says it used.
//!
//! It takes only the final text, the products the answer is about, the values the
//! dialogue derived (each with its inputs), the shopper's question and a snapshot of
//! the catalog. Then:
//! - every product the answer is about must exist in the snapshot;
//! - every amount of money in the text must be one of those products' prices now
//!   (list, variant, or promotional price on today's date) in the product's own
//!   currency, or a derived value recomputed from current prices, or a budget the
//!   shopper stated in this question;
//! - every other number must be one of those products' stock counts, or sit inside
//!   one of their stored strings (name, aisle, promotion, end date, ...);
//! - every remaining word must be a word of the answer templates (read from the
//!   dialogue's own source at build time) or a word the shopper said: so a product
//!   name that is not in the catalog, or a claim no template makes, is caught.
//!
//! An answer that fails is never shown (see [`crate::Assistant::ask`]).

use std::collections::HashSet;
use std::sync::LazyLock;

use aisle_catalog::{CatalogView, Product};
use serde::Serialize;

/// A value the dialogue computed rather than read, with what it was computed from.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Derived {
    /// The difference between two products' list prices, in the cheaper one's
    /// currency.
    PriceDifference { a: String, b: String },
    /// An amount of money the shopper said in this question (a budget), in cents of
    /// the store's currency.
    ShopperAmount { cents: i64, currency: String },
}

/// Why an answer was withheld.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Ungrounded {
    #[error("the answer is about {0}, which is not in the catalog")]
    UnknownProduct(String),
    #[error("{0} is not a price of the products the answer is about")]
    Money(String),
    #[error("the number {0} is not in the data of the products the answer is about")]
    Number(String),
    #[error("the word {0:?} is neither the store's data nor the assistant's own")]
    Word(String),
    #[error("the derived value {0} cannot be recomputed from its inputs")]
    Derived(String),
}

/// Words of the answer templates: every word inside a string literal of the
/// dialogue's source. Read at build time, so a new template needs no list kept.
static TEMPLATE_WORDS: LazyLock<HashSet<String>> = LazyLock::new(|| {
    let mut words = HashSet::new();
    for src in [include_str!("lib.rs"), include_str!("fallback.rs")] {
        let mut in_str = false;
        let mut escaped = false;
        let mut cur = String::new();
        for c in src.chars() {
            if in_str {
                if escaped {
                    escaped = false;
                    continue;
                }
                match c {
                    '\\' => escaped = true,
                    '"' => {
                        in_str = false;
                        for w in split_words(&cur) {
                            words.insert(w);
                        }
                        cur.clear();
                    }
                    c => cur.push(c),
                }
            } else if c == '"' {
                in_str = true;
            }
        }
    }
    words
});

fn split_words(text: &str) -> Vec<String> {
    text.split(|c: char| !(c.is_alphabetic() || c == '\''))
        .map(|w| w.trim_matches('\'').to_lowercase())
        .filter(|w| !w.is_empty())
        .collect()
}

/// Currency symbols as `format_price` writes them, and the codes each may stand for.
fn symbol_codes(symbol: &str) -> &'static [&'static str] {
    match symbol {
        "$" => &["USD", "CAD", "AUD"],
        "€" => &["EUR"],
        "£" => &["GBP"],
        _ => &[],
    }
}

/// One amount of money as written: (currency symbol or code, cents, the text).
fn money_in(text: &str) -> Vec<(String, i64, std::ops::Range<usize>)> {
    let mut out = Vec::new();
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let mut i = 0;
    while i < chars.len() {
        let (at, c) = chars[i];
        // "$3.49", "€0.05", "£12.00", or "CHF 3.49" (format_price's other currencies).
        let (symbol, num_from) = if matches!(c, '$' | '€' | '£') {
            (c.to_string(), i + 1)
        } else if i + 3 < chars.len()
            && chars[i..i + 3].iter().all(|(_, x)| x.is_ascii_uppercase())
            && chars[i + 3].1 == ' '
            && (i == 0 || !chars[i - 1].1.is_alphanumeric())
            && chars.get(i + 4).is_some_and(|(_, x)| x.is_ascii_digit())
        {
            (chars[i..i + 3].iter().map(|(_, x)| *x).collect(), i + 4)
        } else {
            i += 1;
            continue;
        };
        let mut j = num_from;
        let mut digits = String::new();
        while let Some((_, d)) = chars.get(j) {
            if d.is_ascii_digit()
                || (*d == '.' && chars.get(j + 1).is_some_and(|(_, n)| n.is_ascii_digit()))
            {
                digits.push(*d);
                j += 1;
            } else {
                break;
            }
        }
        if digits.is_empty() {
            i += 1;
            continue;
        }
        let cents = match digits.split_once('.') {
            Some((w, f)) if f.len() == 2 => w
                .parse::<i64>()
                .ok()
                .and_then(|w| w.checked_mul(100))
                .and_then(|w| f.parse::<i64>().ok().map(|f| w + f)),
            None => digits.parse::<i64>().ok().and_then(|w| w.checked_mul(100)),
            _ => None,
        };
        let end = chars.get(j).map_or(text.len(), |(b, _)| *b);
        out.push((symbol, cents.unwrap_or(-1), at..end));
        i = j;
    }
    out
}

/// Strings of a product's row, as they may appear in an answer.
fn row_strings<'a>(view: &'a CatalogView, p: &'a Product, today: &str) -> Vec<&'a str> {
    let mut v = vec![p.name.as_str(), p.aisle.as_str(), p.sku.as_str()];
    v.extend(p.brand.as_deref());
    v.extend(p.department.as_deref());
    v.extend(p.tags.iter().map(String::as_str));
    v.extend(p.allergens.iter().map(String::as_str));
    v.extend(view.stock(&p.sku).iter().map(|s| s.variant.as_str()));
    if let Some(pr) = view.active_promotion(&p.sku, today) {
        v.push(pr.description.as_str());
        v.push(pr.ends.as_str());
    }
    v.retain(|s| !s.trim().is_empty());
    v
}

/// Checks `text`, an answer about `products` to `question`, against `view` on `today`.
pub fn verify(
    view: &CatalogView,
    today: &str,
    question: &str,
    text: &str,
    products: &[String],
    derived: &[Derived],
) -> Result<(), Ungrounded> {
    let mut rows = Vec::with_capacity(products.len());
    for sku in products {
        rows.push(
            view.product(sku)
                .ok_or_else(|| Ungrounded::UnknownProduct(sku.clone()))?,
        );
    }
    // Money the answer may state: (currency code, cents).
    let mut money: Vec<(String, i64)> = Vec::new();
    let mut counts: HashSet<String> = HashSet::new();
    let mut strings: Vec<&str> = Vec::new();
    for p in &rows {
        money.push((p.currency.clone(), p.price_cents));
        for s in view.stock(&p.sku) {
            counts.insert(s.quantity.to_string());
            if let Some(c) = s.price_cents {
                money.push((p.currency.clone(), c));
            }
        }
        counts.insert(view.total_stock(&p.sku).to_string());
        if let Some(pr) = view.active_promotion(&p.sku, today) {
            money.push((p.currency.clone(), pr.price_for(p.price_cents)));
        }
        strings.extend(row_strings(view, p, today));
    }
    for d in derived {
        match d {
            Derived::PriceDifference { a, b } => {
                let (pa, pb) = match (view.product(a), view.product(b)) {
                    (Some(pa), Some(pb)) if pa.currency == pb.currency => (pa, pb),
                    _ => return Err(Ungrounded::Derived(format!("{d:?}"))),
                };
                money.push((pa.currency.clone(), (pa.price_cents - pb.price_cents).abs()));
            }
            Derived::ShopperAmount { cents, currency } => {
                // The shopper's own words must hold that amount.
                let said = crate::numbers(question).iter().any(|n| {
                    n.parse::<f64>()
                        .is_ok_and(|v| (v * 100.0).round() as i64 == *cents)
                });
                if !said {
                    return Err(Ungrounded::Derived(format!("{d:?}")));
                }
                money.push((currency.clone(), *cents));
            }
        }
    }

    // Stored strings first (longest first, so "Aisle 24: fresh fruits" goes before
    // "fruits"): what is inside them is the store's own data, numbers included.
    let lower = text.to_lowercase();
    let mut rest: Vec<char> = lower.chars().collect();
    let mut by_len: Vec<String> = strings.iter().map(|s| s.to_lowercase()).collect();
    by_len.sort_by_key(|s| std::cmp::Reverse(s.chars().count()));
    by_len.dedup();
    for s in &by_len {
        let needle: Vec<char> = s.chars().collect();
        if needle.is_empty() {
            continue;
        }
        let mut i = 0;
        while i + needle.len() <= rest.len() {
            if rest[i..i + needle.len()] == needle[..] {
                for c in &mut rest[i..i + needle.len()] {
                    *c = ' ';
                }
                i += needle.len();
            } else {
                i += 1;
            }
        }
    }
    let rest: String = rest.into_iter().collect();

    // Money, in the product's own currency.
    let mut blanked = rest.clone();
    for (symbol, cents, range) in money_in(&text_case(&rest, text)) {
        let codes: Vec<&str> = match symbol_codes(&symbol) {
            [] => vec![symbol.as_str()],
            c => c.to_vec(),
        };
        let ok = money
            .iter()
            .any(|(cur, c)| *c == cents && codes.contains(&cur.as_str()));
        if !ok {
            return Err(Ungrounded::Money(text[range].to_string()));
        }
        blanked.replace_range(range.clone(), &" ".repeat(range.len()));
    }
    // Every other number: a count of these products.
    for n in crate::numbers(&blanked) {
        if !counts.contains(&n) {
            return Err(Ungrounded::Number(n));
        }
    }
    // Every other word: the assistant's own, or the shopper's.
    let asked: HashSet<String> = split_words(question).into_iter().collect();
    for w in split_words(&blanked) {
        if !TEMPLATE_WORDS.contains(&w) && !asked.contains(&w) {
            return Err(Ungrounded::Word(w));
        }
    }
    Ok(())
}

/// `rest` (lower-cased, with stored strings blanked) with the original letter case
/// put back, so currency codes ("CHF 3.49") are found; byte offsets are unchanged
/// because only ASCII letters change case in money and codes.
fn text_case(rest: &str, original: &str) -> String {
    if rest.len() != original.len() {
        return rest.to_string();
    }
    rest.chars()
        .zip(original.chars())
        .map(|(r, o)| if r == ' ' && o != ' ' { ' ' } else { o })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_words_come_from_the_source() {
        for w in [
            "sorry", "is", "in", "stock", "cheaper", "usually", "until", "aisle",
        ] {
            assert!(TEMPLATE_WORDS.contains(w), "{w}");
        }
        assert!(!TEMPLATE_WORDS.contains("unicorn"));
    }

    #[test]
    fn money_is_read_with_its_currency() {
        let m = money_in("Milk is $3.49 (usually €4.00), or CHF 12.50; 20% off.");
        let got: Vec<(String, i64)> = m.into_iter().map(|(s, c, _)| (s, c)).collect();
        assert_eq!(
            got,
            vec![("$".into(), 349), ("€".into(), 400), ("CHF".into(), 1250)]
        );
    }
}
