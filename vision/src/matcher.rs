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
    /// Weight of the OCR match (fraction of the product name's words read, 0..1).
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
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Signals {
    /// Best cosine to an enrolled photo; `None` without photos.
    pub visual: Option<f32>,
    /// Cosine of the image to the product's text in the joint space.
    pub zero_shot: f32,
    /// Fraction of the product name's words found in the OCR text; `None` without OCR text.
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
#[derive(Debug, Clone, Serialize)]
pub struct Candidate {
    pub sku: String,
    pub name: String,
    /// Fused score (a logit).
    pub score: f32,
    pub signals: Signals,
    /// Which signals pushed this product up: "photo", "zero-shot", "ocr".
    pub contributed: Vec<&'static str>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
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
    /// Normalised words read by OCR.
    pub ocr_words: &'a [String],
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

/// Fraction of the name's words (2+ characters) found among the OCR words; a
/// word read with one edit (OCR confuses l/1, O/0) counts.
pub fn ocr_match(name: &str, ocr_words: &[String]) -> Option<f32> {
    if ocr_words.is_empty() {
        return None;
    }
    let name_words: Vec<String> = words(name).into_iter().filter(|w| w.len() >= 2).collect();
    if name_words.is_empty() {
        return Some(0.0);
    }
    let found = name_words
        .iter()
        .filter(|w| {
            ocr_words
                .iter()
                .any(|o| o == *w || (w.len() >= 4 && within_one_edit(o, w)))
        })
        .count();
    Some(found as f32 / name_words.len() as f32)
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
    let mut scored: Vec<(f32, usize, Signals)> = entries
        .iter()
        .enumerate()
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
                ocr: ocr_match(&e.name, query.ocr_words),
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

    #[test]
    fn ocr_match_fraction() {
        let ocr = words("ORGANIC Whole Milk 1 gal");
        assert_eq!(ocr_match("Organic Whole Milk", &ocr), Some(1.0));
        assert_eq!(ocr_match("Whole Wheat Bread", &ocr), Some(1.0 / 3.0));
        assert_eq!(ocr_match("Whole Wheat Bread", &[]), None);
    }

    #[test]
    fn empty_catalog_is_unknown() {
        let r = rank(&[], &Query::default(), &Fusion::default(), 5);
        assert_eq!(r.decision, Decision::Unknown);
        assert!(r.matches.is_empty());
    }
}
