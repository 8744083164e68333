//! Text to IPA phonemes with Debian's `espeak-ng`, run as a separate process so its
//! GPL code stays out of our binary. The result is what Piper's own phonemiser
//! (espeak-ng's library, `espeak_TextToPhonemesWithTerminator`) gives: each clause's
//! phonemes followed by its punctuation, a space after a comma, colon or semicolon,
//! language-switch flags removed, decomposed (NFD) into code points.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use unicode_normalization::UnicodeNormalization;

use super::TtsError;

/// The espeak-ng program and voice.
#[derive(Debug, Clone)]
pub struct Espeak {
    pub program: PathBuf,
    pub voice: String,
}

impl Espeak {
    pub fn new(voice: &str) -> Self {
        Espeak {
            program: PathBuf::from("espeak-ng"),
            voice: voice.to_string(),
        }
    }

    /// Every sentence's phonemes from one espeak-ng process (a process costs about
    /// 11 ms; one per answer rather than one per sentence).
    pub fn phonemize_many<S: AsRef<str>>(
        &self,
        sentences: &[S],
    ) -> Result<Vec<Vec<char>>, TtsError> {
        let per: Vec<Vec<(String, Option<char>)>> =
            sentences.iter().map(|s| clauses(s.as_ref())).collect();
        let texts: Vec<&str> = per.iter().flatten().map(|(t, _)| t.as_str()).collect();
        if texts.is_empty() {
            return Ok(vec![Vec::new(); sentences.len()]);
        }
        // Clauses go in as paragraphs on stdin (read as a file: `--stdin` would drop
        // the paragraph breaks): espeak-ng ends its output line at each clause and
        // leaves an empty line between paragraphs, so its groups line up with ours.
        let mut groups = groups(&self.run(&texts.join("\n\n"))?).into_iter();
        let aligned = groups.len() == texts.len();
        let mut out = Vec::with_capacity(per.len());
        for clauses in &per {
            let ipa: Vec<String> = if aligned {
                groups.by_ref().take(clauses.len()).collect()
            } else {
                // espeak-ng cut differently (an abbreviation, say): one call per clause.
                let mut g = Vec::with_capacity(clauses.len());
                for (t, _) in clauses {
                    g.push(groups_joined(&self.run(t)?));
                }
                g
            };
            out.push(assemble(clauses, ipa));
        }
        Ok(out)
    }

    fn run(&self, text: &str) -> Result<String, TtsError> {
        let err = |message: String| TtsError::Phonemizer {
            program: self.program.clone(),
            message,
        };
        let mut child = Command::new(&self.program)
            .args(["-q", "--ipa", "-v", &self.voice])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| {
                err(match e.kind() {
                    std::io::ErrorKind::NotFound => {
                        "not installed (apt install espeak-ng)".to_string()
                    }
                    _ => e.to_string(),
                })
            })?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(text.as_bytes())
                .map_err(|e| err(format!("writing the text: {e}")))?;
        }
        let out = child
            .wait_with_output()
            .map_err(|e| err(format!("reading its output: {e}")))?;
        if !out.status.success() {
            return Err(err(format!(
                "exited with {}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        String::from_utf8(out.stdout).map_err(|_| err("its output is not UTF-8".into()))
    }
}

/// A sentence's phonemes from its clauses and their IPA, as Piper joins them.
fn assemble(clauses: &[(String, Option<char>)], ipa: Vec<String>) -> Vec<char> {
    let mut phonemes = String::new();
    for (i, ((_, term), ipa)) in clauses.iter().zip(ipa).enumerate() {
        if ipa.trim().is_empty() && term.is_none() {
            continue;
        }
        phonemes.push_str(ipa.trim());
        match term {
            Some(t @ (',' | ':' | ';')) => {
                phonemes.push(*t);
                phonemes.push(' ');
            }
            Some(t) => phonemes.push(*t),
            None if i + 1 < clauses.len() => phonemes.push(' '),
            None => {}
        }
    }
    strip_flags(phonemes.trim_end()).nfd().collect()
}

/// The sentence cut at clause punctuation: (text, the punctuation that ends it).
fn clauses(sentence: &str) -> Vec<(String, Option<char>)> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let chars: Vec<char> = sentence.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        let boundary = matches!(c, ',' | ':' | ';' | '.' | '?' | '!')
            && chars.get(i + 1).is_none_or(|n| n.is_whitespace());
        if boundary {
            if cur.trim().is_empty() {
                // "?!" or a stray mark: keep only the first as the terminator.
                continue;
            }
            out.push((cur.trim().to_string(), Some(c)));
            cur.clear();
        } else {
            cur.push(c);
        }
    }
    if !cur.trim().is_empty() {
        out.push((cur.trim().to_string(), None));
    }
    out
}

/// espeak-ng's output cut into paragraph groups (an empty line between paragraphs),
/// each group's clause lines joined with a space.
fn groups(out: &str) -> Vec<String> {
    out.split("\n\n")
        .map(groups_joined)
        .filter(|g| !g.is_empty())
        .collect()
}

fn groups_joined(lines: &str) -> String {
    lines
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Removes language-switch flags such as "(fr)" around foreign words.
fn strip_flags(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut depth = 0usize;
    for c in s.chars() {
        match c {
            '(' => depth += 1,
            ')' if depth > 0 => depth -= 1,
            c if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clause_cutting() {
        assert_eq!(
            clauses("Yes, it is in Aisle three: fruit."),
            vec![
                ("Yes".to_string(), Some(',')),
                ("it is in Aisle three".to_string(), Some(':')),
                ("fruit".to_string(), Some('.')),
            ]
        );
        assert_eq!(
            clauses("two point five"),
            vec![("two point five".into(), None)]
        );
        assert_eq!(strip_flags("a(fr)b(en)c"), "abc");
    }
}
