//! The dialogue engine: a local intent grammar answers the frequent questions from the
//! store database; every fact in an answer (price, count, aisle) comes from the data
//! and is checked against it before the answer is shown.
//!
//! A conversation ([`Session`]) keeps the products scanned and mentioned, so "how much
//! is it?" and "and the other one?" resolve, and the shopper's stated preferences
//! (vegan, budget, brand). It lives only as long as the session.

pub mod clock;
pub mod fallback;
pub mod intent;
pub mod models;
pub mod spell;
pub mod verify;

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use aisle_catalog::{CatalogDb, CatalogView, Product, Result, format_price};

use crate::clock::{Clock, SystemClock};
use crate::models::{Complete, Embed};
pub use intent::Intent;

/// A product must name the mention at least this well to be taken as meant.
const MATCH_MIN: f32 = 0.5;
/// Products remembered in a conversation.
const FOCUS_MAX: usize = 8;
/// Clauses of one question the LLM reads at most (each costs ~0.1-0.2 s).
const MAX_LLM_CLAUSES: usize = 2;
/// Longest question processed (characters); the rest is ignored.
pub const MAX_QUESTION_CHARS: usize = 500;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Preferences {
    /// Dietary labels every recommendation must carry.
    pub tags: Vec<String>,
    pub max_price_cents: Option<i64>,
    pub avoid_allergens: Vec<String>,
}

/// One conversation. Serialisable so `aisle ask --session FILE` can carry it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Session {
    /// Products in the conversation, most recent last.
    pub focus: Vec<String>,
    pub preferences: Preferences,
    pub turns: u32,
    /// Intents of past turns (no text is kept).
    pub intents: Vec<Intent>,
}

impl Session {
    fn mention(&mut self, sku: &str) {
        self.focus.retain(|s| s != sku);
        self.focus.push(sku.to_string());
        if self.focus.len() > FOCUS_MAX {
            self.focus.remove(0);
        }
    }
    fn current(&self) -> Option<&str> {
        self.focus.last().map(String::as_str)
    }
    fn other(&self) -> Option<&str> {
        self.focus.iter().rev().nth(1).map(String::as_str)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Fact {
    pub sku: String,
    /// `price`, `stock`, `aisle`, `promotion`, `tag`, `allergen`, `variant`.
    pub kind: &'static str,
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Answer {
    pub text: String,
    pub intent: Intent,
    /// Intent of every clause, for compound questions.
    pub intents: Vec<Intent>,
    pub products: Vec<String>,
    pub facts: Vec<Fact>,
    /// `grammar`, `llm` when the LLM read a clause the grammar did not, or `none`
    /// when nothing could answer.
    pub path: &'static str,
    /// What the LLM made of the question, when it was asked.
    pub llm: Option<fallback::Interpretation>,
    pub staff_requested: bool,
    /// A product was asked for that this store does not have (a demand signal).
    pub not_found: bool,
    /// Values the answer computed (a price difference, the shopper's budget), each
    /// with its inputs, for the verifier to recompute.
    pub derived: Vec<verify::Derived>,
    pub elapsed_us: u64,
}

/// The engine over one snapshot of the store's catalog. `Send + Sync`: one engine
/// answers many conversations at once; each request brings its own [`Session`].
pub struct Assistant {
    view: Arc<CatalogView>,
    clock: Arc<dyn Clock>,
    meaning: Option<Meaning>,
    llm: Option<Arc<dyn Complete>>,
    /// The store's spelling, built from the snapshot's names on first need.
    speller: OnceLock<spell::Speller>,
}

/// Lookup by meaning: MiniLM embeddings of the store's aisles, so "something for
/// breakfast" finds the breakfast and cereal aisles without naming a product.
struct Meaning {
    model: Arc<dyn Embed>,
    /// (aisle as stored, unit embedding of its name), computed on first use so a
    /// price question does not pay for embedding every aisle.
    aisles: OnceLock<Vec<(String, Vec<f32>)>>,
    /// The fallback's example questions, embedded on first use (they do not depend
    /// on the catalog, so engines over later snapshots share them).
    examples: Arc<OnceLock<Examples>>,
}

/// The fallback's example questions with their embeddings.
type Examples = Vec<(Intent, String, Vec<f32>)>;

impl Meaning {
    fn aisles(&self, products: &[Product]) -> &[(String, Vec<f32>)] {
        self.aisles.get_or_init(|| {
            let mut names: Vec<&str> = products.iter().map(|p| p.aisle.as_str()).collect();
            names.sort_unstable();
            names.dedup();
            names
                .into_iter()
                .map(|a| {
                    // "Aisle 61: cookies cakes" -> "cookies cakes"
                    let label = a.split_once(':').map(|(_, l)| l.trim()).unwrap_or(a);
                    (a.to_string(), self.model.embed(label))
                })
                .collect()
        })
    }
}

/// An aisle must be at least this close to the question to be suggested from.
const AISLE_MIN: f32 = 0.3;

struct Reply {
    text: String,
    facts: Vec<Fact>,
    products: Vec<String>,
    staff: bool,
    /// A product was asked for that the store does not have.
    not_found: bool,
    /// The date this answer is given on (promotions run by date).
    today: String,
    derived: Vec<verify::Derived>,
}

impl Reply {
    fn new(today: String) -> Self {
        Self {
            today,
            text: String::new(),
            facts: Vec::new(),
            products: Vec::new(),
            staff: false,
            not_found: false,
            derived: Vec::new(),
        }
    }
    fn say(&mut self, s: impl AsRef<str>) {
        if !self.text.is_empty() {
            self.text.push(' ');
        }
        self.text.push_str(s.as_ref());
    }
    /// "Name ($price, aisle)" for each product, with its price and aisle as facts.
    fn listing(&mut self, products: &[&Product]) -> Vec<String> {
        products
            .iter()
            .map(|a| {
                let price = format_price(a.price_cents, &a.currency);
                self.fact(&a.sku, "price", price.clone());
                self.fact(&a.sku, "aisle", a.aisle.clone());
                format!("{} ({price}, {})", a.name, a.aisle)
            })
            .collect()
    }

    fn fact(&mut self, sku: &str, kind: &'static str, value: impl Into<String>) {
        self.facts.push(Fact {
            sku: sku.to_string(),
            kind,
            value: value.into(),
        });
        if !sku.is_empty() && !self.products.iter().any(|s| s == sku) {
            self.products.push(sku.to_string());
        }
    }
}

impl Assistant {
    /// Reads a snapshot of `catalog` (about 0.5 s for 50k products) and answers from
    /// it by the system clock.
    pub fn new(catalog: &CatalogDb) -> Result<Self> {
        Ok(Self::over(Arc::new(CatalogView::load(catalog)?)))
    }

    /// The engine over a snapshot, by the system clock.
    pub fn over(view: Arc<CatalogView>) -> Self {
        Self {
            view,
            clock: Arc::new(SystemClock),
            meaning: None,
            llm: None,
            speller: OnceLock::new(),
        }
    }

    /// The same engine (models, clock) over a newer snapshot of the catalog.
    pub fn rebased(&self, view: Arc<CatalogView>) -> Self {
        Self {
            view,
            clock: self.clock.clone(),
            meaning: self.meaning.as_ref().map(|m| Meaning {
                model: m.model.clone(),
                aisles: OnceLock::new(),
                examples: m.examples.clone(),
            }),
            llm: self.llm.clone(),
            speller: OnceLock::new(),
        }
    }

    /// Dates (promotions) come from `clock` instead of the system's.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Adds the LLM fallback for clauses the grammar does not recognise (it needs
    /// lookup by meaning too: see [`fallback`]).
    pub fn with_llm(mut self, llm: Arc<dyn Complete>) -> Self {
        self.llm = Some(llm);
        self
    }

    /// Adds lookup by meaning (every aisle name is embedded once, on first use:
    /// about 0.3 s for 134).
    pub fn with_meaning(mut self, model: Arc<dyn Embed>) -> Self {
        self.meaning = Some(Meaning {
            model,
            aisles: OnceLock::new(),
            examples: Arc::new(OnceLock::new()),
        });
        self
    }

    /// The catalog snapshot answers come from.
    pub fn view(&self) -> &Arc<CatalogView> {
        &self.view
    }

    /// Whether the LLM fallback is available.
    pub fn has_llm(&self) -> bool {
        self.llm.is_some() && self.meaning.is_some()
    }

    /// Aisles closest in meaning to `text`, best first.
    pub fn aisles_for(&self, text: &str, k: usize) -> Vec<(String, f32)> {
        let Some(m) = &self.meaning else {
            return Vec::new();
        };
        let q = m.model.embed(text);
        let mut v: Vec<(String, f32)> = m
            .aisles(self.view.products())
            .iter()
            .map(|(a, e)| (a.clone(), crate::models::cosine(&q, e)))
            .filter(|(_, sim)| *sim >= AISLE_MIN)
            .collect();
        v.sort_by(|a, b| b.1.total_cmp(&a.1));
        v.truncate(k);
        v
    }

    /// Today's date by the engine's clock.
    pub fn today(&self) -> String {
        self.clock.today()
    }

    fn product(&self, sku: &str) -> Option<&Product> {
        self.view.product(sku)
    }

    /// Best product for a mention, if it names one well enough.
    pub fn lookup(&self, mention: &str) -> Option<(&Product, f32)> {
        let m = self.view.index().search(mention, 1).into_iter().next()?;
        (m.score >= MATCH_MIN).then(|| (&self.view.products()[m.doc], m.score))
    }

    /// The store's spelling ([`spell`]), built on first need.
    fn speller(&self) -> &spell::Speller {
        self.speller.get_or_init(|| {
            spell::Speller::new(
                self.view
                    .products()
                    .iter()
                    .flat_map(|p| std::iter::once(p.name.as_str()).chain(p.brand.as_deref())),
            )
        })
    }

    /// Whether the best product for `mention` shares a word with it.
    fn names_a_product(&self, mention: &str) -> bool {
        use aisle_catalog::search::{stem, words};
        let Some((p, _)) = self.lookup(mention) else {
            return false;
        };
        let name: Vec<String> = words(&p.name).iter().map(|w| stem(w)).collect();
        words(mention)
            .iter()
            .filter(|w| w.len() > 2)
            .any(|w| name.contains(&stem(w)))
    }

    /// Products for a mention carrying every tag in `tags`, best first.
    fn lookup_tagged(&self, mention: &str, tags: &[&str], k: usize) -> Vec<&Product> {
        self.view
            .index()
            .search(mention, 500)
            .into_iter()
            .filter(|m| m.score >= 0.3)
            .map(|m| &self.view.products()[m.doc])
            .filter(|p| tags.iter().all(|t| p.has_tag(t)))
            .take(k)
            .collect()
    }

    /// The store's currency: the one most of its products are priced in.
    fn store_currency(&self) -> String {
        let mut counts: std::collections::HashMap<&str, usize> = Default::default();
        for p in self.view.products().iter().take(1000) {
            *counts.entry(p.currency.as_str()).or_default() += 1;
        }
        counts
            .into_iter()
            .max_by_key(|(c, n)| (*n, *c))
            .map_or_else(|| "USD".to_string(), |(c, _)| c.to_string())
    }

    /// Answers one question. `scanned` is a product the camera identified.
    pub fn ask(
        &self,
        question: &str,
        session: &mut Session,
        scanned: Option<&str>,
    ) -> Result<Answer> {
        let t0 = Instant::now();
        let clipped: String = question.chars().take(MAX_QUESTION_CHARS).collect();
        let norm = intent::normalise(&clipped);
        if let Some(sku) = scanned.filter(|s| self.product(s).is_some()) {
            session.mention(sku);
        }
        session.turns += 1;
        let mut reply = Reply::new(self.clock.today());
        let mut intents = Vec::new();
        if norm.is_empty() {
            intents.push(Intent::Unknown);
            reply.say("Ask me about a product: its price, where it is, whether it is in stock, or what is on offer.");
        }
        let last_product_intent = session.intents.iter().rev().copied().find(|i| {
            matches!(
                i,
                Intent::Price
                    | Intent::Availability
                    | Intent::Location
                    | Intent::Dietary
                    | Intent::Allergens
                    | Intent::Promotions
            )
        });
        let mut llm = None;
        let mut llm_calls = 0;
        for clause in intent::clauses(&norm).into_iter().filter(|c| !c.is_empty()) {
            let mut it = intent::classify(&clause);
            // "and the other one?" asks the previous question about another product.
            if it == Intent::Unknown && intent::refers_back(&clause) {
                it = last_product_intent.unwrap_or(Intent::Unknown);
            }
            let mut clause = clause;
            // A typed question with typos ("is the cofee in stok"): the store's
            // spelling, tried only where the grammar did not understand the
            // shopper's own words (the fallback then reads the spelled clause).
            if it == Intent::Unknown
                && let Some(spelled) = self.speller().correct(&clause)
            {
                it = intent::classify(&spelled);
                clause = spelled;
            }
            if it == Intent::Unknown
                && llm_calls < MAX_LLM_CLAUSES
                && let (Some(model), Some(m)) = (&self.llm, &self.meaning)
            {
                llm_calls += 1;
                let examples = m
                    .examples
                    .get_or_init(|| fallback::embed_examples(m.model.as_ref()));
                match fallback::interpret(model.as_ref(), m.model.as_ref(), examples, &clause) {
                    Ok(mut reading) => {
                        // The product read must name a product of this store with at
                        // least one of its words ("a joke" is not "Sloppy Joe").
                        if !reading.product.is_empty() && !self.names_a_product(&reading.product) {
                            reading.intent = Intent::Unknown;
                            reading.product.clear();
                        }
                        it = reading.intent;
                        // No product and no known question: the honest answer, not
                        // the closest-sounding product name.
                        let nothing = it == Intent::Unknown && reading.product.is_empty();
                        clause = reading.clause.clone();
                        llm = Some(reading);
                        if nothing {
                            intents.push(it);
                            reply.say(UNKNOWN);
                            continue;
                        }
                    }
                    // The grammar's honest answer stands; the shopper is not stuck.
                    Err(e) => tracing::warn!(error = %e, "LLM fallback failed"),
                }
            }
            intents.push(it);
            self.answer_clause(it, &clause, session, &mut reply)?;
        }
        // Product names are facts too (they may hold numbers: "2% Reduced Fat Milk").
        for sku in reply.products.clone() {
            if let Some(p) = self.product(&sku)
                && !reply
                    .facts
                    .iter()
                    .any(|f| f.kind == "product" && f.sku == sku)
            {
                reply.fact(&sku, "product", p.name.clone());
            }
        }
        let intent = intents.first().copied().unwrap_or(Intent::Unknown);
        if intent == Intent::Reset {
            *session = Session::default();
        } else {
            session.intents.push(intent);
        }
        let path = if intents.iter().all(|i| *i == Intent::Unknown) {
            "none"
        } else if llm.as_ref().is_some_and(|l| l.intent != Intent::Unknown) {
            "llm"
        } else {
            "grammar"
        };
        let answer = Answer {
            text: reply.text,
            intent,
            intents,
            products: reply.products,
            facts: reply.facts,
            path,
            llm,
            staff_requested: reply.staff,
            not_found: reply.not_found,
            derived: reply.derived,
            elapsed_us: t0.elapsed().as_micros() as u64,
        };
        // The invariant, checked on every answer by the independent verifier: the
        // text against the database as it is now, not against what was collected.
        if let Err(e) = verify::verify(
            &self.view,
            &reply.today,
            &clipped,
            &answer.text,
            &answer.products,
            &answer.derived,
        ) {
            UNGROUNDED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::error!(error = %e, "ungrounded answer withheld");
            return Ok(Answer {
                text: WITHHELD.into(),
                facts: Vec::new(),
                products: Vec::new(),
                derived: Vec::new(),
                ..answer
            });
        }
        if answer.staff_requested {
            // Logged as an event for the store, never with the shopper's words.
            tracing::info!(
                event = "staff_requested",
                turn = session.turns,
                "shopper asked for staff"
            );
        }
        Ok(answer)
    }

    /// The product a clause is about: named in it, else the conversation's.
    fn resolve(&self, it: Intent, clause: &str, session: &Session) -> Resolved<'_> {
        let product_part = if it == Intent::Allergens {
            intent::split_allergen_question(clause).0
        } else {
            clause.to_string()
        };
        let mention = intent::product_mention(&product_part, it == Intent::Dietary);
        if intent::refers_to_other(clause) {
            if let Some(p) = session.other().and_then(|s| self.product(s)) {
                return Resolved::Found(p);
            }
        }
        if !mention.is_empty() {
            if let Some((p, _)) = self.lookup(&mention) {
                return Resolved::Found(p);
            }
            if !intent::refers_back(clause) || session.current().is_none() {
                return Resolved::NotFound(mention);
            }
        }
        match session.current().and_then(|s| self.product(s)) {
            Some(p) => Resolved::Found(p),
            None => Resolved::Nothing,
        }
    }

    fn price_text(&self, p: &Product, r: &mut Reply) -> Result<String> {
        let base = format_price(p.price_cents, &p.currency);
        r.fact(&p.sku, "price", base.clone());
        let promo = self.view.active_promotion(&p.sku, &r.today).cloned();
        Ok(match promo {
            Some(pr) => {
                let now = format_price(pr.price_for(p.price_cents), &p.currency);
                r.fact(&p.sku, "promotion", now.clone());
                r.fact(&p.sku, "promotion", pr.description.clone());
                r.fact(&p.sku, "promotion", pr.ends.clone());
                format!(
                    "{now} ({}, usually {base}, until {})",
                    pr.description, pr.ends
                )
            }
            None => base,
        })
    }

    fn aisle_text(&self, p: &Product, r: &mut Reply) -> String {
        r.fact(&p.sku, "aisle", p.aisle.clone());
        p.aisle.clone()
    }

    /// In-stock products similar to `p` (same words in the name), cheapest first.
    fn alternatives(&self, p: &Product, tags: &[&str], k: usize) -> Vec<&Product> {
        let mut alts: Vec<&Product> = self
            .view
            .index()
            .search(&p.name, 60)
            .into_iter()
            .filter(|m| m.score >= 0.3 && m.sku != p.sku)
            .map(|m| &self.view.products()[m.doc])
            .filter(|x| tags.iter().all(|t| x.has_tag(t)))
            .filter(|x| self.view.total_stock(&x.sku) > 0)
            .take(k)
            .collect();
        alts.sort_by_key(|x| x.price_cents);
        alts
    }

    fn offer_alternatives(&self, p: &Product, tags: &[&str], r: &mut Reply) -> Result<()> {
        let alts = self.alternatives(p, tags, 3);
        if alts.is_empty() {
            r.say(
                "I found no similar product in stock; a member of staff can check the back room.",
            );
            return Ok(());
        }
        let list = r.listing(&alts);
        r.say(format!("Similar products in stock: {}.", list.join("; ")));
        Ok(())
    }

    fn answer_clause(
        &self,
        it: Intent,
        clause: &str,
        s: &mut Session,
        r: &mut Reply,
    ) -> Result<()> {
        match it {
            Intent::Staff => {
                r.staff = true;
                r.say("I have called a member of staff; someone will be with you shortly.");
            }
            Intent::Reset => r.say("OK, let's start again. What are you looking for?"),
            Intent::Greeting => r.say(
                "Hello! Ask me about any product: price, aisle, stock, offers or dietary needs.",
            ),
            Intent::Preference => {
                let tags = intent::dietary_in(clause);
                let allergens = intent::allergens_in(clause);
                for t in &tags {
                    if !s.preferences.tags.iter().any(|x| x == t) {
                        s.preferences.tags.push(t.to_string());
                    }
                }
                if clause.contains("vegetarian") && !s.preferences.tags.iter().any(|x| x == "vegan")
                {
                    // No vegetarian label in the catalog: vegan is the safe subset.
                    s.preferences.tags.push("vegan".into());
                }
                if clause.contains("allergic")
                    || clause.contains("cannot eat")
                    || clause.contains("avoid")
                {
                    for a in &allergens {
                        if !s.preferences.avoid_allergens.iter().any(|x| x == a) {
                            s.preferences.avoid_allergens.push(a.to_string());
                        }
                    }
                }
                let stated = budget_cents(clause);
                if let Some(c) = stated {
                    s.preferences.max_price_cents = Some(c);
                }
                let mut parts: Vec<String> = s.preferences.tags.clone();
                parts.extend(
                    s.preferences
                        .avoid_allergens
                        .iter()
                        .map(|a| format!("no {a}")),
                );
                // The budget is repeated back in the turn it is said, in the store's
                // currency, with the shopper's words as its source.
                if let Some(c) = stated {
                    let currency = self.store_currency();
                    parts.push(format!("under {}", format_price(c, &currency)));
                    r.fact("", "price", format_price(c, &currency));
                    r.derived
                        .push(verify::Derived::ShopperAmount { cents: c, currency });
                }
                if parts.is_empty() {
                    r.say("Noted.");
                } else {
                    r.say(format!(
                        "Noted: I will suggest products that are {} during this visit.",
                        parts.join(", ")
                    ));
                }
            }
            Intent::Promotions => {
                let named = !intent::product_mention(clause, false).is_empty()
                    || intent::refers_back(clause);
                let resolved = if named {
                    self.resolve(it, clause, s)
                } else {
                    Resolved::Nothing
                };
                match resolved {
                    Resolved::Found(p) => {
                        s.mention(&p.sku);
                        let promo = self.view.active_promotion(&p.sku, &r.today);
                        match promo {
                            Some(_) => {
                                let price = self.price_text(p, r)?;
                                r.say(format!("Yes, {} is on offer: {price}.", p.name));
                            }
                            None => {
                                let price = self.price_text(p, r)?;
                                r.say(format!(
                                    "{} is not on offer at the moment; it is {price}.",
                                    p.name
                                ));
                            }
                        }
                    }
                    _ => {
                        // What is on offer, filtered by the shopper's preferences.
                        let skus = self.view.promoted_skus(&r.today);
                        let mention = intent::product_mention(clause, false);
                        let mut picks: Vec<&Product> = skus
                            .iter()
                            .filter_map(|k| self.product(k))
                            .filter(|p| self.fits(p, &s.preferences))
                            .collect();
                        if !mention.is_empty() {
                            let wanted: Vec<String> = aisle_catalog::search::words(&mention);
                            picks.retain(|p| {
                                let w = aisle_catalog::search::words(&format!(
                                    "{} {}",
                                    p.name, p.aisle
                                ));
                                wanted.iter().any(|x| w.contains(x))
                            });
                        }
                        picks.truncate(3);
                        if picks.is_empty() {
                            r.say("I found no current offers matching that.");
                        } else {
                            let mut list = Vec::new();
                            for p in &picks {
                                let price = self.price_text(p, r)?;
                                list.push(format!("{} at {price}", p.name));
                            }
                            r.say(format!("On offer now: {}.", list.join("; ")));
                        }
                    }
                }
            }
            Intent::Dietary
                if !intent::refers_back(clause)
                    && [
                        "do you have",
                        "show me",
                        "any ",
                        "do you sell",
                        "i need",
                        "looking for",
                    ]
                    .iter()
                    .any(|c| clause.contains(c)) =>
            {
                // "do you have gluten free pasta": a search with the label as filter.
                let tags = intent::dietary_in(clause);
                let mention = intent::product_mention(clause, true);
                if mention.is_empty() {
                    return self.recommend(clause, s, r);
                }
                let found = self.lookup_tagged(&mention, &tags, 3);
                if found.is_empty() {
                    r.say(format!(
                        "I found no {} {mention} in this store.",
                        tags.join(" ")
                    ));
                } else {
                    let list = r.listing(&found);
                    if let Some(first) = found.first() {
                        s.mention(&first.sku);
                    }
                    r.say(format!("Yes: {}.", list.join("; ")));
                }
            }
            Intent::Compare => self.compare(clause, s, r)?,
            Intent::Recommend => self.recommend(clause, s, r)?,
            _ => {
                match self.resolve(it, clause, s) {
                    Resolved::Found(p) => {
                        s.mention(&p.sku);
                        self.about_product(it, clause, p, s, r)?;
                    }
                    Resolved::NotFound(m) => {
                        if it == Intent::Unknown {
                            r.say(UNKNOWN);
                        } else {
                            r.not_found = true;
                            r.say(format!("I could not find \"{m}\" in this store. Try the name on the label, or hold the product up to the camera."));
                        }
                    }
                    Resolved::Nothing => {
                        if it == Intent::Unknown {
                            r.say(UNKNOWN);
                        } else {
                            r.say("Which product do you mean? Say its name or hold it up to the camera.");
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn fits(&self, p: &Product, prefs: &Preferences) -> bool {
        prefs.tags.iter().all(|t| p.has_tag(t))
            && !prefs
                .avoid_allergens
                .iter()
                .any(|a| p.allergens.contains(a))
            && prefs.max_price_cents.is_none_or(|m| p.price_cents <= m)
    }

    fn about_product(
        &self,
        it: Intent,
        clause: &str,
        p: &Product,
        s: &Session,
        r: &mut Reply,
    ) -> Result<()> {
        // Second clause about the same product: "It is in Aisle 26", not the name again.
        let named_before = r
            .facts
            .iter()
            .any(|f| f.kind == "product" && f.sku == p.sku);
        r.fact(&p.sku, "product", p.name.clone());
        let subject = if named_before {
            "It".to_string()
        } else {
            p.name.clone()
        };
        match it {
            Intent::Price => {
                let price = self.price_text(p, r)?;
                r.say(format!("{subject} is {price}."));
            }
            Intent::Location => {
                let aisle = self.aisle_text(p, r);
                r.say(format!("{subject} is in {aisle}."));
            }
            Intent::Availability | Intent::Substitutes => {
                let stock = self.view.stock(&p.sku);
                let total: i64 = stock.iter().map(|v| v.quantity).sum();
                let wants_bigger = [
                    "bigger",
                    "larger",
                    "large size",
                    "big size",
                    "large one",
                    "big one",
                ]
                .iter()
                .any(|w| format!(" {clause} ").contains(&format!(" {w} ")));
                if it == Intent::Substitutes {
                    r.say(format!("Instead of {}:", p.name));
                    return self.offer_alternatives(p, &[], r);
                }
                if wants_bigger {
                    match stock.iter().find(|v| v.variant == "large") {
                        Some(v) => {
                            r.fact(&p.sku, "variant", "large");
                            r.fact(&p.sku, "stock", v.quantity.to_string());
                            let price =
                                format_price(v.price_cents.unwrap_or(p.price_cents), &p.currency);
                            r.fact(&p.sku, "price", price.clone());
                            if v.quantity > 0 {
                                let aisle = self.aisle_text(p, r);
                                r.say(format!("Yes, {} comes in a large size: {} in stock at {price}, in {aisle}.", p.name, v.quantity));
                            } else {
                                r.say(format!(
                                    "The large size of {} ({price}) is out of stock.",
                                    p.name
                                ));
                                self.offer_alternatives(p, &[], r)?;
                            }
                        }
                        None => {
                            r.say(format!("{} comes in one size only.", p.name));
                        }
                    }
                    return Ok(());
                }
                r.fact(&p.sku, "stock", total.to_string());
                if total > 0 {
                    let aisle = self.aisle_text(p, r);
                    let sizes: Vec<String> = stock
                        .iter()
                        .filter(|v| !v.variant.is_empty())
                        .map(|v| {
                            r.fact(&p.sku, "stock", v.quantity.to_string());
                            format!("{} {}", v.quantity, v.variant)
                        })
                        .collect();
                    let detail = if sizes.len() > 1 {
                        format!(" ({})", sizes.join(", "))
                    } else {
                        String::new()
                    };
                    r.say(format!(
                        "Yes, {} is in stock: {total}{detail}, in {aisle}.",
                        p.name
                    ));
                } else {
                    r.say(format!("Sorry, {} is out of stock.", p.name));
                    self.offer_alternatives(p, &[], r)?;
                }
            }
            Intent::Dietary => {
                let tags = intent::dietary_in(clause);
                let tags: Vec<&str> = if tags.is_empty() {
                    s.preferences.tags.iter().map(String::as_str).collect()
                } else {
                    tags
                };
                let missing: Vec<&str> = tags.iter().copied().filter(|t| !p.has_tag(t)).collect();
                for t in &tags {
                    r.fact(&p.sku, "tag", *t);
                }
                if missing.is_empty() && !tags.is_empty() {
                    r.say(format!(
                        "Yes, {} is labelled {}.",
                        p.name,
                        tags.join(" and ")
                    ));
                } else if tags.is_empty() {
                    let labels = if p.tags.is_empty() {
                        "no dietary labels".to_string()
                    } else {
                        p.tags.join(", ")
                    };
                    r.say(format!("{} has {labels} in our catalog.", p.name));
                } else {
                    r.say(format!(
                        "{} is not labelled {}.",
                        p.name,
                        missing.join(" or ")
                    ));
                    let alts = self.lookup_tagged(&p.name, &missing, 3);
                    let alts: Vec<&Product> = if alts.is_empty() {
                        let mention = intent::product_mention(clause, true);
                        self.lookup_tagged(&mention, &missing, 3)
                    } else {
                        alts
                    };
                    if alts.is_empty() {
                        r.say("I found no such alternative here.");
                    } else {
                        let list = r.listing(&alts);
                        r.say(format!(
                            "{} options: {}.",
                            missing.join(", "),
                            list.join("; ")
                        ));
                    }
                }
            }
            Intent::Allergens => {
                let asked = intent::allergens_in(&intent::split_allergen_question(clause).1);
                for a in &p.allergens {
                    r.fact(&p.sku, "allergen", a.clone());
                }
                if asked.is_empty() {
                    if p.allergens.is_empty() {
                        r.say(format!("Our catalog lists no allergens for {}; please check the label to be sure.", p.name));
                    } else {
                        r.say(format!("{} contains: {}.", p.name, p.allergens.join(", ")));
                    }
                } else {
                    let hit: Vec<&str> = asked
                        .iter()
                        .copied()
                        .filter(|a| p.allergens.iter().any(|x| x == a))
                        .collect();
                    if hit.is_empty() {
                        r.say(format!(
                            "Our catalog lists no {} in {}; please check the label to be sure.",
                            asked.join(" or "),
                            p.name
                        ));
                    } else {
                        r.say(format!("Yes, {} contains {}.", p.name, hit.join(" and ")));
                    }
                }
            }
            _ => {
                // Named a product without a question we know: give the key facts.
                let price = self.price_text(p, r)?;
                let aisle = self.aisle_text(p, r);
                r.say(format!("{}: {price}, in {aisle}.", p.name));
            }
        }
        Ok(())
    }

    fn compare(&self, clause: &str, s: &mut Session, r: &mut Reply) -> Result<()> {
        let mut found: Vec<&Product> = Vec::new();
        let padded = format!(" {clause} ");
        for part in padded
            .split(" and ")
            .flat_map(|x| x.split(" or "))
            .flat_map(|x| x.split(" versus "))
            .flat_map(|x| x.split(" vs "))
            .flat_map(|x| x.split(" with "))
        {
            let part = intent::product_mention(part.trim(), false);
            if part.is_empty() {
                continue;
            }
            if let Some((p, _)) = self.lookup(&part) {
                if !found.iter().any(|x| x.sku == p.sku) {
                    found.push(p);
                }
            }
        }
        // "compare these two" / "this and the other one": from the conversation.
        for sku in s.focus.iter().rev() {
            if found.len() >= 2 {
                break;
            }
            if let Some(p) = self.product(sku) {
                if !found.iter().any(|x| x.sku == p.sku) {
                    found.push(p);
                }
            }
        }
        if found.len() < 2 {
            r.say(
                "Which two products should I compare? Name both, or scan them one after the other.",
            );
            return Ok(());
        }
        let (a, b) = (found[0], found[1]);
        s.mention(&b.sku);
        s.mention(&a.sku);
        let pa = self.price_text(a, r)?;
        let pb = self.price_text(b, r)?;
        let (ca, cb) = (a.price_cents, b.price_cents);
        let verdict = if ca == cb {
            "They cost the same.".to_string()
        } else {
            let (cheap, diff) = if ca < cb { (a, cb - ca) } else { (b, ca - cb) };
            let d = format_price(diff, &cheap.currency);
            r.fact(&cheap.sku, "price", d.clone());
            r.derived.push(verify::Derived::PriceDifference {
                a: a.sku.clone(),
                b: b.sku.clone(),
            });
            format!("{} is cheaper by {d}.", cheap.name)
        };
        r.say(format!("{} is {pa}; {} is {pb}. {verdict}", a.name, b.name));
        Ok(())
    }

    fn recommend(&self, clause: &str, s: &mut Session, r: &mut Reply) -> Result<()> {
        let mut tags: Vec<&str> = intent::dietary_in(clause);
        for t in &s.preferences.tags {
            if !tags.contains(&t.as_str()) {
                tags.push(t);
            }
        }
        let mention = intent::product_mention(clause, true);
        let query = if mention.is_empty() {
            s.current()
                .and_then(|k| self.product(k))
                .map(|p| p.name.clone())
                .unwrap_or_default()
        } else {
            mention
        };
        let words = aisle_catalog::search::words(&query);
        // Name matches first, then products whose aisle or department is named.
        let prefs = Preferences {
            tags: tags.iter().map(|t| t.to_string()).collect(),
            ..s.preferences.clone()
        };
        let mut picks: Vec<&Product> = self
            .view
            .index()
            .search(&query, 200)
            .into_iter()
            .filter(|m| m.score >= 0.3)
            .map(|m| &self.view.products()[m.doc])
            .filter(|p| self.fits(p, &prefs))
            .collect();
        let by_meaning = if picks.len() < 3 && !query.is_empty() {
            self.aisles_for(&query, 3)
        } else {
            Vec::new()
        };
        if picks.len() < 3 {
            if by_meaning.is_empty() {
                picks.extend(self.view.products().iter().filter(|p| {
                    let place = aisle_catalog::search::words(&format!(
                        "{} {}",
                        p.aisle,
                        p.department.as_deref().unwrap_or("")
                    ));
                    words.iter().any(|w| place.contains(w))
                }));
            } else {
                // The closest aisles in meaning, in order; one pick from each first.
                let mut per_aisle: Vec<Vec<&Product>> = by_meaning
                    .iter()
                    .map(|(a, _)| {
                        self.view
                            .products()
                            .iter()
                            .filter(|p| &p.aisle == a && self.fits(p, &prefs))
                            .collect()
                    })
                    .collect();
                for round in 0..3 {
                    for list in &mut per_aisle {
                        if let Some(p) = list.get(round) {
                            picks.push(p);
                        }
                    }
                }
            }
        }
        let mut seen = std::collections::HashSet::new();
        let picks: Vec<&Product> = picks
            .into_iter()
            .filter(|p| seen.insert(p.sku.clone()))
            .filter(|p| self.fits(p, &prefs))
            .filter(|p| self.view.total_stock(&p.sku) > 0)
            .take(3)
            .collect();
        if picks.is_empty() {
            r.say("I have nothing to suggest for that here; a member of staff may know more.");
            return Ok(());
        }
        let mut lines = Vec::new();
        for p in &picks {
            let price = format_price(p.price_cents, &p.currency);
            r.fact(&p.sku, "price", price.clone());
            r.fact(&p.sku, "aisle", p.aisle.clone());
            let mut why: Vec<String> = prefs
                .tags
                .iter()
                .filter(|t| p.has_tag(t))
                .cloned()
                .collect();
            if let Some(m) = prefs.max_price_cents {
                if p.price_cents <= m {
                    why.push("within your budget".into());
                }
            }
            let reason = if why.is_empty() {
                "in stock".to_string()
            } else {
                why.join(", ")
            };
            lines.push(format!("{} ({price}, {}; {reason})", p.name, p.aisle));
        }
        if let Some(first) = picks.first() {
            s.mention(&first.sku);
        }
        r.say(format!("You could try: {}.", lines.join("; ")));
        Ok(())
    }
}

enum Resolved<'p> {
    Found(&'p Product),
    NotFound(String),
    Nothing,
}

const UNKNOWN: &str = "I don't know that. I can tell you prices, stock, aisles, offers and dietary information for products in this store, or call a member of staff.";

/// "$5", "5 dollars", "under 5" in a clause.
fn budget_cents(clause: &str) -> Option<i64> {
    let words: Vec<&str> = clause.split(' ').collect();
    for (i, w) in words.iter().enumerate() {
        let num = w.trim_start_matches('$');
        let money = w.starts_with('$')
            || words
                .get(i + 1)
                .is_some_and(|n| n.starts_with("dollar") || n.starts_with("buck"))
            || (i > 0 && ["under", "below", "than", "budget", "max", "is"].contains(&words[i - 1]));
        if money {
            if let Ok(v) = num.parse::<f64>() {
                if v > 0.0 && v < 100_000.0 {
                    return Some((v * 100.0).round() as i64);
                }
            }
        }
    }
    None
}

/// What the shopper hears when an answer fails verification.
pub const WITHHELD: &str =
    "Sorry, I could not check that answer against the store's data. Please ask a member of staff.";

/// Answers withheld by the verifier since the process started (for `/metrics`).
static UNGROUNDED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// How many answers the verifier has withheld in this process.
pub fn withheld_count() -> u64 {
    UNGROUNDED.load(std::sync::atomic::Ordering::Relaxed)
}

/// Numbers in a text as written ("3.49", "12", "2026").
pub fn numbers(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let chars: Vec<char> = text.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        let decimal_point =
            c == '.' && !cur.is_empty() && chars.get(i + 1).is_some_and(|n| n.is_ascii_digit());
        if c.is_ascii_digit() || decimal_point {
            cur.push(c);
        } else if !cur.is_empty() {
            out.push(std::mem::take(&mut cur));
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_read_as_written() {
        assert_eq!(
            numbers("Aisle 61: 3.49, 2026-12-01."),
            vec!["61", "3.49", "2026", "12", "01"]
        );
    }

    /// Promotions follow the clock's date: the same engine, the day the offer ends
    /// and the day after.
    #[test]
    fn promotions_follow_the_clock() {
        use aisle_catalog::{Promotion, Variant};
        let product = Product {
            sku: "T1".into(),
            name: "Jasmine Tea".into(),
            brand: None,
            description: None,
            department: None,
            aisle: "Aisle 7: tea".into(),
            price_cents: 450,
            currency: "USD".into(),
            tags: vec![],
            allergens: vec![],
            images: vec![],
        };
        let stock = [(
            "T1".to_string(),
            vec![Variant {
                variant: String::new(),
                quantity: 9,
                price_cents: None,
            }],
        )]
        .into();
        let promos = [(
            "T1".to_string(),
            vec![Promotion {
                sku: "T1".into(),
                description: "spring offer".into(),
                price_cents: Some(399),
                percent_off: None,
                starts: "2026-03-01".into(),
                ends: "2026-03-31".into(),
            }],
        )]
        .into();
        let view = Arc::new(CatalogView::from_parts(1, vec![product], stock, promos));
        let clock = Arc::new(crate::clock::ManualClock::new("2026-03-31"));
        let engine = Assistant::over(view).with_clock(clock.clone());
        let a = engine
            .ask("how much is the jasmine tea", &mut Session::default(), None)
            .expect("answer");
        assert!(
            a.text.contains("$3.99") && a.text.contains("spring offer"),
            "{}",
            a.text
        );
        clock.set_today("2026-04-01");
        let a = engine
            .ask("how much is the jasmine tea", &mut Session::default(), None)
            .expect("answer");
        assert!(
            a.text.contains("$4.50") && !a.text.contains("$3.99"),
            "{}",
            a.text
        );
    }

    #[test]
    fn budgets() {
        assert_eq!(budget_cents("my budget is $5"), Some(500));
        assert_eq!(budget_cents("under 10 dollars"), Some(1000));
        assert_eq!(budget_cents("i am vegan"), None);
    }
}
