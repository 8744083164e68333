//! A catalog delta: the lines that changed between two releases' catalog files, as
//! an edit script over the old file's lines (Myers' diff, `similar`). A kiosk that
//! has the old file rebuilds the new one from it and checks the result against the
//! new file's signed hash and length, so the delta only saves bytes: a wrong or
//! stale delta is caught and the full file is fetched instead.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Delta {
    /// The sha256 of the file the script applies to.
    pub from_sha256: String,
    pub ops: Vec<Op>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Op {
    /// `len` lines of the old file from line `at`.
    Copy { at: usize, len: usize },
    /// New lines (each with its line ending).
    Add(Vec<String>),
}

fn lines(b: &[u8]) -> Vec<&[u8]> {
    b.split_inclusive(|&c| c == b'\n').collect()
}

/// The edit script from `old` to `new`, or None when either is not UTF-8 text.
pub fn diff(old: &[u8], new: &[u8], old_sha256: &str) -> Option<Delta> {
    let (a, b) = (lines(old), lines(new));
    let mut ops: Vec<Op> = Vec::new();
    for op in similar::capture_diff_slices(similar::Algorithm::Myers, &a, &b) {
        let (tag, o, n) = op.as_tag_tuple();
        match tag {
            similar::DiffTag::Equal => ops.push(Op::Copy {
                at: o.start,
                len: o.len(),
            }),
            similar::DiffTag::Delete => {}
            similar::DiffTag::Insert | similar::DiffTag::Replace => {
                let mut add = Vec::with_capacity(n.len());
                for l in &b[n] {
                    add.push(std::str::from_utf8(l).ok()?.to_string());
                }
                match ops.last_mut() {
                    Some(Op::Add(prev)) => prev.extend(add),
                    _ => ops.push(Op::Add(add)),
                }
            }
        }
    }
    Some(Delta {
        from_sha256: old_sha256.to_string(),
        ops,
    })
}

/// The new file, rebuilt from `old`; None when the script does not fit it.
pub fn apply(old: &[u8], d: &Delta) -> Option<Vec<u8>> {
    let a = lines(old);
    let mut out = Vec::with_capacity(old.len());
    for op in &d.ops {
        match op {
            Op::Copy { at, len } => {
                for l in a.get(*at..at.checked_add(*len)?)? {
                    out.extend_from_slice(l);
                }
            }
            Op::Add(v) => {
                for l in v {
                    out.extend_from_slice(l.as_bytes());
                }
            }
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_delta_rebuilds_the_new_file_exactly() {
        let old = b"sku,price\nA,1.00\nB,2.00\nC,3.00\nD,4.00\n";
        let new = b"sku,price\nA,1.00\nB,2.50\nD,4.00\nE,5.00\nF,6.00";
        let d = diff(old, new, "x").expect("utf-8");
        assert_eq!(apply(old, &d).as_deref(), Some(&new[..]));
        // Two changed spans, the rest copied.
        assert!(
            d.ops.iter().filter(|o| matches!(o, Op::Add(_))).count() == 2,
            "{d:?}"
        );
        // A script for another file does not fit (or gives other bytes, which
        // the signed hash then refuses).
        assert_ne!(apply(b"sku,price\n", &d).as_deref(), Some(&new[..]));
    }
}
