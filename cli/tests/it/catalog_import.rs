//! `aisle catalog import`: CSV and JSON Lines, bad rows by line number, idempotence,
//! updates; through the library and through the binary's exit codes.

use aisle_runtime::catalog::{CatalogDb, CatalogError, ImportOptions, import_file};

use crate::{aisle, assert_fails_with, text};

const CSV: &str = "\
sku,name,price,stock,aisle,brand,tags,allergens,variant,variant_price,promo_description,promo_percent_off,promo_starts,promo_ends
A1,Organic Peanut Butter,3.49,12,Aisle 9: spreads,Nutty,organic;vegan,peanuts,,,,,,
B2,Oat Milk,2.99,5,Aisle 3: dairy,Oaty,vegan;lactose-free,,regular,,10% off,10,2026-01-01,2099-12-31
B2,Oat Milk,2.99,0,Aisle 3: dairy,Oaty,vegan;lactose-free,,large,4.99,,,,
C3,\"Crackers, Salted\",1.5,40,Aisle 12: snacks,,,gluten,,,,,,
";

fn write(dir: &std::path::Path, name: &str, body: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, body).expect("write");
    p
}

#[test]
fn csv_import_is_exact_and_idempotent_and_updates() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cat = CatalogDb::open(&dir.path().join("db.sqlite")).expect("open");
    let file = write(dir.path(), "store.csv", CSV);
    let opts = ImportOptions::default();
    let r = import_file(&mut cat, &file, &opts).expect("import");
    assert_eq!(
        (r.rows, r.products, r.added, r.updated, r.unchanged),
        (4, 3, 3, 0, 0)
    );
    let pb = cat.product("A1").expect("db").expect("A1");
    assert_eq!(
        (pb.price_cents, pb.tags.clone(), pb.allergens.clone()),
        (
            349,
            vec!["organic".to_string(), "vegan".into()],
            vec!["peanuts".to_string()]
        )
    );
    assert_eq!(
        cat.product("C3").expect("db").expect("C3").name,
        "Crackers, Salted"
    );
    let stock = cat.stock("B2").expect("db");
    assert_eq!(stock.len(), 2);
    assert_eq!(
        (
            stock[1].variant.as_str(),
            stock[1].quantity,
            stock[1].price_cents
        ),
        ("large", 0, Some(499))
    );
    assert_eq!(cat.promotions("B2").expect("db")[0].percent_off, Some(10.0));
    let rev = cat.revision().expect("rev");

    // The same file again changes nothing.
    let r = import_file(&mut cat, &file, &opts).expect("import");
    assert_eq!((r.added, r.updated, r.unchanged), (0, 0, 3));
    assert_eq!(cat.revision().expect("rev"), rev);

    // A changed price updates that product only.
    let changed = write(dir.path(), "store2.csv", &CSV.replace("3.49,12", "3.79,11"));
    let r = import_file(&mut cat, &changed, &opts).expect("import");
    assert_eq!((r.added, r.updated, r.unchanged), (0, 1, 2));
    assert_eq!(cat.product("A1").expect("db").expect("A1").price_cents, 379);
    assert_eq!(cat.total_stock("A1").expect("db"), 11);
    assert_eq!(cat.revision().expect("rev"), rev + 1);
}

#[test]
fn jsonl_import_with_arrays() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cat = CatalogDb::open(&dir.path().join("db.sqlite")).expect("open");
    let file = write(
        dir.path(),
        "store.jsonl",
        "{\"sku\":\"J1\",\"name\":\"Rye Bread\",\"price\":2.5,\"stock\":7,\"aisle\":\"Aisle 2: bakery\",\"tags\":[\"vegan\"],\"allergens\":[\"gluten\"]}\n\n{\"sku\":\"J2\",\"name\":\"Honey\",\"price\":\"6\",\"stock\":0,\"aisle\":\"Aisle 8\",\"currency\":\"eur\"}\n",
    );
    let r = import_file(&mut cat, &file, &ImportOptions::default()).expect("import");
    assert_eq!(r.added, 2);
    let j1 = cat.product("J1").expect("db").expect("J1");
    assert_eq!(
        (j1.price_cents, j1.tags, j1.allergens),
        (250, vec!["vegan".to_string()], vec!["gluten".to_string()])
    );
    assert_eq!(cat.product("J2").expect("db").expect("J2").currency, "EUR");
}

/// An import streams its rows through the database: rows of one product far apart
/// in the file still merge (variants and promotions in file order), a repeated
/// variant is named with its first line, and the in-memory path agrees.
#[test]
fn rows_of_one_product_far_apart_merge_and_a_repeated_variant_names_its_first_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let body = "sku,name,price,stock,aisle,variant,promo_description,promo_percent_off,promo_starts,promo_ends
B2,Oat Milk,2.99,5,Aisle 3,small,10% off,10,2026-01-01,2099-12-31
Z9,Zest,1.00,1,Aisle 1,,,,,
A1,Apple,0.50,9,Aisle 2,,,,,
B2,Oat Milk Large,3.99,0,Aisle 3,large,20% off,20,2026-01-01,2099-12-31
B2,Oat Milk,2.99,7,Aisle 3,small,,,,
";
    let file = write(dir.path(), "split.csv", body);
    let mut cat = CatalogDb::open(&dir.path().join("db.sqlite")).expect("open");
    let err = import_file(&mut cat, &file, &ImportOptions::default()).expect_err("duplicate");
    assert!(
        err.to_string()
            .contains("line 6: sku B2 variant \"small\" already on line 2"),
        "{err}"
    );
    assert_eq!(cat.product_count().expect("db"), 0, "nothing imported");
    let opts = ImportOptions {
        skip_bad_rows: true,
        ..Default::default()
    };
    let r = import_file(&mut cat, &file, &opts).expect("import");
    assert_eq!((r.rows, r.products, r.added, r.skipped.len()), (5, 3, 3, 1));
    let b2 = cat.product("B2").expect("db").expect("B2");
    assert_eq!((b2.name.as_str(), b2.price_cents), ("Oat Milk", 299));
    let stock: Vec<(String, i64)> = cat
        .stock("B2")
        .expect("db")
        .into_iter()
        .map(|v| (v.variant, v.quantity))
        .collect();
    assert_eq!(stock, vec![("small".into(), 5), ("large".into(), 0)]);
    let promos: Vec<String> = cat
        .promotions("B2")
        .expect("db")
        .into_iter()
        .map(|p| p.description)
        .collect();
    assert_eq!(promos, vec!["10% off".to_string(), "20% off".into()]);
    // A second import of the same file: the staging table is gone, nothing changes.
    let again = import_file(&mut cat, &file, &opts).expect("again");
    assert_eq!((again.unchanged, again.revision), (3, r.revision));
    // The same bytes held in memory give the same catalog.
    let mut mem = CatalogDb::open(&dir.path().join("mem.sqlite")).expect("open");
    let m = aisle_runtime::catalog::import_bytes(&mut mem, body.as_bytes(), &file, &opts)
        .expect("import bytes");
    assert_eq!((m.rows, m.products, m.added), (5, 3, 3));
    for sku in ["A1", "B2", "Z9"] {
        assert_eq!(mem.product(sku).expect("db"), cat.product(sku).expect("db"));
        assert_eq!(mem.stock(sku).expect("db"), cat.stock(sku).expect("db"));
        assert_eq!(
            mem.promotions(sku).expect("db"),
            cat.promotions(sku).expect("db")
        );
    }
}

#[test]
fn bad_rows_are_reported_by_line_and_nothing_is_imported() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cat = CatalogDb::open(&dir.path().join("db.sqlite")).expect("open");
    let bad = write(
        dir.path(),
        "bad.csv",
        "sku,name,price,stock,aisle\nA1,Good,1.00,3,Aisle 1\nA2,No price,,3,Aisle 1\nA3,Bad stock,1.00,three,Aisle 1\nA4,Negative,-2,1,Aisle 1\nA5,Short row,1.00\nA1,Duplicate,1.00,1,Aisle 1\n",
    );
    let err = import_file(&mut cat, &bad, &ImportOptions::default()).expect_err("bad rows");
    let CatalogError::BadRows { problems, .. } = &err else {
        panic!("{err}");
    };
    let lines: Vec<u64> = problems.iter().map(|p| p.line).collect();
    assert_eq!(lines, vec![3, 4, 5, 6, 7], "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("bad.csv")
            && msg.contains("line 3: missing price")
            && msg.contains("line 4: `stock` must be a whole number"),
        "{msg}"
    );
    assert_eq!(cat.product_count().expect("db"), 0, "nothing imported");

    let opts = ImportOptions {
        skip_bad_rows: true,
        ..Default::default()
    };
    let r = import_file(&mut cat, &bad, &opts).expect("import");
    assert_eq!((r.added, r.skipped.len()), (1, 5));
    assert_eq!(cat.product_count().expect("db"), 1);

    // Unknown columns (with a suggestion), empty and binary files.
    let typo = write(
        dir.path(),
        "typo.csv",
        "sku,name,prise,stock,aisle\nA,B,1,1,C\n",
    );
    let e = import_file(&mut cat, &typo, &ImportOptions::default())
        .expect_err("typo")
        .to_string();
    assert!(
        e.contains("typo.csv") && e.contains("`prise` (did you mean `price`?)"),
        "{e}"
    );
    let empty = write(dir.path(), "empty.csv", "");
    let e = import_file(&mut cat, &empty, &ImportOptions::default())
        .expect_err("empty")
        .to_string();
    assert!(e.contains("empty.csv: the file is empty"), "{e}");
    let bin = dir.path().join("bin.csv");
    std::fs::write(&bin, [0xffu8, 0xfe, 0x00, 0x01]).expect("write");
    let e = import_file(&mut cat, &bin, &ImportOptions::default())
        .expect_err("binary")
        .to_string();
    assert!(e.contains("bin.csv: not UTF-8"), "{e}");
}

#[test]
fn cli_import_and_ask_on_an_own_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let file = write(dir.path(), "store.csv", CSV);
    let d = data.to_str().expect("utf-8");
    let out = aisle(&[
        "--data-dir",
        d,
        "catalog",
        "import",
        file.to_str().expect("utf-8"),
        "--json",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["added"], 3);

    let bad = write(
        dir.path(),
        "bad.jsonl",
        "{\"sku\":\"X\",\"name\":\"Y\"}\nnot json\n",
    );
    let out = aisle(&[
        "--data-dir",
        d,
        "catalog",
        "import",
        bad.to_str().expect("utf-8"),
    ]);
    assert_fails_with(&out, "bad.jsonl: 2 bad row(s), nothing imported");
    assert!(
        text(&out.stderr).contains("line 2: invalid JSON"),
        "{}",
        text(&out.stderr)
    );

    let session = dir.path().join("session.json");
    let s = session.to_str().expect("utf-8");
    let out = aisle(&[
        "--data-dir",
        d,
        "ask",
        "how much is the oat milk?",
        "--session",
        s,
        "--json",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["intent"], "price");
    assert_eq!(v["products"][0], "B2");
    assert!(
        v["answer"]
            .as_str()
            .is_some_and(|a| a.contains("$2.69") && a.contains("10% off")),
        "{v}"
    );
    let out = aisle(&[
        "--data-dir",
        d,
        "ask",
        "is it in stock?",
        "--session",
        s,
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(
        v["products"][0], "B2",
        "the session carried the product: {v}"
    );
    assert!(
        v["answer"]
            .as_str()
            .is_some_and(|a| a.contains("5 regular, 0 large")),
        "{v}"
    );

    let out = aisle(&["--data-dir", d, "ask", "--sku", "NOPE", "how much is it"]);
    assert_fails_with(&out, "no product with sku \"NOPE\"");
}

/// What used to import wrong without a word: each is now a problem named by line,
/// or (a byte-order mark) read as the spreadsheet meant.
#[test]
fn silent_wrong_imports_are_named_or_read_right() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cat = CatalogDb::open(&dir.path().join("db.sqlite")).expect("open");
    let opts = ImportOptions::default();
    let bad = write(
        dir.path(),
        "promos.csv",
        "sku,name,price,stock,aisle,promo_description,promo_price,promo_percent_off\n\
A1,No description,2.00,1,Aisle 1,,1.50,\n\
A2,Dearer on offer,2.00,1,Aisle 1,Big deal,2.50,\n\
A3,Slipped decimal,349000000,1,Aisle 1,,,\n\
A4,Fine,2.00,1,Aisle 1,Half price,,50\n",
    );
    let err = import_file(&mut cat, &bad, &opts).expect_err("bad rows");
    let msg = err.to_string();
    for want in [
        "line 2: `promo_price` is given but `promo_description` is empty",
        "line 3: `promo_price` 2.50 is not below `price` 2.00",
        "line 4: `price` 349000000 is above 100000",
    ] {
        assert!(msg.contains(want), "missing {want:?} in {msg}");
    }
    let dup = write(
        dir.path(),
        "dup.csv",
        "sku,name,price,stock,aisle,price\nA1,Milk,1.00,1,Aisle 1,9.99\n",
    );
    let e = import_file(&mut cat, &dup, &opts)
        .expect_err("dup")
        .to_string();
    assert!(
        e.contains("dup.csv: line 1: column `price` appears twice"),
        "{e}"
    );
    let nested = write(
        dir.path(),
        "nested.jsonl",
        "{\"sku\":\"N1\",\"name\":\"Milk\",\"price\":1.5,\"stock\":2,\"aisle\":\"Aisle 1\",\"brand\":{\"x\":1}}\n\
{\"sku\":\"N2\",\"name\":\"Tea\",\"price\":1.5,\"stock\":2,\"aisle\":\"Aisle 1\",\"tags\":[\"vegan\",[\"x\"]]}\n",
    );
    let e = import_file(&mut cat, &nested, &opts)
        .expect_err("nested")
        .to_string();
    assert!(
        e.contains("line 1: `brand` must be a plain value, found an object")
            && e.contains("line 2: `tags` must be a list of plain values, found a nested list"),
        "{e}"
    );
    assert_eq!(cat.product_count().expect("db"), 0, "nothing imported");
    // A byte-order mark in JSON Lines, as in CSV, is not data.
    let bom = write(
        dir.path(),
        "bom.jsonl",
        "\u{feff}{\"sku\":\"J1\",\"name\":\"Juice\",\"price\":\"2.25\",\"stock\":3,\"aisle\":\"Aisle 4\"}\n",
    );
    import_file(&mut cat, &bom, &opts).expect("a JSONL file with a BOM");
    let bom = write(
        dir.path(),
        "bom.csv",
        "\u{feff}sku,name,price,stock,aisle\nC1,Cola,1.25,6,Aisle 4\n",
    );
    import_file(&mut cat, &bom, &opts).expect("a CSV file with a BOM");
    assert_eq!(cat.product_count().expect("db"), 2);
}
