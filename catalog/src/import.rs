//! `aisle catalog import FILE`: CSV or JSON Lines into the store database.
//!
//! Columns (CSV header or JSON keys): required `sku,name,price,stock,aisle`; optional
//! `brand,description,department,currency,tags,allergens,images,variant,variant_price,
//! promo_description,promo_price,promo_percent_off,promo_starts,promo_ends`. Lists
//! (tags, allergens, images) are `;`-separated (or JSON arrays). Several rows with one
//! sku and different `variant`s give stock per size. Every problem is reported with
//! its line number; a file with errors imports nothing unless bad rows are skipped.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use rusqlite::params;
use serde::{Deserialize, Serialize};

use super::{CatalogDb, CatalogError, Product, Promotion, Result, Variant};

const REQUIRED: &[&str] = &["sku", "name", "price", "stock", "aisle"];
const OPTIONAL: &[&str] = &[
    "brand",
    "description",
    "department",
    "currency",
    "tags",
    "allergens",
    "images",
    "variant",
    "variant_price",
    "promo_description",
    "promo_price",
    "promo_percent_off",
    "promo_starts",
    "promo_ends",
];

#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    pub skip_bad_rows: bool,
    /// Currency for rows without one.
    pub default_currency: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct RowProblem {
    pub line: u64,
    pub message: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, schemars::JsonSchema)]
pub struct ImportReport {
    pub rows: usize,
    pub products: usize,
    pub added: usize,
    pub updated: usize,
    pub unchanged: usize,
    pub skipped: Vec<RowProblem>,
    pub revision: u64,
}

/// One product as the file describes it (all its variant rows merged).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub product: Product,
    pub stock: Vec<Variant>,
    pub promotions: Vec<Promotion>,
}

fn cents(field: &str, v: &str) -> std::result::Result<i64, String> {
    let t = v.trim().trim_start_matches('$');
    let bad = || format!("`{field}` must be a price like 3.49, found {v:?}");
    let (whole, frac) = t.split_once('.').unwrap_or((t, ""));
    if whole.is_empty() && frac.is_empty() || frac.len() > 2 {
        return Err(bad());
    }
    let w: i64 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| bad())?
    };
    let f: i64 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<2}").parse().map_err(|_| bad())?
    };
    if w < 0 || whole.starts_with('-') {
        return Err(format!("`{field}` must not be negative, found {v:?}"));
    }
    w.checked_mul(100)
        .and_then(|x| x.checked_add(f))
        .ok_or_else(bad)
}

/// No grocery item costs more than this (100,000.00 in the catalog's currency): a
/// larger price is a slipped decimal point, not a product.
pub const MAX_PRICE_CENTS: i64 = 10_000_000;

fn is_date(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && s.split('-').all(|p| p.chars().all(|c| c.is_ascii_digit()))
}

fn list(v: Option<&String>) -> Vec<String> {
    v.map(|s| {
        s.split(';')
            .map(|x| x.trim().to_lowercase())
            .filter(|x| !x.is_empty())
            .collect()
    })
    .unwrap_or_default()
}

/// Validates one row's fields.
fn parse_row(
    f: &HashMap<String, String>,
    default_currency: &str,
) -> std::result::Result<Record, String> {
    let get = |k: &str| f.get(k).map(|s| s.trim()).filter(|s| !s.is_empty());
    let mut missing: Vec<&str> = REQUIRED
        .iter()
        .copied()
        .filter(|k| get(k).is_none())
        .collect();
    if !missing.is_empty() {
        missing.sort_unstable();
        return Err(format!("missing {}", missing.join(", ")));
    }
    let text = |k: &str| get(k).map(str::to_string);
    let price_cents = cents("price", get("price").unwrap_or_default())?;
    if price_cents > MAX_PRICE_CENTS {
        return Err(format!(
            "`price` {} is above {}: check the decimal point",
            get("price").unwrap_or_default(),
            MAX_PRICE_CENTS / 100
        ));
    }
    let stock_s = get("stock").unwrap_or_default();
    let quantity: i64 = stock_s
        .parse()
        .map_err(|_| format!("`stock` must be a whole number, found {stock_s:?}"))?;
    if quantity < 0 {
        return Err(format!("`stock` must not be negative, found {quantity}"));
    }
    let currency = get("currency").unwrap_or(default_currency).to_uppercase();
    if currency.len() != 3 || !currency.chars().all(|c| c.is_ascii_alphabetic()) {
        return Err(format!(
            "`currency` must be a 3-letter code, found {currency:?}"
        ));
    }
    let variant_price = get("variant_price")
        .map(|v| cents("variant_price", v))
        .transpose()?;
    if variant_price.is_some_and(|v| v > MAX_PRICE_CENTS) {
        return Err(format!(
            "`variant_price` {} is above {}: check the decimal point",
            get("variant_price").unwrap_or_default(),
            MAX_PRICE_CENTS / 100
        ));
    }
    let mut promotions = Vec::new();
    let promo_fields = [
        "promo_price",
        "promo_percent_off",
        "promo_starts",
        "promo_ends",
    ];
    if get("promo_description").is_none()
        && let Some(k) = promo_fields.iter().find(|k| get(k).is_some())
    {
        // The promotion would be dropped without a word: say it.
        return Err(format!(
            "`{k}` is given but `promo_description` is empty: a promotion needs a description shoppers can read"
        ));
    }
    if let Some(desc) = get("promo_description") {
        let price = get("promo_price")
            .map(|v| cents("promo_price", v))
            .transpose()?;
        let pct = get("promo_percent_off")
            .map(|v| {
                v.trim_end_matches('%')
                    .parse::<f64>()
                    .ok()
                    .filter(|p| (0.0..=100.0).contains(p))
                    .ok_or_else(|| format!("`promo_percent_off` must be 0-100, found {v:?}"))
            })
            .transpose()?;
        if price.is_none() && pct.is_none() {
            return Err("a promotion needs `promo_price` or `promo_percent_off`".into());
        }
        if let Some(pp) = price
            && pp >= price_cents
        {
            return Err(format!(
                "`promo_price` {} is not below `price` {}: a promotion must lower the price",
                get("promo_price").unwrap_or_default(),
                get("price").unwrap_or_default()
            ));
        }
        let starts = get("promo_starts").unwrap_or("0000-01-01");
        let ends = get("promo_ends").unwrap_or("9999-12-31");
        for (k, v) in [("promo_starts", starts), ("promo_ends", ends)] {
            if !is_date(v) {
                return Err(format!("`{k}` must be a date like 2026-12-31, found {v:?}"));
            }
        }
        if starts > ends {
            return Err(format!(
                "promotion ends ({ends}) before it starts ({starts})"
            ));
        }
        promotions.push(Promotion {
            sku: String::new(),
            description: desc.to_string(),
            price_cents: price,
            percent_off: pct,
            starts: starts.to_string(),
            ends: ends.to_string(),
        });
    }
    let sku = get("sku").unwrap_or_default().to_string();
    for p in &mut promotions {
        p.sku = sku.clone();
    }
    Ok(Record {
        product: Product {
            sku,
            name: get("name").unwrap_or_default().to_string(),
            brand: text("brand"),
            description: text("description"),
            department: text("department"),
            aisle: get("aisle").unwrap_or_default().to_string(),
            price_cents,
            currency,
            tags: list(f.get("tags")),
            allergens: list(f.get("allergens")),
            images: f
                .get("images")
                .map(|s| {
                    s.split(';')
                        .map(str::trim)
                        .filter(|x| !x.is_empty())
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default(),
        },
        stock: vec![Variant {
            variant: get("variant").unwrap_or_default().to_string(),
            quantity,
            price_cents: variant_price,
        }],
        promotions,
    })
}

fn check_columns(cols: &[String]) -> std::result::Result<(), String> {
    let unknown: Vec<String> = cols
        .iter()
        .filter(|c| !REQUIRED.contains(&c.as_str()) && !OPTIONAL.contains(&c.as_str()))
        .map(|c| {
            let near = REQUIRED
                .iter()
                .chain(OPTIONAL)
                .map(|k| (strsim::jaro_winkler(c, k), *k))
                .max_by(|a, b| a.0.total_cmp(&b.0))
                .filter(|(s, _)| *s > 0.85)
                .map(|(_, k)| format!(" (did you mean `{k}`?)"))
                .unwrap_or_default();
            format!("`{c}`{near}")
        })
        .collect();
    if !unknown.is_empty() {
        return Err(format!("unknown column(s) {}", unknown.join(", ")));
    }
    let missing: Vec<&str> = REQUIRED
        .iter()
        .copied()
        .filter(|k| !cols.iter().any(|c| c == k))
        .collect();
    if !missing.is_empty() {
        return Err(format!("missing required column(s) {}", missing.join(", ")));
    }
    Ok(())
}

/// One row: its line and its fields by lower-case column, or why it is not a row.
type Row = std::result::Result<HashMap<String, String>, String>;

fn read_csv<R: std::io::Read>(
    path: &Path,
    reader: R,
    each: &mut dyn FnMut(u64, Row),
) -> Result<()> {
    let mut rdr = csv::ReaderBuilder::new()
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(reader);
    let headers: Vec<String> = rdr
        .headers()
        .map_err(|e| CatalogError::Format {
            path: path.to_path_buf(),
            message: format!("line 1: {e}"),
        })?
        .iter()
        .map(|h| h.trim().to_lowercase())
        .collect();
    check_columns(&headers).map_err(|message| CatalogError::Format {
        path: path.to_path_buf(),
        message: format!("line 1: {message}"),
    })?;
    // A column given twice would keep only its last value, silently.
    for (i, h) in headers.iter().enumerate() {
        if headers[..i].contains(h) {
            return Err(CatalogError::Format {
                path: path.to_path_buf(),
                message: format!("line 1: column `{h}` appears twice"),
            });
        }
    }
    for rec in rdr.records() {
        match rec {
            Ok(r) => {
                let line = r.position().map(|p| p.line()).unwrap_or(0);
                if r.len() != headers.len() {
                    each(
                        line,
                        Err(format!(
                            "{} field(s), the header has {}",
                            r.len(),
                            headers.len()
                        )),
                    );
                    continue;
                }
                let map = headers
                    .iter()
                    .cloned()
                    .zip(r.iter().map(str::to_string))
                    .collect();
                each(line, Ok(map));
            }
            Err(e) => {
                let line = e.position().map(|p| p.line()).unwrap_or(0);
                each(line, Err(e.to_string()));
            }
        }
    }
    Ok(())
}

/// A field's text: strings, numbers and booleans as written, lists of those joined
/// with `;`. Objects and nested lists are not a field's value: an error naming it
/// (they used to be stored as their JSON text).
fn json_text(key: &str, v: &serde_json::Value) -> std::result::Result<Option<String>, String> {
    use serde_json::Value as V;
    let scalar = |v: &V| match v {
        V::String(s) => Some(s.clone()),
        V::Number(n) => Some(n.to_string()),
        V::Bool(b) => Some(b.to_string()),
        _ => None,
    };
    match v {
        V::Null => Ok(None),
        V::Array(a) => a
            .iter()
            .map(|x| {
                scalar(x).ok_or_else(|| {
                    format!(
                        "`{key}` must be a list of plain values, found a nested {}",
                        kind(x)
                    )
                })
            })
            .collect::<std::result::Result<Vec<_>, _>>()
            .map(|items| Some(items.join(";"))),
        V::Object(_) => Err(format!("`{key}` must be a plain value, found an object")),
        other => Ok(scalar(other)),
    }
}

fn kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Object(_) => "object",
        serde_json::Value::Array(_) => "list",
        _ => "null",
    }
}

fn read_jsonl<R: std::io::BufRead>(
    path: &Path,
    reader: R,
    each: &mut dyn FnMut(u64, Row),
) -> Result<()> {
    for (i, line) in reader.lines().enumerate() {
        let n = i as u64 + 1;
        let line = line.map_err(|source| CatalogError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let line = line.as_str();
        if line.trim().is_empty() {
            continue;
        }
        let row = match serde_json::from_str::<serde_json::Value>(line) {
            Ok(serde_json::Value::Object(map)) => {
                let keys: Vec<String> = map.keys().map(|k| k.to_lowercase()).collect();
                check_columns(
                    &keys
                        .iter()
                        .filter(|k| !REQUIRED.contains(&k.as_str()))
                        .cloned()
                        .chain(REQUIRED.iter().map(|s| s.to_string()))
                        .collect::<Vec<_>>(),
                )
                .and_then(|_| {
                    let mut fields = HashMap::new();
                    for (k, v) in &map {
                        if let Some(t) = json_text(k, v)? {
                            fields.insert(k.to_lowercase(), t);
                        }
                    }
                    Ok(fields)
                })
            }
            Ok(_) => Err("expected a JSON object".to_string()),
            Err(e) => Err(format!("invalid JSON: {e}")),
        };
        each(n, row);
    }
    Ok(())
}

/// The largest catalog file imported (a million products is about 150 MB of CSV).
pub const MAX_IMPORT_BYTES: u64 = 512 << 20;

/// What a first look at a catalog's bytes found: valid UTF-8 throughout (checked
/// as they stream past, never held whole), a byte-order mark, the first character.
struct Sniff {
    bom: bool,
    first: Option<u8>,
}

/// Checks that `r` is UTF-8 text of at most `limit` bytes without holding it.
fn sniff<R: std::io::Read>(mut r: R, path: &Path, limit: u64) -> Result<Sniff> {
    let io = |source| CatalogError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut buf = vec![0u8; 1 << 20];
    let mut carry = 0usize; // bytes of a character cut at the end of the last chunk
    let mut offset = 0u64; // of buf[0] in the file
    let mut sniffed = Sniff {
        bom: false,
        first: None,
    };
    loop {
        let n = r.read(&mut buf[carry..]).map_err(io)?;
        let end = carry + n;
        if offset + end as u64 > limit {
            return Err(io(aisle_firmware_config::too_large(limit)));
        }
        let chunk = &buf[..end];
        let valid = match std::str::from_utf8(chunk) {
            Ok(_) => end,
            Err(e) if e.error_len().is_none() && n > 0 => e.valid_up_to(),
            Err(e) => {
                return Err(CatalogError::Format {
                    path: path.to_path_buf(),
                    message: format!("not UTF-8 text (byte {})", offset + e.valid_up_to() as u64),
                });
            }
        };
        let mut text = &chunk[..valid];
        if offset == 0 && text.starts_with(b"\xEF\xBB\xBF") {
            sniffed.bom = true;
            text = &text[3..];
        }
        if sniffed.first.is_none() {
            sniffed.first = text.iter().copied().find(|b| !b.is_ascii_whitespace());
        }
        if n == 0 {
            return Ok(sniffed);
        }
        buf.copy_within(valid..end, 0);
        carry = end - valid;
        offset += valid as u64;
    }
}

/// Whether `path` (by its extension, else its first character) is JSON Lines.
fn is_jsonl(path: &Path, first: Option<u8>) -> bool {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_lowercase)
        .unwrap_or_default();
    matches!(ext.as_str(), "jsonl" | "ndjson" | "json") || (ext != "csv" && first == Some(b'{'))
}

/// Reads and validates a file into records (merged per sku), with every problem,
/// held in memory (an import streams into the database instead: [`import_file`]).
pub fn parse_file(
    path: &Path,
    default_currency: &str,
) -> Result<(usize, Vec<Record>, Vec<RowProblem>)> {
    let (r, s) = open_text(path)?;
    let mut sink = MemorySink::default();
    let (rows, problems) = parse_stream(r, path, &s, default_currency, &mut sink)?;
    Ok((rows, sink.records(), problems))
}

/// [`parse_file`] over bytes already read; `path` names them in messages and its
/// extension (`.csv`, `.jsonl`) says the format (else the first character does).
pub fn parse_bytes(
    bytes: &[u8],
    path: &Path,
    default_currency: &str,
) -> Result<(usize, Vec<Record>, Vec<RowProblem>)> {
    let s = sniff(bytes, path, u64::MAX)?;
    let bytes = if s.bom { &bytes[3..] } else { bytes };
    let mut sink = MemorySink::default();
    let (rows, problems) = parse_stream(bytes, path, &s, default_currency, &mut sink)?;
    Ok((rows, sink.records(), problems))
}

/// Checks that `path` is UTF-8 text within the import limit (one streaming pass),
/// then opens it again for the rows, past any byte-order mark.
fn open_text(path: &Path) -> Result<(impl std::io::BufRead, Sniff)> {
    let io = |source| CatalogError::Io {
        path: path.to_path_buf(),
        source,
    };
    let (f, _) = aisle_firmware_config::open_regular(path).map_err(io)?;
    let s = sniff(f, path, MAX_IMPORT_BYTES)?;
    let (f, _) = aisle_firmware_config::open_regular(path).map_err(io)?;
    let mut r =
        std::io::BufReader::with_capacity(1 << 16, std::io::Read::take(f, MAX_IMPORT_BYTES));
    if s.bom {
        std::io::Read::read_exact(&mut r, &mut [0u8; 3]).map_err(io)?;
    }
    Ok((r, s))
}

/// Where valid rows go as they are parsed: each is one product with one variant.
/// Rows of one sku are merged (their variants and promotions), in file order; a
/// second row for the same sku and variant is a problem, named with the first's line.
trait Sink {
    fn row(&mut self, line: u64, rec: Record) -> Result<Option<RowProblem>>;
}

/// Rows merged in memory, per sku.
#[derive(Default)]
struct MemorySink {
    by_sku: BTreeMap<String, Vec<(u64, Record)>>,
}

impl MemorySink {
    fn records(self) -> Vec<Record> {
        self.by_sku
            .into_values()
            .filter_map(|rows| merge(rows.into_iter().map(|(_, r)| r)))
            .collect()
    }
}

impl Sink for MemorySink {
    fn row(&mut self, line: u64, rec: Record) -> Result<Option<RowProblem>> {
        let rows = self.by_sku.entry(rec.product.sku.clone()).or_default();
        if let Some((first, _)) = rows
            .iter()
            .find(|(_, r)| r.stock[0].variant == rec.stock[0].variant)
        {
            return Ok(Some(duplicate(line, &rec, *first)));
        }
        rows.push((line, rec));
        Ok(None)
    }
}

fn duplicate(line: u64, rec: &Record, first: u64) -> RowProblem {
    RowProblem {
        line,
        message: format!(
            "sku {} variant {:?} already on line {first}",
            rec.product.sku, rec.stock[0].variant
        ),
    }
}

/// One sku's rows (file order) as one record: the first row's product, every row's
/// variant and promotions.
fn merge(rows: impl Iterator<Item = Record>) -> Option<Record> {
    let mut merged: Option<Record> = None;
    for rec in rows {
        match &mut merged {
            None => merged = Some(rec),
            Some(m) => {
                m.stock.extend(rec.stock);
                m.promotions.extend(rec.promotions);
            }
        }
    }
    merged
}

/// Rows written, as they are parsed, into a temporary table of the import's own
/// transaction: an import of a million products holds one row at a time.
struct DbSink<'a> {
    tx: &'a rusqlite::Transaction<'a>,
    path: &'a Path,
}

impl Sink for DbSink<'_> {
    fn row(&mut self, line: u64, rec: Record) -> Result<Option<RowProblem>> {
        let db = |source| CatalogError::Db {
            path: self.path.to_path_buf(),
            source,
        };
        let json = serde_json::to_string(&rec).map_err(|e| CatalogError::Format {
            path: self.path.to_path_buf(),
            message: format!("line {line}: {e}"),
        })?;
        let n = self
            .tx
            .prepare_cached(
                "INSERT INTO temp.import_rows(line, sku, variant, record) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(sku, variant) DO NOTHING",
            )
            .map_err(db)?
            .execute(params![
                line as i64,
                rec.product.sku,
                rec.stock[0].variant,
                json
            ])
            .map_err(db)?;
        if n == 1 {
            return Ok(None);
        }
        let first: i64 = self
            .tx
            .prepare_cached("SELECT line FROM temp.import_rows WHERE sku = ?1 AND variant = ?2")
            .map_err(db)?
            .query_row(params![rec.product.sku, rec.stock[0].variant], |r| r.get(0))
            .map_err(db)?;
        Ok(Some(duplicate(line, &rec, first as u64)))
    }
}

/// A byte-order mark (spreadsheet exports write one) is not part of the data, in
/// CSV or JSON Lines: `r` starts after it. Valid rows go to `sink`; returns the
/// number of rows and every problem.
fn parse_stream<R: std::io::BufRead>(
    r: R,
    path: &Path,
    s: &Sniff,
    default_currency: &str,
    sink: &mut dyn Sink,
) -> Result<(usize, Vec<RowProblem>)> {
    if s.first.is_none() {
        return Err(CatalogError::Format {
            path: path.to_path_buf(),
            message: "the file is empty".into(),
        });
    }
    let mut n_rows = 0;
    let mut problems = Vec::new();
    let mut failed = None;
    let mut each = |line: u64, row: Row| {
        n_rows += 1;
        if failed.is_some() {
            return;
        }
        match row.and_then(|f| parse_row(&f, default_currency)) {
            Ok(rec) => match sink.row(line, rec) {
                Ok(None) => {}
                Ok(Some(p)) => problems.push(p),
                Err(e) => failed = Some(e),
            },
            Err(message) => problems.push(RowProblem { line, message }),
        }
    };
    if is_jsonl(path, s.first) {
        read_jsonl(path, r, &mut each)?;
    } else {
        read_csv(path, r, &mut each)?;
    }
    if let Some(e) = failed {
        return Err(e);
    }
    Ok((n_rows, problems))
}

/// Imports a file in one transaction, all or nothing. The file streams past twice
/// (a UTF-8 check, then the rows); each valid row goes straight into a temporary
/// table of the transaction, and the products are then written one sku at a time:
/// neither the file, its rows nor its records are held in memory.
pub fn import_file(cat: &mut CatalogDb, path: &Path, opts: &ImportOptions) -> Result<ImportReport> {
    let (r, s) = open_text(path)?;
    let revision = cat.revision()?;
    let db_path = cat.path().to_path_buf();
    let db = |source| CatalogError::Db {
        path: db_path.clone(),
        source,
    };
    let tx = cat.conn_mut().transaction().map_err(db)?;
    tx.execute_batch(
        "DROP TABLE IF EXISTS temp.import_rows;
         CREATE TEMP TABLE import_rows(seq INTEGER PRIMARY KEY, line INTEGER NOT NULL,
           sku TEXT NOT NULL, variant TEXT NOT NULL, record TEXT NOT NULL, UNIQUE(sku, variant));",
    )
    .map_err(db)?;
    let mut sink = DbSink { tx: &tx, path };
    let (rows, problems) = parse_stream(r, path, &s, currency(opts), &mut sink)?;
    if !problems.is_empty() && !opts.skip_bad_rows {
        // Dropping the transaction rolls the table back with it.
        return Err(CatalogError::BadRows {
            path: path.to_path_buf(),
            problems,
        });
    }
    let mut report = ImportReport {
        rows,
        skipped: problems,
        ..Default::default()
    };
    {
        let mut stmt = tx
            .prepare("SELECT sku, record FROM temp.import_rows ORDER BY sku, seq")
            .map_err(db)?;
        let mut rows = stmt.query([]).map_err(db)?;
        // One sku's rows at a time (file order), merged as in memory.
        let mut current: Vec<Record> = Vec::new();
        while let Some(row) = rows.next().map_err(db)? {
            let sku: String = row.get(0).map_err(db)?;
            let json: String = row.get(1).map_err(db)?;
            let rec: Record = serde_json::from_str(&json).map_err(|e| CatalogError::Format {
                path: path.to_path_buf(),
                message: format!("sku {sku}: {e}"),
            })?;
            if current.first().is_some_and(|c| c.product.sku != sku)
                && let Some(done) = merge(current.drain(..))
            {
                upsert_one(&tx, &done, &mut report).map_err(db)?;
            }
            current.push(rec);
        }
        if let Some(done) = merge(current.into_iter()) {
            upsert_one(&tx, &done, &mut report).map_err(db)?;
        }
    }
    tx.execute_batch("DROP TABLE temp.import_rows")
        .map_err(db)?;
    finish(tx, revision, &mut report).map_err(db)?;
    Ok(report)
}

/// Imports CSV or JSON Lines held in memory (named `path` in messages) in one
/// transaction, all or nothing.
pub fn import_bytes(
    cat: &mut CatalogDb,
    bytes: &[u8],
    path: &Path,
    opts: &ImportOptions,
) -> Result<ImportReport> {
    let (rows, records, problems) = parse_bytes(bytes, path, currency(opts))?;
    if !problems.is_empty() && !opts.skip_bad_rows {
        return Err(CatalogError::BadRows {
            path: path.to_path_buf(),
            problems,
        });
    }
    let mut report = upsert(cat, &records)?;
    report.rows = rows;
    report.skipped = problems;
    Ok(report)
}

fn currency(opts: &ImportOptions) -> &str {
    if opts.default_currency.is_empty() {
        "USD"
    } else {
        opts.default_currency.as_str()
    }
}

/// Adds or updates records (one transaction); unchanged products are left alone.
pub fn upsert(cat: &mut CatalogDb, records: &[Record]) -> Result<ImportReport> {
    let revision = cat.revision()?;
    let path = cat.path().to_path_buf();
    let db = |source| CatalogError::Db {
        path: path.clone(),
        source,
    };
    let tx = cat.conn_mut().transaction().map_err(db)?;
    let mut report = ImportReport::default();
    for rec in records {
        upsert_one(&tx, rec, &mut report).map_err(db)?;
    }
    finish(tx, revision, &mut report).map_err(db)?;
    Ok(report)
}

/// Bumps the revision when anything changed, and commits.
fn finish(
    tx: rusqlite::Transaction<'_>,
    revision: u64,
    report: &mut ImportReport,
) -> rusqlite::Result<()> {
    report.revision = revision + u64::from(report.added + report.updated > 0);
    tx.execute(
        "INSERT INTO meta(key, value) VALUES ('revision', ?1) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        [report.revision.to_string()],
    )?;
    tx.commit()
}

/// Writes one product unless the stored one is the same, counting it in `report`.
fn upsert_one(
    tx: &rusqlite::Transaction<'_>,
    rec: &Record,
    report: &mut ImportReport,
) -> rusqlite::Result<()> {
    report.products += 1;
    // The stored record, read inside the transaction (one at a time: an import of
    // a million products never holds a second copy of them).
    let old = match crate::product_in(tx, &rec.product.sku)? {
        Some(p) => Some(Record {
            stock: crate::stock_in(tx, &p.sku)?,
            promotions: crate::promotions_in(tx, &p.sku)?,
            product: p,
        }),
        None => None,
    };
    match &old {
        Some(o) if o == rec => {
            report.unchanged += 1;
            return Ok(());
        }
        Some(_) => report.updated += 1,
        None => report.added += 1,
    }
    let p = &rec.product;
    tx.prepare_cached("INSERT INTO products(sku, name, brand, description, department, aisle, price_cents, currency, tags, allergens, images)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
         ON CONFLICT(sku) DO UPDATE SET name = excluded.name, brand = excluded.brand,
           description = excluded.description, department = excluded.department, aisle = excluded.aisle,
           price_cents = excluded.price_cents, currency = excluded.currency, tags = excluded.tags,
           allergens = excluded.allergens, images = excluded.images")
        ?
        .execute(params![
            p.sku,
            p.name,
            p.brand,
            p.description,
            p.department,
            p.aisle,
            p.price_cents,
            p.currency,
            p.tags.join(";"),
            p.allergens.join(";"),
            p.images.join(";"),
        ],
    )
    ?;
    tx.prepare_cached("DELETE FROM stock WHERE sku = ?1")?
        .execute([&p.sku])?;
    tx.prepare_cached("DELETE FROM promotions WHERE sku = ?1")?
        .execute([&p.sku])?;
    for v in &rec.stock {
        tx.prepare_cached(
            "INSERT INTO stock(sku, variant, quantity, price_cents) VALUES (?1, ?2, ?3, ?4)",
        )?
        .execute(params![p.sku, v.variant, v.quantity, v.price_cents])?;
    }
    for pr in &rec.promotions {
        tx.prepare_cached("INSERT INTO promotions(sku, description, price_cents, percent_off, starts, ends) VALUES (?1, ?2, ?3, ?4, ?5, ?6)")
        ?
        .execute(params![p.sku, pr.description, pr.price_cents, pr.percent_off, pr.starts, pr.ends],
        )
        ?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_is_checked_as_it_streams_across_chunk_edges() {
        let p = Path::new("big.csv");
        // A two-byte character cut by the 1 MiB read boundary is still text.
        let mut b = vec![b'a'; (1 << 20) - 1];
        b.extend_from_slice("é,x\n".as_bytes());
        let s = sniff(&b[..], p, u64::MAX).expect("text");
        assert_eq!((s.bom, s.first), (false, Some(b'a')));
        // A bad byte past the first chunk is named by its offset in the file.
        let mut bad = vec![b' '; (2 << 20) + 5];
        bad.push(0xff);
        let e = sniff(&bad[..], p, u64::MAX).err().map(|e| e.to_string());
        assert_eq!(e.as_deref(), Some("big.csv: not UTF-8 text (byte 2097157)"));
        // A character cut at the very end is not text; a BOM is seen and skipped.
        assert!(sniff(&"é".as_bytes()[..1], p, u64::MAX).is_err());
        let s = sniff("\u{feff} {\"sku\":1}".as_bytes(), p, u64::MAX).expect("bom");
        assert_eq!((s.bom, s.first), (true, Some(b'{')));
        // Whitespace only: nothing to import; over the limit: refused while reading.
        assert_eq!(sniff(&b" \n\t"[..], p, u64::MAX).expect("ws").first, None);
        assert!(sniff(&b[..], p, 1000).is_err());
    }

    #[test]
    fn prices_parse_to_exact_cents() {
        for (s, c) in [
            ("3.49", 349),
            ("3.5", 350),
            ("3", 300),
            ("$0.99", 99),
            (".5", 50),
        ] {
            assert_eq!(cents("price", s), Ok(c), "{s}");
        }
        for s in ["", "abc", "3.499", "-1", "1.2.3", "1e3"] {
            assert!(cents("price", s).is_err(), "{s}");
        }
    }
}
