//! Spelling, for questions typed on the kiosk's screen: "how much r the banannas",
//! "is the cofee in stok". A word the store does not know (not in a product name or
//! brand, not one of the grammar's cue words, not a common English word) becomes the
//! closest word it does know, by edit distance with transpositions (optimal string
//! alignment): at most 1 edit for words of up to 7 letters, 2 for longer ones, never
//! for words under 3 letters. Texting shorthand ("u", "r", "pls") is expanded.
//!
//! The engine tries the spelled question only where the grammar did not understand
//! the shopper's own words, so a question the grammar reads is never changed; the
//! LLM fallback then reads the spelled clause (measured better than the original on
//! the held-out questions: misspelled words defeat its product check).

use std::collections::{HashMap, HashSet};

/// Common English words a shopper's question may hold that are neither cue words nor
/// product words: they are never "corrected" into one.
const COMMON: &[&str] = &[
    "about", "after", "again", "all", "along", "already", "also", "always", "another", "around",
    "ask", "asking", "back", "because", "been", "before", "being", "best", "big", "bit", "both",
    "bought", "bring", "but", "by", "call", "came", "come", "coming", "day", "did", "didnt",
    "does", "doing", "done", "dont", "down", "each", "eat", "either", "enough", "even", "ever",
    "every", "few", "first", "from", "gave", "give", "go", "goes", "going", "gone", "got",
    "gotten", "guess", "had", "happen", "he", "help", "her", "him", "his", "hope", "how", "if",
    "into", "just", "keep", "kept", "kids", "last", "later", "least", "less", "let", "little",
    "long", "look", "lot", "lots", "love", "made", "make", "many", "may", "maybe", "mean", "might",
    "mine", "more", "most", "must", "my", "near", "never", "new", "next", "nice", "no", "not",
    "nothing", "off", "often", "old", "once", "only", "our", "over", "own", "part", "people",
    "person", "place", "put", "quite", "rather", "really", "said", "saw", "say", "see", "seen",
    "she", "since", "small", "so", "soon", "sorry", "still", "such", "sure", "take", "than",
    "their", "then", "they", "thing", "things", "think", "though", "through", "time", "told",
    "took", "try", "trying", "under", "until", "up", "us", "use", "used", "very", "wait", "was",
    "way", "we", "well", "went", "were", "when", "whether", "while", "who", "whole", "why", "will",
    "wish", "without", "wonder", "work", "works", "yes", "yet", "you", "yours", "weather", "story",
    "game", "night", "won", "joke", "news", "music", "song", "movie", "name", "friend", "home",
    "car",
];

/// Texting shorthand and its words.
const SHORTHAND: &[(&str, &str)] = &[
    ("u", "you"),
    ("r", "are"),
    ("ur", "your"),
    ("ya", "you"),
    ("pls", "please"),
    ("plz", "please"),
    ("thx", "thanks"),
    ("ty", "thank you"),
    ("n", "and"),
    ("cuz", "because"),
    ("gimme", "give me"),
    ("lemme", "let me"),
    ("wanna", "want to"),
    ("gonna", "going to"),
    ("dunno", "do not know"),
];

/// The words a store knows, for correcting the ones it does not.
pub struct Speller {
    known: HashSet<String>,
    /// Known words of 3+ letters by length, each with how often the store uses it
    /// (cue words count as very common).
    by_len: HashMap<usize, Vec<(String, u32)>>,
}

impl Speller {
    /// The vocabulary of these product names and brands, the grammar's cue words
    /// and common English.
    pub fn new<'a>(names: impl Iterator<Item = &'a str>) -> Self {
        let mut count: HashMap<String, u32> = HashMap::new();
        for name in names {
            for w in crate::intent::normalise(name).split(' ') {
                if w.chars().all(|c| c.is_ascii_alphabetic()) && !w.is_empty() {
                    *count.entry(w.to_string()).or_default() += 1;
                }
            }
        }
        let cues = crate::intent::cue_vocabulary()
            .chain(
                crate::fallback::EXAMPLES
                    .iter()
                    .flat_map(|(_, qs)| qs.iter().flat_map(|q| q.split_whitespace())),
            )
            .chain(aisle_catalog::search::STOPWORDS.iter().copied());
        for w in cues {
            count.insert(w.to_string(), u32::MAX / 2);
        }
        let known: HashSet<String> = count
            .keys()
            .cloned()
            .chain(COMMON.iter().map(|w| w.to_string()))
            .collect();
        let mut by_len: HashMap<usize, Vec<(String, u32)>> = HashMap::new();
        for (w, n) in count {
            if w.len() >= 3 {
                by_len.entry(w.len()).or_default().push((w, n));
            }
        }
        for v in by_len.values_mut() {
            v.sort();
        }
        Self { known, by_len }
    }

    /// The clause (normalised) with its unknown words spelled as the store spells
    /// them; None when nothing changed.
    pub fn correct(&self, clause: &str) -> Option<String> {
        let mut changed = false;
        let words: Vec<String> = clause
            .split(' ')
            .map(|w| match self.word(w) {
                Some(c) => {
                    changed = true;
                    c
                }
                None => w.to_string(),
            })
            .collect();
        changed.then(|| words.join(" "))
    }

    fn word(&self, w: &str) -> Option<String> {
        if let Some((_, long)) = SHORTHAND.iter().find(|(s, _)| *s == w) {
            return Some((*long).to_string());
        }
        if w.len() < 3 || self.known.contains(w) || !w.chars().all(|c| c.is_ascii_lowercase()) {
            return None;
        }
        let max = if w.len() <= 7 { 1 } else { 2 };
        let first = w.chars().next();
        // (distance, other first letter, less used, word): the smallest wins.
        let mut best: Option<(usize, bool, u32, &str)> = None;
        for len in w.len().saturating_sub(max)..=w.len() + max {
            for (cand, n) in self.by_len.get(&len).into_iter().flatten() {
                let d = strsim::osa_distance(w, cand);
                if d == 0 || d > max {
                    continue;
                }
                let key = (d, cand.chars().next() != first, u32::MAX - n, cand.as_str());
                if best.is_none_or(|b| key < b) {
                    best = Some(key);
                }
            }
        }
        best.map(|(_, _, _, c)| c.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_words_take_the_stores_spelling_and_known_ones_stay() {
        let s = Speller::new(
            [
                "Sharp Cheddar",
                "Bananas",
                "Whole Wheat Bread",
                "Red Pepper",
                "Eggs",
            ]
            .into_iter(),
        );
        assert_eq!(
            s.correct("how much r the banannas").as_deref(),
            Some("how much are the bananas")
        );
        assert_eq!(
            s.correct("is the chedar in stok").as_deref(),
            Some("is the cheddar in stock")
        );
        // "bred" is one edit from "bread" and from "red": the same first letter wins.
        assert_eq!(
            s.correct("prise of bred").as_deref(),
            Some("price of bread")
        );
        // Known words, short words and words with no near neighbour are left alone.
        assert_eq!(s.correct("what is the weather"), None);
        assert_eq!(s.correct("xq zzzzzz"), None);
        assert_eq!(s.correct("how much are eggs"), None);
    }
}
