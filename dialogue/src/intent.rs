//! The local intent grammar: frequent questions recognised by cue phrases, with the
//! product mention left over for the catalog lookup.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Intent {
    Price,
    Availability,
    Location,
    Compare,
    Dietary,
    Allergens,
    Promotions,
    Substitutes,
    Recommend,
    Preference,
    Staff,
    Reset,
    Greeting,
    Unknown,
}

impl Intent {
    pub fn name(self) -> &'static str {
        match self {
            Intent::Price => "price",
            Intent::Availability => "availability",
            Intent::Location => "location",
            Intent::Compare => "compare",
            Intent::Dietary => "dietary",
            Intent::Allergens => "allergens",
            Intent::Promotions => "promotions",
            Intent::Substitutes => "substitutes",
            Intent::Recommend => "recommend",
            Intent::Preference => "preference",
            Intent::Staff => "staff",
            Intent::Reset => "reset",
            Intent::Greeting => "greeting",
            Intent::Unknown => "unknown",
        }
    }
}

/// Dietary labels and the phrases that name them.
pub const DIETARY: &[(&str, &[&str])] = &[
    (
        "gluten-free",
        &[
            "gluten free",
            "without gluten",
            "no gluten",
            "celiac",
            "coeliac",
        ],
    ),
    ("vegan", &["vegan", "plant based", "without meat"]),
    ("organic", &["organic"]),
    (
        "lactose-free",
        &[
            "lactose free",
            "dairy free",
            "without dairy",
            "without milk",
            "no dairy",
            "no lactose",
        ],
    ),
    (
        "sugar-free",
        &[
            "sugar free",
            "without sugar",
            "no sugar",
            "unsweetened",
            "no added sugar",
        ],
    ),
];

/// Allergens and the words that name them in a question.
pub const ALLERGENS: &[(&str, &[&str])] = &[
    ("peanuts", &["peanut", "peanuts"]),
    (
        "tree nuts",
        &[
            "nut",
            "nuts",
            "tree nuts",
            "almond",
            "almonds",
            "walnut",
            "walnuts",
            "cashew",
            "cashews",
            "hazelnut",
            "hazelnuts",
        ],
    ),
    ("milk", &["milk", "dairy", "lactose"]),
    ("gluten", &["gluten", "wheat"]),
    ("eggs", &["egg", "eggs"]),
    ("soy", &["soy", "soya"]),
    ("fish", &["fish"]),
    ("shellfish", &["shellfish", "shrimp", "prawn", "prawns"]),
];

/// Lower case, ASCII punctuation to spaces (keeps `$` and `.` in numbers), hyphens split.
pub fn normalise(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let chars: Vec<char> = text.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        let keep_dot = c == '.'
            && i > 0
            && chars[i - 1].is_ascii_digit()
            && chars.get(i + 1).is_some_and(|n| n.is_ascii_digit());
        if c.is_alphanumeric() || c == '$' || c == '\'' || keep_dot {
            out.extend(c.to_lowercase());
        } else {
            out.push(' ');
        }
    }
    let out = out
        .replace("what's", "what is")
        .replace("where's", "where is")
        .replace("i'm", "i am")
        .replace("don't", "do not")
        .replace("'s", "")
        .replace('\'', "");
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn has(t: &str, phrase: &str) -> bool {
    // Whole-word match of a phrase in normalised text.
    let padded = format!(" {t} ");
    padded.contains(&format!(" {phrase} "))
}

fn has_any(t: &str, phrases: &[&str]) -> bool {
    phrases.iter().any(|p| has(t, p))
}

/// Dietary labels a normalised clause mentions.
pub fn dietary_in(t: &str) -> Vec<&'static str> {
    DIETARY
        .iter()
        .filter(|(_, ps)| has_any(t, ps))
        .map(|(tag, _)| *tag)
        .collect()
}

/// Allergens a normalised clause asks about.
pub fn allergens_in(t: &str) -> Vec<&'static str> {
    let mut out: Vec<&'static str> = ALLERGENS
        .iter()
        .filter(|(_, ws)| has_any(t, ws))
        .map(|(a, _)| *a)
        .collect();
    // "peanut" also matches the generic "nut" list only through "nuts"; keep one.
    if out.contains(&"peanuts")
        && !has_any(
            t,
            &[
                "tree nuts",
                "almond",
                "walnut",
                "cashew",
                "hazelnut",
                "nuts",
            ],
        )
    {
        out.retain(|a| *a != "tree nuts");
    }
    out
}

const STAFF: &[&str] = &[
    "talk to someone",
    "talk to a person",
    "talk to a human",
    "speak to someone",
    "speak to a person",
    "speak to a human",
    "call staff",
    "call someone",
    "staff member",
    "member of staff",
    "employee",
    "manager",
    "real person",
    "human",
    "someone from the store",
    "someone who works here",
    "customer service",
    "assistance",
];
const FRUSTRATION: &[&str] = &[
    "useless",
    "stupid",
    "not helpful",
    "you are wrong",
    "this is wrong",
    "not working",
    "annoying",
    "ridiculous",
    "waste of time",
];
const RESET: &[&str] = &[
    "start over",
    "reset",
    "new conversation",
    "forget everything",
    "clear",
    "never mind",
    "nevermind",
    "cancel",
];
const GREETING: &[&str] = &[
    "hello",
    "hi",
    "hey",
    "good morning",
    "good afternoon",
    "good evening",
    "thanks",
    "thank you",
];
const COMPARE: &[&str] = &[
    "compare",
    "difference between",
    "which is cheaper",
    "which one is cheaper",
    "which is better",
    "cheaper than",
    "versus",
    "vs",
];
const SUBSTITUTE: &[&str] = &[
    "instead",
    "alternative",
    "alternatives",
    "substitute",
    "something else",
    "something similar",
    "similar",
    "replacement",
    "other options",
];
const PROMO: &[&str] = &[
    "on sale",
    "sale",
    "promotion",
    "promotions",
    "on promotion",
    "deal",
    "deals",
    "discount",
    "discounts",
    "offer",
    "offers",
    "special",
    "specials",
    "coupon",
];
const ALLERGEN_CUES: &[&str] = &[
    "contain",
    "contains",
    "allergen",
    "allergens",
    "ingredients",
    "allergic",
    "safe for",
    "traces of",
    "have nuts",
    "have peanuts",
];
const PRICE: &[&str] = &[
    "how much",
    "price",
    "prices",
    "cost",
    "costs",
    "how expensive",
    "pay",
];
const LOCATION: &[&str] = &[
    "where",
    "which aisle",
    "what aisle",
    "located",
    "location",
    "find",
];
const AVAIL: &[&str] = &[
    "do you have",
    "in stock",
    "available",
    "left",
    "do you sell",
    "do you carry",
    "have any",
    "out of stock",
    "bigger size",
    "smaller size",
    "larger size",
    "large size",
    "how many",
];
const RECOMMEND: &[&str] = &[
    "recommend",
    "suggest",
    "something for",
    "what goes well",
    "goes well with",
    "ideas",
    "good for",
    "what should i",
    "show me something",
    "anything for",
];
const PREFERENCE: &[&str] = &[
    "i am vegan",
    "i am vegetarian",
    "i am gluten free",
    "i am celiac",
    "i am on a budget",
    "my budget",
    "i prefer",
    "i like",
    "i only eat",
    "i cannot eat",
    "i am allergic",
    "i do not eat",
    "i avoid",
];

/// Classifies one normalised clause.
pub fn classify(t: &str) -> Intent {
    if t.is_empty() {
        return Intent::Unknown;
    }
    if has_any(t, STAFF) || has_any(t, FRUSTRATION) {
        return Intent::Staff;
    }
    if has_any(t, RESET) {
        return Intent::Reset;
    }
    if has_any(t, PREFERENCE) {
        return Intent::Preference;
    }
    if has_any(t, COMPARE) {
        return Intent::Compare;
    }
    if has_any(t, SUBSTITUTE) {
        return Intent::Substitutes;
    }
    if has_any(t, PROMO) {
        return Intent::Promotions;
    }
    if has_any(t, ALLERGEN_CUES) && !allergens_in(t).is_empty()
        || has_any(t, &["ingredients", "allergens", "allergen"])
    {
        return Intent::Allergens;
    }
    if has_any(t, RECOMMEND) {
        return Intent::Recommend;
    }
    if has_any(t, PRICE) {
        return Intent::Price;
    }
    if has_any(t, LOCATION) {
        return Intent::Location;
    }
    let diet = !dietary_in(t).is_empty();
    // "in stock" asks about stock even when the name has "organic" or "gluten free"
    // in it: "is the gluten free bread in stock" must be answered with its stock (a
    // shopper told only that it is gluten-free walks to an empty shelf).
    if has_any(
        t,
        &["in stock", "available", "left", "how many", "out of stock"],
    ) {
        return Intent::Availability;
    }
    if diet && (t.starts_with("is ") || t.starts_with("are ") || t.starts_with("does ")) {
        return Intent::Dietary;
    }
    if has_any(t, AVAIL) {
        return if diet {
            Intent::Dietary
        } else {
            Intent::Availability
        };
    }
    if diet {
        return Intent::Dietary;
    }
    if has_any(t, GREETING) && t.split(' ').count() <= 4 {
        return Intent::Greeting;
    }
    if has_any(t, &["allergic"]) || (t.starts_with("does ") && !allergens_in(t).is_empty()) {
        return Intent::Allergens;
    }
    Intent::Unknown
}

/// Every word the grammar's cue phrases use (the speller's own vocabulary).
pub(crate) fn cue_vocabulary() -> impl Iterator<Item = &'static str> {
    let lists: [&[&'static str]; 14] = [
        STAFF,
        FRUSTRATION,
        RESET,
        GREETING,
        COMPARE,
        SUBSTITUTE,
        PROMO,
        ALLERGEN_CUES,
        PRICE,
        LOCATION,
        AVAIL,
        RECOMMEND,
        PREFERENCE,
        CUE_WORDS,
    ];
    let labelled = DIETARY
        .iter()
        .chain(ALLERGENS)
        .flat_map(|(_, phrases)| phrases.iter().copied());
    lists
        .into_iter()
        .flat_map(|l| l.iter().copied())
        .chain(labelled)
        .flat_map(str::split_whitespace)
}

/// Words that are cues, not product names: removed before the catalog lookup.
const CUE_WORDS: &[&str] = &[
    "how",
    "much",
    "price",
    "prices",
    "cost",
    "costs",
    "expensive",
    "where",
    "which",
    "what",
    "aisle",
    "located",
    "location",
    "find",
    "do",
    "does",
    "you",
    "have",
    "has",
    "in",
    "stock",
    "available",
    "left",
    "sell",
    "carry",
    "any",
    "out",
    "of",
    "bigger",
    "smaller",
    "larger",
    "size",
    "many",
    "compare",
    "difference",
    "between",
    "cheaper",
    "better",
    "than",
    "versus",
    "vs",
    "instead",
    "alternative",
    "alternatives",
    "substitute",
    "else",
    "similar",
    "replacement",
    "options",
    "sale",
    "on",
    "promotion",
    "promotions",
    "deal",
    "deals",
    "discount",
    "discounts",
    "offer",
    "offers",
    "special",
    "specials",
    "coupon",
    "contain",
    "contains",
    "allergen",
    "allergens",
    "ingredients",
    "allergic",
    "safe",
    "traces",
    "recommend",
    "suggest",
    "something",
    "goes",
    "well",
    "with",
    "ideas",
    "good",
    "for",
    "should",
    "show",
    "me",
    "anything",
    "is",
    "are",
    "the",
    "a",
    "an",
    "this",
    "that",
    "it",
    "they",
    "them",
    "these",
    "those",
    "can",
    "i",
    "get",
    "there",
    "please",
    "tell",
    "about",
    "and",
    "or",
    "one",
    "ones",
    "week",
    "today",
    "now",
    "right",
    "your",
    "store",
    "here",
    "buy",
    "want",
    "need",
    "looking",
    "am",
    "some",
    "at",
    "to",
    "be",
    "still",
    "also",
    "too",
    "pay",
    "would",
    "could",
    "like",
    "know",
    "sir",
    "ok",
    "okay",
    "hey",
    "hi",
    "hello",
    "thanks",
    "much",
    "lot",
    "cheapest",
    "price",
    "whats",
    "its",
    "so",
    "same",
    "kind",
    "brand",
    "type",
    "cheap",
    "other",
];

/// What is left of a clause once cue words are removed. Dietary phrases stay (they
/// are often part of the name, "Organic Peanut Butter") unless `strip_dietary`, for
/// questions where they are the filter ("do you have gluten free pasta").
pub fn product_mention(t: &str, strip_dietary: bool) -> String {
    let mut s = format!(" {t} ");
    if strip_dietary {
        for (_, ps) in DIETARY {
            for p in ps.iter() {
                s = s.replace(&format!(" {p} "), " ");
            }
        }
        for phrase in [
            "gluten", "sugar", "lactose", "dairy", "free", "without", "no", "not",
        ] {
            s = s.replace(&format!(" {phrase} "), " ");
        }
    }
    for phrase in ["contain", "contains", "not", "without"] {
        s = s.replace(&format!(" {phrase} "), " ");
    }
    s.split_whitespace()
        .filter(|w| !CUE_WORDS.contains(w) && !w.starts_with('$') && w.parse::<f64>().is_err())
        .collect::<Vec<_>>()
        .join(" ")
}

/// An allergen question split at its cue: (the product part, the allergen part).
/// "does the soy sauce contain peanuts" -> ("does the soy sauce", "peanuts").
pub fn split_allergen_question(t: &str) -> (String, String) {
    for cue in [
        " contain ",
        " contains ",
        " have any ",
        " has any ",
        " allergic to ",
        " safe for ",
        " traces of ",
        " made with ",
    ] {
        let padded = format!(" {t} ");
        if let Some(i) = padded.find(cue) {
            return (
                padded[..i].trim().to_string(),
                padded[i + cue.len()..].trim().to_string(),
            );
        }
    }
    (t.to_string(), t.to_string())
}

/// Refers back to a product already in the conversation.
pub fn refers_back(t: &str) -> bool {
    has_any(
        t,
        &[
            "it",
            "this",
            "that",
            "them",
            "these",
            "those",
            "this one",
            "that one",
            "the other one",
            "the other",
            "same",
        ],
    )
}

pub fn refers_to_other(t: &str) -> bool {
    has_any(t, &["the other one", "the other", "other one"])
}

/// Splits a question into clauses with one intent each: at sentence ends and at
/// "and"/"also" followed by a new question ("how much is this, and do you have it
/// gluten free").
pub fn clauses(t: &str) -> Vec<String> {
    const STARTERS: &[&str] = &[
        "do", "does", "is", "are", "where", "how", "what", "which", "can", "could", "will", "show",
        "tell",
    ];
    let mut out = Vec::new();
    let mut cur: Vec<&str> = Vec::new();
    let words: Vec<&str> = t.split(' ').collect();
    let mut i = 0;
    while i < words.len() {
        let w = words[i];
        let next = words.get(i + 1).copied().unwrap_or("");
        if (w == "and" || w == "also") && STARTERS.contains(&next) && !cur.is_empty() {
            out.push(cur.join(" "));
            cur.clear();
            i += 1;
            continue;
        }
        cur.push(w);
        i += 1;
    }
    if !cur.is_empty() {
        out.push(cur.join(" "));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intents_of_common_questions() {
        let cases = [
            ("how much is the organic peanut butter", Intent::Price),
            ("where can i find gluten free pasta", Intent::Location),
            ("do you have oat milk in stock", Intent::Availability),
            ("is the chocolate cake gluten free", Intent::Dietary),
            ("does this contain peanuts", Intent::Allergens),
            ("is the almond milk on sale", Intent::Promotions),
            ("compare the price of these two cereals", Intent::Compare),
            ("can i talk to someone from the store", Intent::Staff),
            ("start over", Intent::Reset),
            ("what goes well with pasta sauce", Intent::Recommend),
            ("i am vegan", Intent::Preference),
            ("what is something instead of butter", Intent::Substitutes),
            ("hello", Intent::Greeting),
            ("what is the meaning of life", Intent::Unknown),
        ];
        for (q, want) in cases {
            assert_eq!(classify(&normalise(q)), want, "{q}");
        }
    }

    #[test]
    fn mentions_and_clauses() {
        assert_eq!(
            product_mention(&normalise("How much is the organic peanut butter?"), false),
            "organic peanut butter"
        );
        assert_eq!(
            product_mention(&normalise("Do you have gluten-free pasta?"), true),
            "pasta"
        );
        assert_eq!(
            product_mention(&normalise("Where can I find gluten-free pasta?"), false),
            "gluten free pasta"
        );
        assert_eq!(
            clauses(&normalise(
                "How much is this, and do you have it gluten-free?"
            )),
            vec!["how much is this", "do you have it gluten free"]
        );
        assert_eq!(
            clauses("compare milk and bread"),
            vec!["compare milk and bread"]
        );
        assert_eq!(normalise("It's $3.49!"), "it $3.49");
    }
}
