//! Schema-driven validation of a TOML document, reporting every problem at once.
//!
//! serde stops at the first error, so the structural checks walk the parsed document
//! (with byte spans) against the JSON Schema derived from [`crate::ConfigFile`]: unknown
//! keys (with a did-you-mean), wrong types, out-of-range numbers and unknown enum values
//! are all collected before the typed deserialisation runs. Only the subset of JSON
//! Schema that schemars emits for our types is interpreted.

use std::ops::Range;

use serde_json::Value as Json;
use toml_edit::{Item, Table, Value};

/// One problem, located by byte range in the source.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Problem {
    pub span: Option<Range<usize>>,
    pub message: String,
}

pub(crate) struct Walker<'a> {
    root: &'a Json,
    pub problems: Vec<Problem>,
}

/// The shape of a TOML node, named as JSON Schema names types.
fn kind_of_value(v: &Value) -> &'static str {
    match v {
        Value::String(_) => "string",
        Value::Integer(_) => "integer",
        Value::Float(_) => "number",
        Value::Boolean(_) => "boolean",
        Value::Datetime(_) => "datetime",
        Value::Array(_) => "array",
        Value::InlineTable(_) => "object",
    }
}

fn describe(kind: &str) -> &str {
    match kind {
        "object" => "a table",
        "string" => "a string",
        "integer" => "an integer",
        "number" => "a number",
        "boolean" => "a boolean",
        "array" => "an array",
        "datetime" => "a date-time",
        other => other,
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// The closest known name to `got`, if it is close enough to be a likely typo.
pub(crate) fn did_you_mean<'a>(
    got: &str,
    known: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    known
        .into_iter()
        .map(|k| (strsim::jaro_winkler(got, k), k))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, k)| k)
}

impl<'a> Walker<'a> {
    pub fn new(root: &'a Json) -> Self {
        Self {
            root,
            problems: Vec::new(),
        }
    }

    fn push(&mut self, span: Option<Range<usize>>, message: String) {
        self.problems.push(Problem { span, message });
    }

    /// Follows `$ref`s into `$defs`.
    fn resolve(&self, mut schema: &'a Json) -> &'a Json {
        for _ in 0..16 {
            let Some(r) = schema.get("$ref").and_then(Json::as_str) else {
                break;
            };
            let Some(name) = r.strip_prefix("#/$defs/") else {
                break;
            };
            match self.root.get("$defs").and_then(|d| d.get(name)) {
                Some(s) => schema = s,
                None => break,
            }
        }
        schema
    }

    pub fn check_root(&mut self, table: &Table) {
        let root = self.root;
        self.check_table(table, table.span(), root, "");
    }

    fn check_table(
        &mut self,
        table: &Table,
        span: Option<Range<usize>>,
        schema: &'a Json,
        path: &str,
    ) {
        let schema = self.resolve(schema);
        if !self.type_allows(schema, "object") {
            let expected = self.expected_types(schema);
            self.push(span, format!("`{path}` must be {expected}, found a table"));
            return;
        }
        let entries: Vec<(String, Option<Range<usize>>, &Item)> = table
            .iter()
            .map(|(k, item)| {
                let key_span = table.key(k).and_then(|key| key.span());
                (k.to_string(), key_span, item)
            })
            .collect();
        self.check_entries(entries, span, schema, path);
    }

    fn check_inline(
        &mut self,
        table: &toml_edit::InlineTable,
        span: Option<Range<usize>>,
        schema: &'a Json,
        path: &str,
    ) {
        let entries: Vec<(String, Option<Range<usize>>, Value)> = table
            .iter()
            .map(|(k, v)| {
                let key_span = table.key(k).and_then(|key| key.span());
                (k.to_string(), key_span, v.clone())
            })
            .collect();
        let props = schema.get("properties").and_then(Json::as_object);
        for (key, key_span, value) in entries {
            let child_path = join(path, &key);
            match props.and_then(|p| p.get(&key)) {
                Some(child) => self.check_value(
                    &value,
                    value.span().or(key_span.clone()),
                    child,
                    &child_path,
                ),
                None => self.unknown_key(&key, key_span.or(span.clone()), schema, path),
            }
        }
    }

    fn check_entries(
        &mut self,
        entries: Vec<(String, Option<Range<usize>>, &Item)>,
        span: Option<Range<usize>>,
        schema: &'a Json,
        path: &str,
    ) {
        let props = schema.get("properties").and_then(Json::as_object);
        for (key, key_span, item) in entries {
            let child_path = join(path, &key);
            let Some(child) = props.and_then(|p| p.get(&key)) else {
                self.unknown_key(&key, key_span.or(span.clone()), schema, path);
                continue;
            };
            match item {
                Item::None => {}
                Item::Table(t) => self.check_table(t, t.span().or(key_span), child, &child_path),
                Item::Value(v) => self.check_value(v, v.span().or(key_span), child, &child_path),
                Item::ArrayOfTables(a) => {
                    let child = self.resolve(child);
                    if !self.type_allows(child, "array") {
                        let expected = self.expected_types(child);
                        self.push(
                            a.span().or(key_span),
                            format!("`{child_path}` must be {expected}, found an array of tables"),
                        );
                    }
                }
            }
        }
    }

    fn unknown_key(&mut self, key: &str, span: Option<Range<usize>>, schema: &Json, path: &str) {
        let known: Vec<&str> = schema
            .get("properties")
            .and_then(Json::as_object)
            .map(|p| p.keys().map(String::as_str).collect())
            .unwrap_or_default();
        let place = if path.is_empty() {
            "at the top level".to_string()
        } else {
            format!("in `[{path}]`")
        };
        let mut message = format!("unknown key `{key}` {place}");
        if let Some(best) = did_you_mean(key, known.iter().copied()) {
            message.push_str(&format!("; did you mean `{best}`?"));
        } else if !known.is_empty() {
            message.push_str(&format!("; expected one of: {}", known.join(", ")));
        }
        self.push(span, message);
    }

    fn allowed_types(&self, schema: &Json) -> Option<Vec<String>> {
        match schema.get("type")? {
            Json::String(s) => Some(vec![s.clone()]),
            Json::Array(a) => Some(
                a.iter()
                    .filter_map(|t| t.as_str().map(String::from))
                    .collect(),
            ),
            _ => None,
        }
    }

    fn type_allows(&self, schema: &Json, kind: &str) -> bool {
        match self.allowed_types(schema) {
            None => true,
            Some(types) => types
                .iter()
                .any(|t| t == kind || (t == "number" && kind == "integer")),
        }
    }

    fn expected_types(&self, schema: &Json) -> String {
        match self.allowed_types(schema) {
            None => "a value".into(),
            Some(types) => types
                .iter()
                .filter(|t| *t != "null")
                .map(|t| describe(t).to_string())
                .collect::<Vec<_>>()
                .join(" or "),
        }
    }

    /// Constant strings a `oneOf`/`anyOf`/`enum` accepts, if the schema is such a choice.
    fn enum_values(&self, schema: &'a Json) -> Option<Vec<&'a str>> {
        if let Some(values) = schema.get("enum").and_then(Json::as_array) {
            return Some(values.iter().filter_map(Json::as_str).collect());
        }
        let branches = schema
            .get("oneOf")
            .or_else(|| schema.get("anyOf"))
            .and_then(Json::as_array)?;
        let mut out = Vec::new();
        for b in branches {
            let b = self.resolve(b);
            if let Some(c) = b.get("const").and_then(Json::as_str) {
                out.push(c);
            } else if let Some(values) = b.get("enum").and_then(Json::as_array) {
                out.extend(values.iter().filter_map(Json::as_str));
            } else if b.get("type").and_then(Json::as_str) == Some("null") {
                continue;
            } else {
                return None;
            }
        }
        Some(out)
    }

    fn check_value(
        &mut self,
        value: &Value,
        span: Option<Range<usize>>,
        schema: &'a Json,
        path: &str,
    ) {
        let schema = self.resolve(schema);
        if let Some(allowed) = self.enum_values(schema) {
            match value.as_str() {
                Some(s) if allowed.contains(&s) => {}
                Some(s) => {
                    let list = allowed
                        .iter()
                        .map(|a| format!("\"{a}\""))
                        .collect::<Vec<_>>()
                        .join(", ");
                    let mut message = format!("`{path}` must be one of {list}, found \"{s}\"");
                    if let Some(best) = did_you_mean(s, allowed.iter().copied()) {
                        message.push_str(&format!("; did you mean \"{best}\"?"));
                    }
                    self.push(span, message);
                }
                None => {
                    let found = describe(kind_of_value(value));
                    self.push(span, format!("`{path}` must be a string, found {found}"));
                }
            }
            return;
        }
        if let Some(branches) = schema
            .get("anyOf")
            .or_else(|| schema.get("oneOf"))
            .and_then(Json::as_array)
        {
            // Accept if any non-null branch accepts; otherwise report against the first.
            let mut first_failure = None;
            for b in branches {
                let b = self.resolve(b);
                if b.get("type").and_then(Json::as_str) == Some("null") {
                    continue;
                }
                let mut sub = Walker::new(self.root);
                sub.check_value(value, span.clone(), b, path);
                if sub.problems.is_empty() {
                    return;
                }
                first_failure.get_or_insert(sub.problems);
            }
            if let Some(problems) = first_failure {
                self.problems.extend(problems);
            }
            return;
        }
        let kind = kind_of_value(value);
        if !self.type_allows(schema, kind) {
            let expected = self.expected_types(schema);
            self.push(
                span,
                format!("`{path}` must be {expected}, found {}", describe(kind)),
            );
            return;
        }
        match value {
            Value::InlineTable(t) => self.check_inline(t, span, schema, path),
            Value::Array(a) => {
                if let Some(items) = schema.get("items") {
                    for (i, v) in a.iter().enumerate() {
                        self.check_value(v, v.span(), items, &format!("{path}[{i}]"));
                    }
                }
            }
            Value::Integer(i) => self.check_range(*i.value() as f64, span, schema, path),
            Value::Float(f) => self.check_range(*f.value(), span, schema, path),
            _ => {}
        }
    }

    fn check_range(&mut self, x: f64, span: Option<Range<usize>>, schema: &Json, path: &str) {
        // NaN compares false with every bound, so it would pass them all.
        if x.is_nan() {
            self.push(span, format!("`{path}` must be a number, found nan"));
            return;
        }
        let min = schema.get("minimum").and_then(Json::as_f64);
        let max = schema.get("maximum").and_then(Json::as_f64);
        let out_of_range = min.is_some_and(|m| x < m) || max.is_some_and(|m| x > m);
        if out_of_range {
            let range = match (min, max) {
                (Some(lo), Some(hi)) => format!("between {lo} and {hi}"),
                (Some(lo), None) => format!("at least {lo}"),
                (None, Some(hi)) => format!("at most {hi}"),
                (None, None) => unreachable!("out_of_range implies a bound"),
            };
            self.push(span.clone(), format!("`{path}` must be {range}, found {x}"));
        }
        // Integer types carry a format such as uint32: reject what does not fit.
        if let Some(fmt) = schema.get("format").and_then(Json::as_str) {
            let limit = match fmt {
                "uint8" => Some(u8::MAX as f64),
                "uint16" => Some(u16::MAX as f64),
                "uint32" => Some(u32::MAX as f64),
                _ => None,
            };
            if let Some(limit) = limit
                && max.is_none()
                && x > limit
            {
                self.push(span, format!("`{path}` must be at most {limit}, found {x}"));
            }
        }
    }
}

/// Finds the span of the value at a dotted path, for semantic diagnostics.
pub(crate) fn span_of(table: &Table, path: &str) -> Option<Range<usize>> {
    let mut parts = path.split('.').peekable();
    let mut current = table;
    let mut best = table.span();
    while let Some(part) = parts.next() {
        let key_span = current.key(part).and_then(|k| k.span());
        let item = current.get(part)?;
        if parts.peek().is_none() {
            return item.span().or(key_span).or(best);
        }
        match item {
            Item::Table(t) => {
                best = t.span().or(key_span).or(best);
                current = t;
            }
            Item::Value(Value::InlineTable(t)) => {
                // Dotted paths inside inline tables: report the inline table itself.
                let rest: Vec<&str> = parts.collect();
                let inner = t.get(rest.join(".").as_str());
                return inner.and_then(Value::span).or(item.span()).or(key_span);
            }
            _ => return item.span().or(key_span),
        }
    }
    best
}
