//! Config checking, driven by a table of (config text, expected diagnostics).

use std::path::Path;

use aisle_firmware_config::{
    COMMITTED_SCHEMA, ConfigFile, Overrides, check_str, json_schema_text, load,
};

/// Checks `text` as file `t.toml` in `base` and returns the rendered diagnostics.
fn check_in(base: &Path, text: &str) -> Vec<String> {
    match check_str(text, Path::new("t.toml"), base) {
        Ok(_) => Vec::new(),
        Err(diags) => diags.iter().map(ToString::to_string).collect(),
    }
}

fn check(text: &str) -> Vec<String> {
    check_in(Path::new("/nonexistent-base"), text)
}

#[test]
fn diagnostics_table() {
    let cases: &[(&str, &[&str])] = &[
        ("", &[]),
        ("[device]\nprofile = \"ar-tablet\"\n", &[]),
        (
            "[device]\nprofil = \"kiosk\"\n",
            &["t.toml:2:1: unknown key `profil` in `[device]`; did you mean `profile`?"],
        ),
        (
            "[camra]\nfps = 3\n",
            &["t.toml:1:2: unknown key `camra` at the top level; did you mean `camera`?"],
        ),
        (
            "[camera]\nwidth = \"wide\"\n",
            &["t.toml:2:9: `camera.width` must be an integer, found a string"],
        ),
        (
            "[thresholds]\nvad = 1.5\n",
            &["t.toml:2:7: `thresholds.vad` must be between 0 and 1, found 1.5"],
        ),
        (
            "[thresholds]\nvad = nan\nmatch_confidence = -nan\n",
            &[
                "t.toml:2:7: `thresholds.vad` must be a number, found nan",
                "t.toml:3:20: `thresholds.match_confidence` must be a number, found nan",
            ],
        ),
        (
            "[thresholds]\nvad = inf\n",
            &["t.toml:2:7: `thresholds.vad` must be between 0 and 1, found inf"],
        ),
        (
            "[camera]\nfps = 0\n",
            &["t.toml:2:7: `camera.fps` must be between 1 and 120, found 0"],
        ),
        (
            "[device]\nprofile = \"tablet\"\n",
            &[
                "t.toml:2:11: `device.profile` must be one of \"kiosk\", \"ar-tablet\", found \"tablet\"; did you mean \"ar-tablet\"?",
            ],
        ),
        (
            "[privacy]\npersist_audio = \"no\"\n",
            &["t.toml:2:17: `privacy.persist_audio` must be a boolean, found a string"],
        ),
        (
            "device = 3\n",
            &["t.toml:1:10: `device` must be a table, found an integer"],
        ),
        (
            "[camera]\nsource = \"image\"\n",
            &["t.toml:2:10: `camera.source` is \"image\" but `camera.path` is not set"],
        ),
        (
            "[service]\nbind = \"0.0.0.0:80\"\n",
            &[
                "t.toml:2:8: `service.bind` 0.0.0.0:80 is not a loopback address; set `service.allow_non_loopback = true` to expose the API to the network",
            ],
        ),
        (
            "[service]\nbind = \"0.0.0.0:80\"\nallow_non_loopback = true\n",
            &[],
        ),
        (
            "[service]\nbind = \"localhost\"\n",
            &[
                "t.toml:2:8: `service.bind` must be IP:PORT, e.g. 127.0.0.1:8480, found \"localhost\"",
            ],
        ),
        (
            "[service]\nstaff_webhook = \"https://staff.example/hook\"\n",
            &[
                "t.toml:2:17: `service.staff_webhook` must be an http:// URL, found \"https://staff.example/hook\"",
            ],
        ),
        (
            "camera.fps = 500\n",
            &["t.toml:1:14: `camera.fps` must be between 1 and 120, found 500"],
        ),
        (
            "audio = { input = { source = \"wave\" } }\n",
            &[
                "t.toml:1:30: `audio.input.source` must be one of \"microphone\", \"wav\", \"none\", found \"wave\"; did you mean \"wav\"?",
            ],
        ),
        (
            "[camera]\nwidth = 99999999999\n",
            &["t.toml:2:9: `camera.width` must be between 64 and 7680, found 99999999999"],
        ),
    ];
    for (text, expected) in cases {
        assert_eq!(&check(text), expected, "config:\n{text}");
    }
}

#[test]
fn three_mistakes_give_three_diagnostics_in_one_run() {
    let text = "\
[device]
profile = \"kisok\"

[camera]
fps = \"thirty\"

[thresholds]
match_confidnce = 0.7
";
    assert_eq!(
        check(text),
        vec![
            "t.toml:2:11: `device.profile` must be one of \"kiosk\", \"ar-tablet\", found \"kisok\"; did you mean \"kiosk\"?",
            "t.toml:5:7: `camera.fps` must be an integer, found a string",
            "t.toml:8:1: unknown key `match_confidnce` in `[thresholds]`; did you mean `match_confidence`?",
        ]
    );
}

/// 60,000 mistakes, each located on its own line (locating them once rescanned the
/// text for every problem: 22 s for this file; now one pass builds a line index).
#[test]
fn sixty_thousand_mistakes_are_each_located() {
    let mut text = String::from("[thresholds]\n");
    for i in 0..60_000 {
        text += &format!("k{i} = 1\n");
    }
    let found = check(&text);
    assert_eq!(found.len(), 60_000);
    assert!(
        found[0].starts_with("t.toml:2:1: unknown key `k0`"),
        "{}",
        found[0]
    );
    assert!(
        found[59_999].starts_with("t.toml:60001:1: unknown key `k59999`"),
        "{}",
        found[59_999]
    );
}

#[test]
fn referenced_files_must_exist_relative_to_the_config() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("frame.png"), b"not checked here").expect("write");
    let ok = "[camera]\nsource = \"image\"\npath = \"frame.png\"\n";
    assert_eq!(check_in(dir.path(), ok), Vec::<String>::new());
    let missing = "[camera]\nsource = \"image\"\npath = \"gone.png\"\n\n[audio.input]\nsource = \"wav\"\npath = \"q.wav\"\n";
    let diags = check_in(dir.path(), missing);
    assert_eq!(diags.len(), 2, "{diags:#?}");
    assert!(
        diags[0].starts_with("t.toml:3:8: `camera.path` names a file that does not exist: "),
        "{}",
        diags[0]
    );
    assert!(diags[0].ends_with("gone.png"), "{}", diags[0]);
    assert!(
        diags[1].starts_with("t.toml:7:8: `audio.input.path` names a file that does not exist"),
        "{}",
        diags[1]
    );
    let folder = "[camera]\nsource = \"folder\"\npath = \"frame.png\"\n";
    let diags = check_in(dir.path(), folder);
    assert_eq!(diags.len(), 1);
    assert!(
        diags[0].contains("names a folder that does not exist"),
        "{}",
        diags[0]
    );
}

#[test]
fn malformed_toml_is_one_located_error() {
    for (text, prefix) in [
        ("[device\n", "t.toml:1:8: TOML syntax error"),
        ("a = \"unterminated\n", "t.toml:1:18: TOML syntax error"),
        ("x = 1\nx = 2\n", "t.toml:2:1: TOML syntax error"),
        ("\u{feff}[device]\nname = \"ok\"\n", ""),
    ] {
        let diags = check(text);
        if prefix.is_empty() {
            assert!(diags.is_empty(), "{diags:?}");
        } else {
            assert_eq!(diags.len(), 1, "{text:?}: {diags:?}");
            assert!(diags[0].starts_with(prefix), "{text:?}: {}", diags[0]);
        }
    }
}

#[test]
fn load_reads_files_and_names_them_in_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let overrides = Overrides {
        data_dir: Some(dir.path().join("data")),
    };
    let missing = dir.path().join("missing.toml");
    let err = load(Some(&missing), &overrides).expect_err("missing file");
    assert!(err.to_string().contains("missing.toml"), "{err}");

    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[camera]\nfps = -1\n").expect("write");
    let err = load(Some(&bad), &overrides).expect_err("invalid");
    let text = err.to_string();
    assert!(
        text.contains("bad.toml:2:7: `camera.fps` must be between 1 and 120, found -1"),
        "{text}"
    );

    let binary = dir.path().join("binary.toml");
    std::fs::write(&binary, [0xff, 0xfe, 0x00, 0x41]).expect("write");
    let err = load(Some(&binary), &overrides).expect_err("not UTF-8");
    assert!(err.to_string().contains("binary.toml"), "{err}");

    let good = dir.path().join("good.toml");
    std::fs::write(&good, "[paths]\nmodel_dir = \"store\"\n").expect("write");
    let cfg = load(Some(&good), &overrides).expect("valid");
    assert_eq!(cfg.data_dir, dir.path().join("data"));
    assert_eq!(cfg.model_dir, dir.path().join("store"));
}

#[test]
fn effective_config_round_trips_through_toml() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = load(
        None,
        &Overrides {
            data_dir: Some(dir.path().to_path_buf()),
        },
    )
    .expect("defaults");
    let text = cfg.to_toml();
    let back =
        check_str(&text, Path::new("shown.toml"), dir.path()).expect("shown config is valid");
    let mut expected = ConfigFile::default();
    expected.paths.data_dir = Some(cfg.data_dir.clone());
    expected.paths.model_dir = Some(cfg.model_dir.clone());
    assert_eq!(back, expected);
    assert_eq!(
        cfg.file.service.bind, "127.0.0.1:8480",
        "the API binds to loopback by default"
    );
    assert!(!cfg.file.privacy.persist_audio && !cfg.file.privacy.persist_images);
}

#[test]
fn committed_schema_matches_the_types() {
    let generated = json_schema_text();
    if std::env::var_os("UPDATE_EXPECT").is_some() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("schema/aisle-config.schema.json");
        std::fs::write(&path, &generated).expect("write schema");
        return;
    }
    assert!(
        generated == COMMITTED_SCHEMA,
        "schema/aisle-config.schema.json is stale: run `UPDATE_EXPECT=1 cargo test -p aisle-firmware-config`"
    );
}

#[test]
fn bundled_demo_config_is_valid() {
    let text = include_str!("../../../demo/aisle.toml");
    assert_eq!(check(text), Vec::<String>::new());
}
