//! The store's data: catalog, inventory and promotions in one embedded SQLite database
//! (rusqlite, bundled SQLite), plus an in-memory fuzzy name index for lookups.
//!
//! Invariants: prices are integer cents (no float rounding in an answer); an import is
//! one transaction (a file with errors changes nothing unless bad rows are skipped on
//! request); `revision` increases whenever content changes, so derived indexes (name
//! index, image embeddings) know when to rebuild.

pub mod demo;
pub mod import;
pub mod search;
pub mod view;

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

pub use import::{ImportOptions, ImportReport, RowProblem, import_bytes, import_file};
pub use search::{Match, ProductIndex};
pub use view::CatalogView;

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("catalog database {path}: {source}")]
    Db {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Format { path: PathBuf, message: String },
    #[error("{path}: {} bad row(s), nothing imported (use --skip-bad-rows to import the rest):\n{}", problems.len(), problems.iter().take(20).map(|p| format!("  line {}: {}", p.line, p.message)).collect::<Vec<_>>().join("\n"))]
    BadRows {
        path: PathBuf,
        problems: Vec<RowProblem>,
    },
    #[error(transparent)]
    Model(#[from] aisle_models::ModelError),
}

pub type Result<T, E = CatalogError> = std::result::Result<T, E>;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Product {
    pub sku: String,
    pub name: String,
    pub brand: Option<String>,
    pub description: Option<String>,
    pub department: Option<String>,
    pub aisle: String,
    pub price_cents: i64,
    pub currency: String,
    /// Dietary and other labels: `gluten-free`, `vegan`, `organic`, ...
    pub tags: Vec<String>,
    pub allergens: Vec<String>,
    pub images: Vec<String>,
}

impl Product {
    pub fn has_tag(&self, tag: &str) -> bool {
        self.tags.iter().any(|t| t == tag)
    }
}

/// Stock of one size/variant ("" is the product's only variant).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Variant {
    pub variant: String,
    pub quantity: i64,
    /// Price of this variant when it differs from the product's.
    pub price_cents: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Promotion {
    pub sku: String,
    pub description: String,
    /// Promotional price, or a percentage off.
    pub price_cents: Option<i64>,
    pub percent_off: Option<f64>,
    /// Inclusive validity window, `YYYY-MM-DD`.
    pub starts: String,
    pub ends: String,
}

impl Promotion {
    pub fn active_on(&self, day: &str) -> bool {
        self.starts.as_str() <= day && day <= self.ends.as_str()
    }
    /// The price this promotion gives for a product at `base` cents.
    pub fn price_for(&self, base: i64) -> i64 {
        match (self.price_cents, self.percent_off) {
            (Some(p), _) => p,
            (None, Some(pct)) => ((base as f64) * (1.0 - pct / 100.0)).round() as i64,
            (None, None) => base,
        }
    }
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS products (
    sku TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    brand TEXT,
    description TEXT,
    department TEXT,
    aisle TEXT NOT NULL,
    price_cents INTEGER NOT NULL CHECK (price_cents >= 0),
    currency TEXT NOT NULL,
    tags TEXT NOT NULL DEFAULT '',
    allergens TEXT NOT NULL DEFAULT '',
    images TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS stock (
    sku TEXT NOT NULL REFERENCES products(sku) ON DELETE CASCADE,
    variant TEXT NOT NULL DEFAULT '',
    quantity INTEGER NOT NULL CHECK (quantity >= 0),
    price_cents INTEGER,
    PRIMARY KEY (sku, variant)
);
CREATE TABLE IF NOT EXISTS promotions (
    sku TEXT NOT NULL REFERENCES products(sku) ON DELETE CASCADE,
    description TEXT NOT NULL,
    price_cents INTEGER,
    percent_off REAL,
    starts TEXT NOT NULL,
    ends TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS promotions_sku ON promotions(sku);
-- Enrolled reference photos: only their embeddings are kept (and the photo's
-- hash, so enrolling the same photo twice is a no-op), never the pixels.
CREATE TABLE IF NOT EXISTS reference_photos (
    sku TEXT NOT NULL REFERENCES products(sku) ON DELETE CASCADE,
    photo_sha256 TEXT NOT NULL,
    model TEXT NOT NULL,
    embedding BLOB NOT NULL,
    added_at INTEGER NOT NULL,
    PRIMARY KEY (sku, photo_sha256, model)
);
";

/// An enrolled photo's embedding.
#[derive(Debug, Clone)]
pub struct ReferencePhoto {
    pub sku: String,
    pub photo_sha256: String,
    pub embedding: Vec<f32>,
}

/// The store database.
pub struct CatalogDb {
    conn: Connection,
    path: PathBuf,
}

fn split_list(s: String) -> Vec<String> {
    s.split(';')
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .map(str::to_string)
        .collect()
}

fn product_from_row(r: &rusqlite::Row) -> rusqlite::Result<Product> {
    Ok(Product {
        sku: r.get(0)?,
        name: r.get(1)?,
        brand: r.get(2)?,
        description: r.get(3)?,
        department: r.get(4)?,
        aisle: r.get(5)?,
        price_cents: r.get(6)?,
        currency: r.get(7)?,
        tags: split_list(r.get(8)?),
        allergens: split_list(r.get(9)?),
        images: split_list(r.get(10)?),
    })
}

const PRODUCT_COLUMNS: &str = "sku, name, brand, description, department, aisle, price_cents, currency, tags, allergens, images";

/// A product by sku, read through `conn` (a connection or an open transaction).
pub(crate) fn product_in(conn: &Connection, sku: &str) -> rusqlite::Result<Option<Product>> {
    conn.query_row(
        &format!("SELECT {PRODUCT_COLUMNS} FROM products WHERE sku = ?1"),
        [sku],
        product_from_row,
    )
    .optional()
}

pub(crate) fn stock_in(conn: &Connection, sku: &str) -> rusqlite::Result<Vec<Variant>> {
    let mut stmt = conn.prepare_cached(
        "SELECT variant, quantity, price_cents FROM stock WHERE sku = ?1 ORDER BY rowid",
    )?;
    let rows = stmt.query_map([sku], |r| {
        Ok(Variant {
            variant: r.get(0)?,
            quantity: r.get(1)?,
            price_cents: r.get(2)?,
        })
    })?;
    rows.collect()
}

pub(crate) fn promotions_in(conn: &Connection, sku: &str) -> rusqlite::Result<Vec<Promotion>> {
    let mut stmt = conn.prepare_cached(
        "SELECT sku, description, price_cents, percent_off, starts, ends FROM promotions WHERE sku = ?1 ORDER BY rowid",
    )?;
    let rows = stmt.query_map([sku], |r| {
        Ok(Promotion {
            sku: r.get(0)?,
            description: r.get(1)?,
            price_cents: r.get(2)?,
            percent_off: r.get(3)?,
            starts: r.get(4)?,
            ends: r.get(5)?,
        })
    })?;
    rows.collect()
}

impl CatalogDb {
    /// Opens (creating if needed) the database at `path`.
    pub fn open(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|source| CatalogError::Io {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        let conn = Connection::open(path).map_err(|source| CatalogError::Db {
            path: path.to_path_buf(),
            source,
        })?;
        Self::init(conn, path.to_path_buf())
    }

    pub fn open_in_memory() -> Result<Self> {
        let path = PathBuf::from(":memory:");
        let conn = Connection::open_in_memory().map_err(|source| CatalogError::Db {
            path: path.clone(),
            source,
        })?;
        Self::init(conn, path)
    }

    fn init(conn: Connection, path: PathBuf) -> Result<Self> {
        let cat = Self { conn, path };
        // Another process (a second `aisle` command, the service) may be importing:
        // wait for its transaction instead of failing at once.
        cat.conn
            .busy_timeout(std::time::Duration::from_secs(120))
            .map_err(|e| cat.db(e))?;
        cat.conn
            .execute_batch(&format!(
                "PRAGMA foreign_keys = ON; PRAGMA journal_mode = WAL; {SCHEMA}"
            ))
            .map_err(|e| cat.db(e))?;
        Ok(cat)
    }

    pub(crate) fn db(&self, source: rusqlite::Error) -> CatalogError {
        CatalogError::Db {
            path: self.path.clone(),
            source,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn product_count(&self) -> Result<usize> {
        self.conn
            .query_row("SELECT COUNT(*) FROM products", [], |r| r.get::<_, i64>(0))
            .map(|n| n as usize)
            .map_err(|e| self.db(e))
    }

    /// Increases whenever an import changes content or a photo is enrolled.
    pub fn revision(&self) -> Result<u64> {
        Ok(self
            .meta("revision")?
            .and_then(|v| v.parse().ok())
            .unwrap_or(0))
    }

    pub fn meta(&self, key: &str) -> Result<Option<String>> {
        self.conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()
            .map_err(|e| self.db(e))
    }

    pub fn set_meta(&self, key: &str, value: &str) -> Result<()> {
        self.conn
            .execute(
                "INSERT INTO meta(key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                params![key, value],
            )
            .map(|_| ())
            .map_err(|e| self.db(e))
    }

    /// Adds reference photos (all or none); returns how many were new.
    pub fn add_reference_photos(
        &mut self,
        model: &str,
        photos: &[ReferencePhoto],
    ) -> Result<usize> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let path = self.path.clone();
        let db = |source| CatalogError::Db {
            path: path.clone(),
            source,
        };
        let revision = self.revision()?;
        let tx = self.conn.transaction().map_err(db)?;
        let mut added = 0;
        for p in photos {
            let blob: Vec<u8> = p.embedding.iter().flat_map(|x| x.to_le_bytes()).collect();
            added += tx
                .execute(
                    "INSERT OR IGNORE INTO reference_photos(sku, photo_sha256, model, embedding, added_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![p.sku, p.photo_sha256, model, blob, now],
                )
                .map_err(db)?;
        }
        if added > 0 {
            // A running kiosk rebuilds its scanner when the revision moves.
            tx.execute(
                "INSERT INTO meta(key, value) VALUES ('revision', ?1) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                [(revision + 1).to_string()],
            )
            .map_err(db)?;
        }
        tx.commit().map_err(db)?;
        Ok(added)
    }

    /// Every enrolled photo's embedding by `model`.
    /// The models that enrolled reference embeddings are kept for.
    pub fn reference_models(&self) -> Result<Vec<String>> {
        let mut st = self
            .conn
            .prepare("SELECT DISTINCT model FROM reference_photos ORDER BY model")
            .map_err(|e| self.db(e))?;
        let rows = st
            .query_map([], |r| r.get::<_, String>(0))
            .map_err(|e| self.db(e))?;
        rows.collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| self.db(e))
    }

    pub fn reference_photos(&self, model: &str) -> Result<Vec<ReferencePhoto>> {
        let mut st = self
            .conn
            .prepare("SELECT sku, photo_sha256, embedding FROM reference_photos WHERE model = ?1 ORDER BY sku, added_at")
            .map_err(|e| self.db(e))?;
        let rows = st
            .query_map([model], |r| {
                let blob: Vec<u8> = r.get(2)?;
                Ok(ReferencePhoto {
                    sku: r.get(0)?,
                    photo_sha256: r.get(1)?,
                    embedding: blob
                        .chunks_exact(4)
                        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                        .collect(),
                })
            })
            .map_err(|e| self.db(e))?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(|e| self.db(e))
    }

    pub fn product(&self, sku: &str) -> Result<Option<Product>> {
        product_in(&self.conn, sku).map_err(|e| self.db(e))
    }

    pub fn products(&self) -> Result<Vec<Product>> {
        let mut stmt = self
            .conn
            .prepare(&format!(
                "SELECT {PRODUCT_COLUMNS} FROM products ORDER BY sku"
            ))
            .map_err(|e| self.db(e))?;
        let rows = stmt
            .query_map([], product_from_row)
            .map_err(|e| self.db(e))?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(|e| self.db(e))
    }

    /// Stock per variant, largest quantity first.
    pub fn stock(&self, sku: &str) -> Result<Vec<Variant>> {
        stock_in(&self.conn, sku).map_err(|e| self.db(e))
    }

    pub fn total_stock(&self, sku: &str) -> Result<i64> {
        Ok(self.stock(sku)?.iter().map(|v| v.quantity).sum())
    }

    /// Every promotion of a product (active or not).
    pub fn promotions(&self, sku: &str) -> Result<Vec<Promotion>> {
        promotions_in(&self.conn, sku).map_err(|e| self.db(e))
    }

    /// Stock of every product, per variant (as [`CatalogDb::stock`]).
    pub fn all_stock(&self) -> Result<std::collections::HashMap<String, Vec<Variant>>> {
        let mut stmt = self
            .conn
            .prepare("SELECT sku, variant, quantity, price_cents FROM stock ORDER BY rowid")
            .map_err(|e| self.db(e))?;
        let mut rows = stmt.query([]).map_err(|e| self.db(e))?;
        let mut out: std::collections::HashMap<String, Vec<Variant>> = Default::default();
        while let Some(r) = rows.next().map_err(|e| self.db(e))? {
            let sku: String = r.get(0).map_err(|e| self.db(e))?;
            let v = (|| {
                Ok(Variant {
                    variant: r.get(1)?,
                    quantity: r.get(2)?,
                    price_cents: r.get(3)?,
                })
            })()
            .map_err(|e| self.db(e))?;
            out.entry(sku).or_default().push(v);
        }
        Ok(out)
    }

    /// Every promotion of every product (as [`CatalogDb::promotions`]).
    pub fn all_promotions(&self) -> Result<std::collections::HashMap<String, Vec<Promotion>>> {
        let mut stmt = self
            .conn
            .prepare("SELECT sku, description, price_cents, percent_off, starts, ends FROM promotions ORDER BY rowid")
            .map_err(|e| self.db(e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok(Promotion {
                    sku: r.get(0)?,
                    description: r.get(1)?,
                    price_cents: r.get(2)?,
                    percent_off: r.get(3)?,
                    starts: r.get(4)?,
                    ends: r.get(5)?,
                })
            })
            .map_err(|e| self.db(e))?;
        let mut out: std::collections::HashMap<String, Vec<Promotion>> = Default::default();
        for p in rows {
            let p = p.map_err(|e| self.db(e))?;
            out.entry(p.sku.clone()).or_default().push(p);
        }
        Ok(out)
    }

    /// Skus with a promotion active on `day`.
    pub fn promoted_skus(&self, day: &str) -> Result<Vec<String>> {
        let mut stmt = self
            .conn
            .prepare("SELECT DISTINCT sku FROM promotions WHERE starts <= ?1 AND ends >= ?1 ORDER BY sku")
            .map_err(|e| self.db(e))?;
        let rows = stmt
            .query_map([day], |r| r.get(0))
            .map_err(|e| self.db(e))?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(|e| self.db(e))
    }

    pub(crate) fn conn_mut(&mut self) -> &mut Connection {
        &mut self.conn
    }
}

/// Today as `YYYY-MM-DD` (UTC).
pub fn today() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    civil_date(secs as i64 / 86_400)
}

/// Days since 1970-01-01 to `YYYY-MM-DD` (Howard Hinnant's algorithm).
pub fn civil_date(days: i64) -> String {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// `$3.49`, `EUR 3.49`.
pub fn format_price(cents: i64, currency: &str) -> String {
    let v = format!("{}.{:02}", cents / 100, cents % 100);
    match currency {
        "USD" | "CAD" | "AUD" => format!("${v}"),
        "EUR" => format!("€{v}"),
        "GBP" => format!("£{v}"),
        other => format!("{other} {v}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil_date(0), "1970-01-01");
        assert_eq!(civil_date(19_723), "2024-01-01");
        assert_eq!(civil_date(19_782), "2024-02-29");
        assert_eq!(civil_date(-1), "1969-12-31");
    }

    #[test]
    fn prices_are_exact() {
        assert_eq!(format_price(349, "USD"), "$3.49");
        assert_eq!(format_price(5, "EUR"), "€0.05");
        assert_eq!(format_price(120_000, "CHF"), "CHF 1200.00");
        let p = Promotion {
            sku: "a".into(),
            description: "x".into(),
            price_cents: None,
            percent_off: Some(20.0),
            starts: "2026-01-01".into(),
            ends: "2026-01-31".into(),
        };
        assert_eq!(p.price_for(499), 399);
        assert!(p.active_on("2026-01-31") && !p.active_on("2026-02-01"));
    }
}
