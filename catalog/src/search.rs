//! Fuzzy product lookup by name, tolerant of recognition errors.
//!
//! Words are normalised (lower case, simple plural stemming) and weighted by inverse
//! document frequency. A query word matches a catalog word exactly or, failing that,
//! approximately (Jaro-Winkler >= 0.88 on words of 4+ letters, weighted by the
//! similarity), so "bananna" finds bananas and "organic penut butter" the peanut butter.
//! A product's score is the F2 measure of how much of the query it explains (recall,
//! weighted 4x) and how much of its own name the query covers (precision), both
//! IDF-weighted: "butter" prefers "Butter" over "Organic Peanut Butter Cups", and
//! "organic peanut butter" prefers an organic one over plain "Peanut Butter".

use std::collections::HashMap;

use super::Product;

/// Words that never identify a product.
pub const STOPWORDS: &[&str] = &[
    "a", "an", "the", "of", "and", "or", "for", "with", "in", "on", "to", "is", "are", "it",
    "this", "that", "these", "those", "do", "does", "you", "your", "have", "has", "i", "me", "my",
    "we", "any", "some", "please", "can", "could", "would", "there", "what", "which", "where",
    "how", "much", "many", "be", "at", "by", "from", "one", "ones", "get", "want", "need",
    "looking", "find", "buy", "am", "im", "about", "like", "s", "its",
];

/// Normalises a word: lower case ASCII letters and digits, simple plural stemming.
pub fn stem(word: &str) -> String {
    let w: String = word
        .chars()
        .filter(|c| c.is_alphanumeric())
        .flat_map(char::to_lowercase)
        .collect();
    if w.len() > 4 && w.ends_with("ies") {
        return format!("{}y", &w[..w.len() - 3]);
    }
    if w.len() > 4 && (w.ends_with("ches") || w.ends_with("shes") || w.ends_with("oes")) {
        return w[..w.len() - 2].to_string();
    }
    if w.len() > 3 && w.ends_with('s') && !w.ends_with("ss") && !w.ends_with("us") {
        return w[..w.len() - 1].to_string();
    }
    w
}

/// Words of a text, normalised, stopwords removed.
pub fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric() && c != '\'')
        .map(|w| w.trim_matches('\''))
        .filter(|w| !w.is_empty())
        .map(stem)
        .filter(|w| !w.is_empty() && !STOPWORDS.contains(&w.as_str()))
        .collect()
}

#[derive(Debug, Clone, PartialEq)]
pub struct Match {
    /// Index into the products the index was built from.
    pub doc: usize,
    pub sku: String,
    /// 0..1.
    pub score: f32,
}

/// In-memory index over product names and brands.
pub struct ProductIndex {
    skus: Vec<String>,
    /// Per product: distinct word ids and the IDF mass of its name.
    docs: Vec<(Vec<u32>, f32)>,
    vocab: HashMap<String, u32>,
    words: Vec<String>,
    idf: Vec<f32>,
    postings: Vec<Vec<u32>>,
    /// Word ids by first letter, for approximate matching.
    by_initial: HashMap<char, Vec<u32>>,
}

impl ProductIndex {
    pub fn build(products: &[Product]) -> Self {
        let mut vocab: HashMap<String, u32> = HashMap::new();
        let mut words_v: Vec<String> = Vec::new();
        let mut postings: Vec<Vec<u32>> = Vec::new();
        let mut docs_ids = Vec::with_capacity(products.len());
        for (d, p) in products.iter().enumerate() {
            let text = match &p.brand {
                Some(b) => format!("{b} {}", p.name),
                None => p.name.clone(),
            };
            let mut ids: Vec<u32> = words(&text)
                .into_iter()
                .map(|w| {
                    let next = vocab.len() as u32;
                    *vocab.entry(w.clone()).or_insert_with(|| {
                        words_v.push(w);
                        postings.push(Vec::new());
                        next
                    })
                })
                .collect();
            ids.sort_unstable();
            ids.dedup();
            for &id in &ids {
                postings[id as usize].push(d as u32);
            }
            docs_ids.push(ids);
        }
        let n = products.len().max(1) as f32;
        let idf: Vec<f32> = postings
            .iter()
            .map(|p| (1.0 + n / p.len() as f32).ln())
            .collect();
        let docs = docs_ids
            .into_iter()
            .map(|ids| {
                let mass = ids.iter().map(|&i| idf[i as usize]).sum();
                (ids, mass)
            })
            .collect();
        let mut by_initial: HashMap<char, Vec<u32>> = HashMap::new();
        for (i, w) in words_v.iter().enumerate() {
            if let Some(c) = w.chars().next() {
                by_initial.entry(c).or_default().push(i as u32);
            }
        }
        Self {
            skus: products.iter().map(|p| p.sku.clone()).collect(),
            docs,
            vocab,
            words: words_v,
            idf,
            postings,
            by_initial,
        }
    }

    pub fn len(&self) -> usize {
        self.skus.len()
    }

    pub fn is_empty(&self) -> bool {
        self.skus.is_empty()
    }

    /// Catalog words a query word matches, with a weight (1 exact, <1 approximate).
    /// Among approximate matches, common words win ties: a misheard word more likely
    /// means "coconut" (in 400 names) than "cocnut" (a typo in one). A rare exact
    /// match also admits a much more common near neighbour ("humus" -> "hummus").
    fn expand(&self, w: &str) -> Vec<(u32, f32)> {
        let exact = self.vocab.get(w).copied();
        let df = |id: u32| self.postings[id as usize].len() as f32;
        if let Some(id) = exact
            && (df(id) >= 20.0 || w.chars().count() < 4)
        {
            return vec![(id, 1.0)];
        }
        if w.chars().count() < 4 {
            return Vec::new();
        }
        let Some(c) = w.chars().next() else {
            return Vec::new();
        };
        let floor = exact.map(|id| df(id) * 10.0).unwrap_or(0.0);
        let mut out: Vec<(u32, f32)> = self
            .by_initial
            .get(&c)
            .into_iter()
            .flatten()
            .filter(|&&id| Some(id) != exact && df(id) >= floor)
            .filter_map(|&id| {
                let s = strsim::jaro_winkler(w, &self.words[id as usize]) as f32;
                let min = if exact.is_some() { 0.9 } else { 0.88 };
                (s >= min).then_some((id, (s - 0.5) * 2.0 * 0.9 + 0.01 * df(id).ln()))
            })
            .collect();
        out.sort_by(|a, b| b.1.total_cmp(&a.1));
        out.truncate(3);
        for e in &mut out {
            e.1 = e.1.min(0.95);
        }
        if let Some(id) = exact {
            out.insert(0, (id, 1.0));
        }
        out
    }

    /// How well `query` names each product, best first (at most `k`).
    pub fn search(&self, query: &str, k: usize) -> Vec<Match> {
        let q = words(query);
        if q.is_empty() || self.is_empty() {
            return Vec::new();
        }
        let mut q_mass = 0.0f32;
        // doc -> (matched query mass, matched doc mass)
        let mut acc: HashMap<u32, (f32, f32)> = HashMap::new();
        let mut seen_q = std::collections::HashSet::new();
        for w in &q {
            if !seen_q.insert(w.clone()) {
                continue;
            }
            let exp = self.expand(w);
            // A word the catalog does not know still counts as unexplained query.
            let w_idf = exp
                .first()
                .map(|(id, _)| self.idf[*id as usize])
                .unwrap_or_else(|| (1.0 + self.len() as f32).ln() * 0.5);
            q_mass += w_idf;
            let mut best_for_doc: HashMap<u32, (f32, f32)> = HashMap::new();
            for (id, weight) in exp {
                let idf = self.idf[id as usize];
                for &d in &self.postings[id as usize] {
                    let e = best_for_doc.entry(d).or_insert((0.0, 0.0));
                    if weight * w_idf > e.0 {
                        *e = (weight * w_idf, weight * idf);
                    }
                }
            }
            for (d, (qm, dm)) in best_for_doc {
                let e = acc.entry(d).or_insert((0.0, 0.0));
                e.0 += qm;
                e.1 += dm;
            }
        }
        let mut out: Vec<Match> = acc
            .into_iter()
            .map(|(d, (qm, dm))| {
                let recall = qm / q_mass.max(1e-6);
                let precision = dm / self.docs[d as usize].1.max(1e-6);
                // F2: what the shopper said matters more than what the name adds.
                let f = 5.0 * recall * precision / (4.0 * precision + recall).max(1e-6);
                Match {
                    doc: d as usize,
                    sku: self.skus[d as usize].clone(),
                    score: f.min(1.0),
                }
            })
            .collect();
        out.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.doc.cmp(&b.doc)));
        out.truncate(k);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn product(sku: &str, name: &str) -> Product {
        Product {
            sku: sku.into(),
            name: name.into(),
            brand: None,
            description: None,
            department: None,
            aisle: "1".into(),
            price_cents: 100,
            currency: "USD".into(),
            tags: vec![],
            allergens: vec![],
            images: vec![],
        }
    }

    #[test]
    fn stems_and_stopwords() {
        assert_eq!(stem("Bananas"), "banana");
        assert_eq!(stem("cherries"), "cherry");
        assert_eq!(stem("tomatoes"), "tomato");
        assert_eq!(stem("glass"), "glass");
        assert_eq!(words("Where are the Frozen Peas?"), vec!["frozen", "pea"]);
    }

    #[test]
    fn exact_partial_and_misspelt_names() {
        let products = vec![
            product("1", "Organic Peanut Butter"),
            product("2", "Butter"),
            product("3", "Organic Peanut Butter Cups"),
            product("4", "Bananas"),
            product("5", "Gluten Free Penne Pasta"),
        ];
        let idx = ProductIndex::build(&products);
        let top = |q: &str| idx.search(q, 3).first().map(|m| m.sku.clone());
        assert_eq!(top("organic peanut butter"), Some("1".into()));
        assert_eq!(top("butter"), Some("2".into()));
        assert_eq!(top("peanut butter cups"), Some("3".into()));
        assert_eq!(top("bananna"), Some("4".into()));
        assert_eq!(top("glutten free pasta"), Some("5".into()));
        assert!(idx.search("xylophone", 3).is_empty());
        assert!(idx.search("", 3).is_empty());
    }
}
