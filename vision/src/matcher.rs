//! Product identification: fuse, per catalog product, the visual similarity to
//! its enrolled reference photos, the zero-shot similarity of the image to its
//! name and description, and the label text read by OCR; calibrate the best
//! fused score into a confidence; below the threshold the answer is "unknown
//! product" (open-set rejection), never a forced guess.
//!
//! Search is exact (a dot product per vector, vectors L2-normalised): at 50k
//! products with 384-d text vectors it is a few milliseconds on one core. For
//! 1M+ products see ARCHITECTURE.md (approximate index).

use serde::{Deserialize, Serialize};

/// One catalog product as the matcher sees it.
#[derive(Debug, Clone)]
pub struct Entry {
    pub sku: String,
    pub name: String,
    /// The product's text (name, description) in the joint space, L2-normalised.
    pub text: Vec<f32>,
    /// Visual embeddings of enrolled reference photos, L2-normalised.
    pub references: Vec<Vec<f32>>,
}

/// Weights of the fusion and of the calibration. The defaults are set for a
/// grocery catalog scanned mostly zero-shot and checked on real photos (tests);
/// `aisle eval vision` fits the zero-shot weight and the calibration by logistic
/// regression on Fashion-MNIST with 2 of 10 classes held out as unknown products,
/// where the image model's ImageNet certainty means little (see ARCHITECTURE.md).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Fusion {
    /// Weight and centre of the best reference-photo cosine (products with photos).
    pub visual_weight: f32,
    pub visual_centre: f32,
    /// Weight and centre of the zero-shot image-text cosine.
    pub zero_shot_weight: f32,
    pub zero_shot_centre: f32,
    /// Weight of the OCR match (Dice overlap of the name's words and the words
    /// read, 0..1).
    pub ocr_weight: f32,
    /// Confidence = sigmoid(bias + top * score + margin * (score - second score)
    /// + certainty * how sure the image model is of what it sees).
    pub bias: f32,
    pub top: f32,
    pub margin: f32,
    pub certainty: f32,
    /// Below this confidence the decision is `unknown`.
    pub threshold: f32,
}

impl Default for Fusion {
    fn default() -> Self {
        Fusion {
            visual_weight: 10.0,
            visual_centre: 0.6,
            zero_shot_weight: 4.0,
            zero_shot_centre: 0.35,
            ocr_weight: 6.0,
            bias: -2.0,
            top: 1.0,
            margin: 2.0,
            certainty: 3.0,
            threshold: 0.6,
        }
    }
}

/// What each signal said about one product.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Signals {
    /// Best cosine to an enrolled photo; `None` without photos.
    pub visual: Option<f32>,
    /// Cosine of the image to the product's text in the joint space.
    pub zero_shot: f32,
    /// Dice overlap of the product name's words and the words read on the label;
    /// `None` without label text.
    pub ocr: Option<f32>,
}

impl Fusion {
    pub fn score(&self, s: &Signals) -> f32 {
        let mut x = self.zero_shot_weight * (s.zero_shot - self.zero_shot_centre);
        if let Some(v) = s.visual {
            x += self.visual_weight * (v - self.visual_centre);
        }
        if let Some(o) = s.ocr {
            x += self.ocr_weight * o;
        }
        x
    }

    pub fn confidence(&self, top: f32, second: Option<f32>, certainty: f32) -> f32 {
        let margin = second.map_or(1.0, |s| top - s);
        sigmoid(self.bias + self.top * top + self.margin * margin + self.certainty * certainty)
    }
}

pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// One ranked product.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Candidate {
    pub sku: String,
    pub name: String,
    /// Fused score (a logit).
    pub score: f32,
    pub signals: Signals,
    /// Which signals pushed this product up: "photo", "zero-shot", "ocr".
    pub contributed: Vec<&'static str>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    Identified,
    Unknown,
}

#[derive(Debug, Clone, Serialize)]
pub struct Ranking {
    pub decision: Decision,
    /// Calibrated probability that the top match is the product in the image.
    pub confidence: f32,
    pub matches: Vec<Candidate>,
}

/// What the image gave, for matching.
#[derive(Debug, Clone, Default)]
pub struct Query<'a> {
    pub visual: &'a [f32],
    pub joint: &'a [f32],
    /// OCR evidence per entry ([`OcrIndex::scores`]); `None` without label text.
    pub ocr: Option<&'a [f32]>,
    /// How sure the image model is of what it sees, 0..1 (ConSE: the top
    /// ImageNet class probability); zero-shot matches of a vague image are weak.
    pub certainty: f32,
}

/// Dot product with eight independent accumulators, so it vectorises.
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0f32; 8];
    let mut ca = a.chunks_exact(8);
    let mut cb = b.chunks_exact(8);
    for (x, y) in (&mut ca).zip(&mut cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    acc.iter().sum::<f32>() + tail
}

/// Lowercase alphanumeric words.
pub fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// Words for matching label text: lowercase, split at anything that is not a
/// letter or digit and between letters and digits ("500g" -> "500", "g"); one
/// letter and digits-only tokens (prices, weights) carry no product identity.
pub fn label_words(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for w in words(text) {
        let mut cur = String::new();
        let mut digit = None;
        for c in w.chars() {
            let d = c.is_numeric();
            if digit.is_some_and(|p| p != d) && !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            digit = Some(d);
            cur.push(c);
        }
        if !cur.is_empty() {
            out.push(cur);
        }
    }
    out.retain(|w| w.chars().count() >= 2 && !w.chars().all(char::is_numeric));
    out
}

/// The catalog's product-name words, for matching text read by OCR: each word
/// read counts when it is a name word exactly, within one edit (OCR confuses l/1,
/// O/0; words of 4+ letters), or when it splits into name words (small text
/// loses its spaces: "GreekYogurt"). A product's OCR evidence is the Dice overlap
/// of its name's words and the words read, so "Organic Whole Milk" beats "Whole
/// Milk" when all three words are on the label, and extra label text (weights,
/// claims) lowers every product alike.
#[derive(Debug, Clone, Default)]
pub struct OcrIndex {
    vocab: std::collections::HashMap<String, u32>,
    /// Vocabulary words by length in characters, for one-edit lookups.
    by_len: Vec<Vec<(String, u32)>>,
    /// Entries whose name has the word.
    postings: Vec<Vec<u32>>,
    /// Distinct name words per entry.
    name_words: Vec<u16>,
}

impl OcrIndex {
    pub fn build(entries: &[Entry]) -> Self {
        let mut idx = OcrIndex::default();
        for (i, e) in entries.iter().enumerate() {
            let mut ws = label_words(&e.name);
            ws.sort();
            ws.dedup();
            idx.name_words.push(ws.len().min(u16::MAX as usize) as u16);
            for w in ws {
                let next = idx.vocab.len() as u32;
                let id = *idx.vocab.entry(w.clone()).or_insert(next);
                if id == next {
                    idx.postings.push(Vec::new());
                    let n = w.chars().count();
                    if idx.by_len.len() <= n {
                        idx.by_len.resize(n + 1, Vec::new());
                    }
                    idx.by_len[n].push((w, id));
                }
                idx.postings[id as usize].push(i as u32);
            }
        }
        idx
    }

    /// Name words found in `text` (ids, distinct) and how many words were read.
    fn read(&self, text: &str) -> (Vec<u32>, usize) {
        let mut found = Vec::new();
        let mut read = 0;
        let mut seen = std::collections::HashSet::new();
        for raw in words(text) {
            if !seen.insert(raw.clone()) {
                continue;
            }
            // The token as read first ("g1uten" is "gluten" misread), then its
            // letter and digit runs ("500g").
            if raw.chars().any(char::is_alphabetic)
                && let Some(id) = self.lookup(&raw)
            {
                found.push(id);
                read += 1;
                continue;
            }
            for w in label_words(&raw) {
                if let Some(id) = self.lookup(&w) {
                    found.push(id);
                    read += 1;
                } else if let Some(parts) = self.split(&w) {
                    read += parts.len();
                    found.extend(parts);
                } else {
                    read += 1;
                }
            }
        }
        found.sort_unstable();
        found.dedup();
        (found, read)
    }

    /// A name word equal to `w`, or within one edit of it (4+ characters).
    fn lookup(&self, w: &str) -> Option<u32> {
        if let Some(&id) = self.vocab.get(w) {
            return Some(id);
        }
        let n = w.chars().count();
        if n < 4 {
            return None;
        }
        (n - 1..=n + 1)
            .filter_map(|l| self.by_len.get(l))
            .flatten()
            .find(|(v, _)| v.chars().count() >= 4 && within_one_edit(w, v))
            .map(|(_, id)| *id)
    }

    /// `w` as a run of 2+ name words of 2+ letters each (fewest pieces).
    fn split(&self, w: &str) -> Option<Vec<u32>> {
        let chars: Vec<char> = w.chars().collect();
        let n = chars.len();
        if n < 5 || !chars.iter().all(|c| c.is_alphabetic()) {
            return None;
        }
        // best[i]: fewest pieces covering chars[..i], and where the last began.
        let mut best: Vec<Option<(usize, usize, u32)>> = vec![None; n + 1];
        best[0] = Some((0, 0, 0));
        for end in 2..=n {
            for start in 0..=end - 2 {
                let Some((pieces, _, _)) = best[start] else {
                    continue;
                };
                let piece: String = chars[start..end].iter().collect();
                if let Some(&id) = self.vocab.get(&piece)
                    && best[end].is_none_or(|(p, _, _)| pieces + 1 < p)
                {
                    best[end] = Some((pieces + 1, start, id));
                }
            }
        }
        let (pieces, _, _) = best[n]?;
        if pieces < 2 {
            return None;
        }
        let mut ids = Vec::with_capacity(pieces);
        let mut at = n;
        while at > 0 {
            let (_, start, id) = best[at]?;
            ids.push(id);
            at = start;
        }
        ids.reverse();
        Some(ids)
    }

    /// Per entry (in build order), the Dice overlap of its name's words with the
    /// words of `text`; `None` when no word was read.
    pub fn scores(&self, text: &str) -> Option<Vec<f32>> {
        let (found, read) = self.read(text);
        if read == 0 {
            return None;
        }
        let mut hits = vec![0u16; self.name_words.len()];
        for id in found {
            for &e in &self.postings[id as usize] {
                hits[e as usize] = hits[e as usize].saturating_add(1);
            }
        }
        Some(
            hits.iter()
                .zip(&self.name_words)
                .map(|(&h, &n)| {
                    if h == 0 {
                        0.0
                    } else {
                        2.0 * f32::from(h) / (f32::from(n) + read as f32)
                    }
                })
                .collect(),
        )
    }
}

fn within_one_edit(a: &str, b: &str) -> bool {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    if a.len().abs_diff(b.len()) > 1 {
        return false;
    }
    let (mut i, mut j, mut edits) = (0, 0, 0);
    while i < a.len() && j < b.len() {
        if a[i] == b[j] {
            i += 1;
            j += 1;
            continue;
        }
        edits += 1;
        if edits > 1 {
            return false;
        }
        match a.len().cmp(&b.len()) {
            std::cmp::Ordering::Greater => i += 1,
            std::cmp::Ordering::Less => j += 1,
            std::cmp::Ordering::Equal => {
                i += 1;
                j += 1;
            }
        }
    }
    edits + (a.len() - i) + (b.len() - j) <= 1
}

/// Ranks `entries` for `query` and decides.
pub fn rank(entries: &[Entry], query: &Query<'_>, fusion: &Fusion, top_k: usize) -> Ranking {
    rank_among(entries, 0..entries.len(), query, fusion, top_k)
}

/// Ranks only the entries at `candidates` (from an approximate index, say) and
/// decides; the same as [`rank`] when every entry is a candidate.
pub fn rank_among(
    entries: &[Entry],
    candidates: impl IntoIterator<Item = usize>,
    query: &Query<'_>,
    fusion: &Fusion,
    top_k: usize,
) -> Ranking {
    let mut scored: Vec<(f32, usize, Signals)> = candidates
        .into_iter()
        .filter_map(|i| entries.get(i).map(|e| (i, e)))
        .map(|(i, e)| {
            let visual = (!e.references.is_empty() && !query.visual.is_empty()).then(|| {
                e.references
                    .iter()
                    .map(|r| dot(r, query.visual))
                    .fold(f32::NEG_INFINITY, f32::max)
            });
            let signals = Signals {
                visual,
                zero_shot: if query.joint.is_empty() {
                    0.0
                } else {
                    dot(&e.text, query.joint)
                },
                ocr: query.ocr.and_then(|o| o.get(i).copied()),
            };
            (fusion.score(&signals), i, signals)
        })
        .collect();
    let k = top_k.max(2).min(scored.len());
    if k > 0 && k < scored.len() {
        scored.select_nth_unstable_by(k - 1, |a, b| b.0.total_cmp(&a.0));
        scored.truncate(k);
    }
    scored.sort_by(|a, b| b.0.total_cmp(&a.0));
    let confidence = match scored.as_slice() {
        [] => 0.0,
        [only] => fusion.confidence(only.0, None, query.certainty),
        [first, second, ..] => fusion.confidence(first.0, Some(second.0), query.certainty),
    };
    let decision = if !scored.is_empty() && confidence >= fusion.threshold {
        Decision::Identified
    } else {
        Decision::Unknown
    };
    let matches = scored
        .into_iter()
        .take(top_k.max(1))
        .map(|(score, i, signals)| {
            let mut contributed = Vec::new();
            if signals.visual.is_some_and(|v| v > fusion.visual_centre) {
                contributed.push("photo");
            }
            if signals.zero_shot > fusion.zero_shot_centre {
                contributed.push("zero-shot");
            }
            if signals.ocr.is_some_and(|o| o > 0.0) {
                contributed.push("ocr");
            }
            Candidate {
                sku: entries[i].sku.clone(),
                name: entries[i].name.clone(),
                score,
                signals,
                contributed,
            }
        })
        .collect();
    Ranking {
        decision,
        confidence,
        matches,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_edit() {
        assert!(within_one_edit("gluten", "gluten"));
        assert!(within_one_edit("g1uten", "gluten"));
        assert!(within_one_edit("gluen", "gluten"));
        assert!(!within_one_edit("glu", "gluten"));
        assert!(!within_one_edit("g1uter", "gluten"));
    }

    fn entry(name: &str) -> Entry {
        Entry {
            sku: name.to_string(),
            name: name.to_string(),
            text: Vec::new(),
            references: Vec::new(),
        }
    }

    #[test]
    fn label_words_split_letters_from_digits() {
        assert_eq!(
            label_words("Vanilla4x125g $4.49 ORGANIC"),
            vec!["vanilla", "organic"]
        );
        assert_eq!(label_words("7up 500ml"), vec!["up", "ml"]);
    }

    #[test]
    fn ocr_index_scores_by_overlap() {
        let entries: Vec<Entry> = [
            "Organic Whole Milk",
            "Whole Milk",
            "Whole Wheat Bread",
            "Greek Yogurt",
            "Gluten Free Pasta",
        ]
        .iter()
        .map(|n| entry(n))
        .collect();
        let idx = OcrIndex::build(&entries);
        let s = idx.scores("ORGANIC Whole Milk 1 gal").expect("words read");
        // 3 words read (+ "gal"): Dice 2*3/(3+4) and 2*2/(2+4).
        assert!((s[0] - 6.0 / 7.0).abs() < 1e-6, "{s:?}");
        assert!((s[1] - 4.0 / 6.0).abs() < 1e-6, "{s:?}");
        assert!(s[0] > s[1] && s[1] > s[2] && s[3] == 0.0, "{s:?}");
        // Lost spaces and one misread letter still find the product.
        let s = idx.scores("GreekYogurt").expect("read");
        assert!((s[3] - 1.0).abs() < 1e-6, "{s:?}");
        let s = idx.scores("G1uten Free Pasta").expect("read");
        assert!((s[4] - 1.0).abs() < 1e-6, "{s:?}");
        // Nothing read, or only numbers: no evidence at all.
        assert!(idx.scores("").is_none());
        assert!(idx.scores("$4.49 500").is_none());
        // Words that are no product's: evidence of nothing.
        let s = idx.scores("Fragile handle with care").expect("read");
        assert!(s.iter().all(|&x| x == 0.0));
    }

    #[test]
    fn empty_catalog_is_unknown() {
        let r = rank(&[], &Query::default(), &Fusion::default(), 5);
        assert_eq!(r.decision, Decision::Unknown);
        assert!(r.matches.is_empty());
    }
}
