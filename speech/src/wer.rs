//! Word error rate: word-level edit distance over the reference length, after the
//! usual normalisation (lower case, punctuation removed, numbers as written).

/// Lower-cased words with punctuation stripped (apostrophes inside words kept).
pub fn normalise(text: &str) -> Vec<String> {
    text.to_lowercase()
        .replace('-', " ")
        .split_whitespace()
        .map(|w| {
            w.chars()
                .filter(|c| c.is_alphanumeric() || *c == '\'')
                .collect::<String>()
                .trim_matches('\'')
                .to_string()
        })
        .filter(|w| !w.is_empty())
        .collect()
}

/// (edits, reference words).
pub fn word_errors(reference: &str, hypothesis: &str) -> (usize, usize) {
    let r = normalise(reference);
    let h = normalise(hypothesis);
    let mut prev: Vec<usize> = (0..=h.len()).collect();
    let mut cur = vec![0; h.len() + 1];
    for (i, rw) in r.iter().enumerate() {
        cur[0] = i + 1;
        for (j, hw) in h.iter().enumerate() {
            let sub = prev[j] + usize::from(rw != hw);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    (prev[h.len()], r.len())
}

/// Word error rate of one pair (0 for two empty texts).
pub fn wer(reference: &str, hypothesis: &str) -> f64 {
    let (e, n) = word_errors(reference, hypothesis);
    if n == 0 {
        return if e == 0 { 0.0 } else { 1.0 };
    }
    e as f64 / n as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wer_table() {
        for (r, h, want) in [
            (
                "how much is the peanut butter",
                "How much is the peanut butter?",
                0.0,
            ),
            (
                "how much is the peanut butter",
                "how much is peanut butter",
                1.0 / 6.0,
            ),
            (
                "where is the gluten free pasta",
                "where is the gluten-free pasta",
                0.0,
            ),
            ("a b c d", "a x c d e", 0.5),
            ("", "", 0.0),
            ("", "noise", 1.0),
            ("do you have it", "", 1.0),
        ] {
            assert!(
                (wer(r, h) - want).abs() < 1e-9,
                "{r:?} vs {h:?}: {}",
                wer(r, h)
            );
        }
    }
}
