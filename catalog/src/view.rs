//! An immutable snapshot of the store's catalog: every product, its stock and its
//! promotions in memory, with the fuzzy name index built over them.
//!
//! The dialogue engine reads only this (no database handle inside), so any number of
//! requests read it at once without locks. A running kiosk keeps the current view in
//! an `Arc` and swaps in a new one when the database's `revision` changes (an import,
//! an edit by another process); requests in flight finish on the view they started
//! with.

use std::collections::HashMap;

use super::{CatalogDb, Product, ProductIndex, Promotion, Result, Variant};

pub struct CatalogView {
    revision: u64,
    /// Sorted by sku.
    products: Vec<Product>,
    index: ProductIndex,
    stock: HashMap<String, Vec<Variant>>,
    promotions: HashMap<String, Vec<Promotion>>,
}

impl std::fmt::Debug for CatalogView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CatalogView")
            .field("revision", &self.revision)
            .field("products", &self.products.len())
            .finish_non_exhaustive()
    }
}

impl CatalogView {
    /// Reads the whole catalog (about 0.5 s for 50k products, most of it the index).
    pub fn load(cat: &CatalogDb) -> Result<Self> {
        let revision = cat.revision()?;
        let products = cat.products()?;
        let stock = cat.all_stock()?;
        let promotions = cat.all_promotions()?;
        Ok(Self::from_parts(revision, products, stock, promotions))
    }

    pub fn from_parts(
        revision: u64,
        mut products: Vec<Product>,
        stock: HashMap<String, Vec<Variant>>,
        promotions: HashMap<String, Vec<Promotion>>,
    ) -> Self {
        products.sort_by(|a, b| a.sku.cmp(&b.sku));
        let index = ProductIndex::build(&products);
        Self {
            revision,
            products,
            index,
            stock,
            promotions,
        }
    }

    /// The database revision this view was read at.
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// Every product, sorted by sku.
    pub fn products(&self) -> &[Product] {
        &self.products
    }

    pub fn index(&self) -> &ProductIndex {
        &self.index
    }

    pub fn len(&self) -> usize {
        self.products.len()
    }

    pub fn is_empty(&self) -> bool {
        self.products.is_empty()
    }

    pub fn product(&self, sku: &str) -> Option<&Product> {
        self.products
            .binary_search_by(|p| p.sku.as_str().cmp(sku))
            .ok()
            .map(|i| &self.products[i])
    }

    /// Stock per variant in stored order, empty for an unknown sku.
    pub fn stock(&self, sku: &str) -> &[Variant] {
        self.stock.get(sku).map_or(&[], Vec::as_slice)
    }

    pub fn total_stock(&self, sku: &str) -> i64 {
        self.stock(sku).iter().map(|v| v.quantity).sum()
    }

    /// Every promotion of a product (active or not).
    pub fn promotions(&self, sku: &str) -> &[Promotion] {
        self.promotions.get(sku).map_or(&[], Vec::as_slice)
    }

    /// The promotion of `sku` running on `day`, if any.
    pub fn active_promotion(&self, sku: &str, day: &str) -> Option<&Promotion> {
        self.promotions(sku).iter().find(|p| p.active_on(day))
    }

    /// Skus with a promotion active on `day`, sorted.
    pub fn promoted_skus(&self, day: &str) -> Vec<&str> {
        let mut v: Vec<&str> = self
            .promotions
            .iter()
            .filter(|(_, ps)| ps.iter().any(|p| p.active_on(day)))
            .map(|(s, _)| s.as_str())
            .collect();
        v.sort_unstable();
        v
    }
}
