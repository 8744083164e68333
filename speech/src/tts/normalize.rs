//! Text normalisation for spoken retail answers: what the screen shows as "$13.49",
//! "2L", "20%" or "Aisle 24" is read as "thirteen dollars forty-nine", "two liters",
//! "twenty percent", "aisle twenty-four". Product codes (SKUs) and web addresses are
//! not read out; markup-looking tags are dropped. Then the text is cut into sentences,
//! each spoken as soon as it is synthesised.

use std::sync::LazyLock;

use regex::{Captures, Regex};

/// Sentences longer than this are cut at a word boundary (bounded model input).
pub const MAX_SENTENCE_CHARS: usize = 400;

const ONES: [&str; 20] = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
];
const TENS: [&str; 10] = [
    "", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety",
];
const SCALES: [&str; 5] = ["", "thousand", "million", "billion", "trillion"];

fn below_thousand(n: u64, out: &mut Vec<String>) {
    let (h, rest) = (n / 100, n % 100);
    if h > 0 {
        out.push(ONES[h as usize].to_string());
        out.push("hundred".to_string());
    }
    if rest == 0 {
        return;
    }
    if rest < 20 {
        out.push(ONES[rest as usize].to_string());
    } else if rest % 10 == 0 {
        out.push(TENS[(rest / 10) as usize].to_string());
    } else {
        out.push(format!(
            "{}-{}",
            TENS[(rest / 10) as usize],
            ONES[(rest % 10) as usize]
        ));
    }
}

/// A cardinal number in words; numbers of 16 digits or more are read digit by digit.
pub fn number_words(digits: &str) -> String {
    let digits = digits.trim_start_matches('0');
    if digits.is_empty() {
        return "zero".into();
    }
    if digits.len() > 15 {
        return digit_words(digits);
    }
    let Ok(mut n) = digits.parse::<u64>() else {
        return digit_words(digits);
    };
    let mut groups = Vec::new();
    while n > 0 {
        groups.push(n % 1000);
        n /= 1000;
    }
    let mut out = Vec::new();
    for (i, g) in groups.iter().enumerate().rev() {
        if *g == 0 {
            continue;
        }
        below_thousand(*g, &mut out);
        if i > 0 {
            out.push(SCALES[i].to_string());
        }
    }
    out.join(" ")
}

/// Each digit as a word ("4 0 7" for long codes and numbers).
pub fn digit_words(digits: &str) -> String {
    digits
        .chars()
        .filter_map(|c| c.to_digit(10))
        .map(|d| ONES[d as usize])
        .collect::<Vec<_>>()
        .join(" ")
}

fn ordinal_words(digits: &str) -> String {
    let cardinal = number_words(digits);
    let (head, last) = match cardinal.rfind([' ', '-']) {
        Some(i) => cardinal.split_at(i + 1),
        None => ("", cardinal.as_str()),
    };
    let last = match last {
        "one" => "first".to_string(),
        "two" => "second".to_string(),
        "three" => "third".to_string(),
        "five" => "fifth".to_string(),
        "eight" => "eighth".to_string(),
        "nine" => "ninth".to_string(),
        "twelve" => "twelfth".to_string(),
        w if w.ends_with('y') => format!("{}ieth", &w[..w.len() - 1]),
        w => format!("{w}th"),
    };
    format!("{head}{last}")
}

/// "2.5" as "two point five"; an integer with thousands separators as one number.
fn decimal_words(text: &str) -> String {
    let text = text.replace(',', "");
    match text.split_once('.') {
        Some((int, frac)) if !frac.is_empty() => {
            format!("{} point {}", number_words(int), digit_words(frac))
        }
        Some((int, _)) => number_words(int),
        None => number_words(&text),
    }
}

/// A unit's name in the singular and the plural.
type Names = (&'static str, &'static str);

/// The names of a currency's main and minor units.
fn currency_names(code: &str) -> Option<(Names, Names)> {
    Some(match code {
        "$" | "USD" => (("dollar", "dollars"), ("cent", "cents")),
        "CAD" => (("Canadian dollar", "Canadian dollars"), ("cent", "cents")),
        "AUD" => (
            ("Australian dollar", "Australian dollars"),
            ("cent", "cents"),
        ),
        "€" | "EUR" => (("euro", "euros"), ("cent", "cents")),
        "£" | "GBP" => (("pound", "pounds"), ("penny", "pence")),
        "CHF" => (("Swiss franc", "Swiss francs"), ("centime", "centimes")),
        _ => return None,
    })
}

/// "$13.49" as "thirteen dollars forty-nine"; "$0.99" as "ninety-nine cents".
fn money_words(code: &str, amount: &str) -> String {
    let amount = amount.replace(',', "");
    let (int, frac) = match amount.split_once('.') {
        Some((i, f)) => (i.to_string(), f.to_string()),
        None => (amount.clone(), String::new()),
    };
    let int = if int.is_empty() { "0".to_string() } else { int };
    let Some(((one, many), (minor_one, minor_many))) = currency_names(code) else {
        let spelled: Vec<String> = code.chars().map(|c| c.to_string()).collect();
        return format!("{} {}", decimal_words(&amount), spelled.join(" "));
    };
    let cents: u64 = match frac.len() {
        0 => 0,
        1 => frac.parse::<u64>().unwrap_or(0) * 10,
        2 => frac.parse().unwrap_or(0),
        _ => return format!("{} {many}", decimal_words(&amount)),
    };
    let whole = int.trim_start_matches('0');
    let unit = if whole == "1" { one } else { many };
    if whole.is_empty() && cents > 0 {
        let minor = if cents == 1 { minor_one } else { minor_many };
        return format!("{} {minor}", number_words(&cents.to_string()));
    }
    if cents == 0 {
        return format!("{} {unit}", number_words(&int));
    }
    format!(
        "{} {unit} {}",
        number_words(&int),
        number_words(&cents.to_string())
    )
}

fn unit_words(unit: &str, one: bool) -> Option<&'static str> {
    let (s, p) = match unit.to_ascii_lowercase().as_str() {
        "g" | "gr" => ("gram", "grams"),
        "kg" => ("kilogram", "kilograms"),
        "mg" => ("milligram", "milligrams"),
        "l" => ("liter", "liters"),
        "ml" => ("milliliter", "milliliters"),
        "cl" => ("centiliter", "centiliters"),
        "oz" => ("ounce", "ounces"),
        "fl oz" | "floz" => ("fluid ounce", "fluid ounces"),
        "lb" | "lbs" => ("pound", "pounds"),
        "ct" => ("count", "count"),
        "pk" => ("pack", "pack"),
        "cm" => ("centimeter", "centimeters"),
        "mm" => ("millimeter", "millimeters"),
        "m" => ("meter", "meters"),
        _ => return None,
    };
    Some(if one { s } else { p })
}

static TAG: LazyLock<Regex> = LazyLock::new(|| re(r"</?[A-Za-z][^<>]{0,200}>"));
static URL: LazyLock<Regex> =
    LazyLock::new(|| re(r"(?i)\b(?:https?://|www\.)[^\s]+|\b[\w.+-]+@[\w-]+\.[\w.]+"));
static DATE: LazyLock<Regex> = LazyLock::new(|| re(r"\b(\d{4})-(\d{2})-(\d{2})\b"));
static MONEY: LazyLock<Regex> = LazyLock::new(|| {
    re(r"(?:([$€£])|\b(USD|CAD|AUD|EUR|GBP|CHF|[A-Z]{3}) ?)(\d{1,3}(?:,\d{3})+|\d+)(\.\d+)?")
});
static PERCENT: LazyLock<Regex> = LazyLock::new(|| re(r"(\d+(?:\.\d+)?) ?%"));
static UNIT: LazyLock<Regex> = LazyLock::new(|| {
    re(r"(?i)\b(\d+(?:\.\d+)?) ?(fl ?oz|kg|mg|ml|cl|lbs|lb|oz|ct|pk|gr|cm|mm|g|l|m)\b")
});
static ORDINAL: LazyLock<Regex> = LazyLock::new(|| re(r"(?i)\b(\d+)(st|nd|rd|th)\b"));
/// A product code: letters and at least three digits in one token ("G24852", "SKU-0042").
static CODE: LazyLock<Regex> = LazyLock::new(|| {
    re(r"\b(?:[A-Za-z]+[-_]?\d{3,}[A-Za-z0-9-]*|\d{3,}[-_]?[A-Za-z]+[A-Za-z0-9-]*)\b")
});
static NUMBER: LazyLock<Regex> =
    LazyLock::new(|| re(r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?"));
static SPACES: LazyLock<Regex> = LazyLock::new(|| re(r"[ \t\r\n]+"));

fn re(pattern: &str) -> Regex {
    match Regex::new(pattern) {
        Ok(r) => r,
        // The patterns are constants checked by the unit tests below.
        Err(e) => panic!("normaliser pattern {pattern}: {e}"),
    }
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

fn year_words(y: &str) -> String {
    let (hi, lo) = y.split_at(2);
    match (hi, lo) {
        (_, "00") => number_words(y),
        (h, l) if l.starts_with('0') && h != "20" => {
            format!("{} oh {}", number_words(h), number_words(l))
        }
        ("20", l) if l.starts_with('0') => number_words(y),
        (h, l) => format!("{} {}", number_words(h), number_words(l)),
    }
}

/// Rewrites `text` into words a voice reads as a shopper expects.
pub fn normalize(text: &str) -> String {
    let s = TAG.replace_all(text, " ");
    let s = URL.replace_all(&s, " ");
    let s = DATE.replace_all(&s, |c: &Captures| {
        let month: usize = c[2].parse().unwrap_or(0);
        match MONTHS.get(month.wrapping_sub(1)) {
            Some(m) if (1..=31).contains(&c[3].parse::<u32>().unwrap_or(0)) => {
                format!(
                    "{m} {}, {}",
                    ordinal_words(c[3].trim_start_matches('0')),
                    year_words(&c[1])
                )
            }
            _ => c[0].to_string(),
        }
    });
    let s = MONEY.replace_all(&s, |c: &Captures| {
        let code = c.get(1).or(c.get(2)).map_or("", |m| m.as_str());
        let amount = format!("{}{}", &c[3], c.get(4).map_or("", |m| m.as_str()));
        money_words(code, &amount)
    });
    let s = PERCENT.replace_all(&s, |c: &Captures| {
        format!("{} percent", decimal_words(&c[1]))
    });
    let s = UNIT.replace_all(&s, |c: &Captures| {
        let one = c[1].trim_start_matches('0') == "1";
        match unit_words(&c[2].replace(' ', ""), one) {
            Some(u) => format!("{} {u}", decimal_words(&c[1])),
            None => c[0].to_string(),
        }
    });
    let s = ORDINAL.replace_all(&s, |c: &Captures| ordinal_words(&c[1]));
    let s = CODE.replace_all(&s, " ");
    let s = NUMBER.replace_all(&s, |c: &Captures| decimal_words(&c[0]));
    let s: String = s
        .chars()
        .map(|c| match c {
            '&' => " and ".to_string(),
            '+' => " plus ".to_string(),
            '/' | '_' | '|' | '*' | '#' | '~' | '<' | '>' | '=' | '[' | ']' | '{' | '}' => {
                " ".to_string()
            }
            '\u{2013}' | '\u{2014}' => ", ".to_string(),
            c if c.is_control() => " ".to_string(),
            // Pictographs and other symbols have no reading.
            c if is_symbol(c) => " ".to_string(),
            c => c.to_string(),
        })
        .collect();
    SPACES.replace_all(s.trim(), " ").into_owned()
}

fn is_symbol(c: char) -> bool {
    let u = c as u32;
    (0x2190..=0x2BFF).contains(&u)
        || (0x1F000..=0x1FAFF).contains(&u)
        || (0xFE00..=0xFE0F).contains(&u)
        || u == 0x200D
}

/// Splits normalised text into sentences (each keeps its final punctuation); a
/// sentence longer than [`MAX_SENTENCE_CHARS`] is cut at a word boundary.
pub fn sentences(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let chars: Vec<char> = text.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        cur.push(c);
        let end = matches!(c, '.' | '?' | '!')
            && chars.get(i + 1).is_none_or(|n| n.is_whitespace())
            && !chars[i + 1..]
                .first()
                .is_some_and(|n| matches!(n, '.' | '?' | '!'));
        if end || cur.len() >= MAX_SENTENCE_CHARS {
            if !end {
                if let Some(cut) = cur.rfind(' ') {
                    let rest = cur.split_off(cut);
                    push_sentence(&mut out, &cur);
                    cur = rest.trim_start().to_string();
                    continue;
                }
            }
            push_sentence(&mut out, &cur);
            cur.clear();
        }
    }
    push_sentence(&mut out, &cur);
    out
}

/// `sentence` cut after its first clause (`,` `:` `;` then a space, at least 12
/// characters in) when it is longer than `longer_than` characters.
pub fn first_clause(sentence: &str, longer_than: usize) -> Option<(String, String)> {
    if sentence.chars().count() <= longer_than {
        return None;
    }
    let bytes = sentence.as_bytes();
    let cut = sentence.char_indices().find(|&(i, c)| {
        matches!(c, ',' | ':' | ';') && i >= 12 && bytes.get(i + 1) == Some(&b' ')
    })?;
    let (head, rest) = sentence.split_at(cut.0 + 1);
    let rest = rest.trim();
    rest.chars()
        .any(char::is_alphanumeric)
        .then(|| (head.to_string(), rest.to_string()))
}

fn push_sentence(out: &mut Vec<String>, s: &str) {
    let s = s.trim();
    if s.chars().any(|c| c.is_alphanumeric()) {
        out.push(s.to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        assert_eq!(number_words("0"), "zero");
        assert_eq!(number_words("7"), "seven");
        assert_eq!(number_words("24"), "twenty-four");
        assert_eq!(number_words("100"), "one hundred");
        assert_eq!(
            number_words("49689"),
            "forty-nine thousand six hundred eighty-nine"
        );
        assert_eq!(number_words("1000001"), "one million one");
        assert_eq!(
            number_words(&"9".repeat(40)).split(' ').count(),
            40,
            "a 40-digit number is read digit by digit"
        );
        assert_eq!(ordinal_words("1"), "first");
        assert_eq!(ordinal_words("22"), "twenty-second");
        assert_eq!(ordinal_words("30"), "thirtieth");
        assert_eq!(ordinal_words("12"), "twelfth");
    }

    #[test]
    fn retail_answers() {
        let cases = [
            ("Banana is $1.57.", "Banana is one dollar fifty-seven."),
            ("It is $13.49", "It is thirteen dollars forty-nine"),
            ("Now $0.99 each", "Now ninety-nine cents each"),
            ("Only $2.00!", "Only two dollars!"),
            ("£3.50 or €1.05", "three pounds fifty or one euro five"),
            ("CHF 4.20", "four Swiss francs twenty"),
            (
                "in Aisle 24: fresh fruits.",
                "in Aisle twenty-four: fresh fruits.",
            ),
            (
                "Milk 2L, 6 roll pack, 500 g",
                "Milk two liters, six roll pack, five hundred grams",
            ),
            ("1 kg of rice", "one kilogram of rice"),
            ("20% off", "twenty percent off"),
            ("2 for 1 on soda", "two for one on soda"),
            ("12.5% fat", "twelve point five percent fat"),
            (
                "In stock: 1,234.",
                "In stock: one thousand two hundred thirty-four.",
            ),
            ("Banana (G24852) is here", "Banana ( ) is here"),
            ("See https://shop.example/x?y=1 now", "See now"),
            ("<speak>Hello</speak> there", "Hello there"),
            (
                "Until 2026-12-01.",
                "Until December first, twenty twenty-six.",
            ),
            ("Salt & pepper", "Salt and pepper"),
            ("Coffee ☕🙂 is good", "Coffee is good"),
        ];
        for (text, want) in cases {
            assert_eq!(normalize(text), want, "{text}");
        }
    }

    #[test]
    fn sentence_split() {
        assert_eq!(
            sentences("Banana is one dollar. Yes, it is in stock! Where? Aisle three"),
            vec![
                "Banana is one dollar.",
                "Yes, it is in stock!",
                "Where?",
                "Aisle three"
            ]
        );
        let long = "word ".repeat(500);
        let parts = sentences(&long);
        assert!(parts.len() > 1);
        assert!(parts.iter().all(|p| p.len() <= MAX_SENTENCE_CHARS));
        assert!(sentences("... !!").is_empty());
        assert_eq!(first_clause("Short one, really.", 60), None);
        let long = "Cheddar: three dollars eighty-six, twenty percent off, usually four dollars.";
        assert_eq!(
            first_clause(long, 60),
            Some((
                "Cheddar: three dollars eighty-six,".to_string(),
                "twenty percent off, usually four dollars.".to_string()
            ))
        );
    }
}
