//! `aisle bench assistant`: the grammar path on the demo store. Lookup latency and
//! accuracy against rapidfuzz (Python, C++ inside: the usual fuzzy matcher) on the same
//! 49,689 names and the same queries, answer latency per intent, and end of speech to
//! answer text for spoken questions.

use std::process::ExitCode;
use std::time::Instant;

use aisle_firmware_config::DeviceConfig;
use aisle_runtime::catalog::ProductIndex;
use aisle_runtime::dialogue::{Assistant, Session};
use anyhow::Result;

const PEER_SCRIPT: &str = include_str!("peer_rapidfuzz.py");
const PEER_REQUIREMENT: &str = "rapidfuzz==3.14.6";

/// (what the shopper says, the product meant): exact, reordered, misheard, partial.
const LOOKUPS: &[(&str, &str)] = &[
    ("banana", "G24852"),
    ("whole milk", "G03594"),
    ("organic creamy peanut butter", "G43713"),
    ("gluten free spaghetti pasta", "G42964"),
    ("unsweetened almond milk", "G24838"),
    ("sparkling water", "G05258"),
    ("extra virgin olive oil", "G07766"),
    ("large brown eggs", "G26384"),
    ("organic baby spinach", "G21903"),
    ("honey crisp apples", "G17122"),
    ("greek yoghurt", "G45675"),
    ("chedar cheese", "G12128"),
    ("orange juice", "G34050"),
    ("peanut butter cookies", "G13820"),
    ("whole wheat bread", "G13517"),
    ("basmatti rice", "G19760"),
    ("paper towel", "G05128"),
    ("ground coffee", "G18443"),
    ("cocunut water", "G14715"),
    ("humus", "G09422"),
    ("soy sauce", "G25170"),
    ("vanila ice cream", "G32691"),
    ("cinnamon raisin bagels", "G30764"),
    ("bananas", "G24852"),
];

const QUESTIONS: &[&str] = &[
    "how much is the banana",
    "where can I find the greek yogurt",
    "do you have basmati rice in stock",
    "is the orange juice on sale",
    "does the peanut butter cookies contain peanuts",
    "is the chocolate cake gluten free",
    "do you have gluten free pasta",
    "compare whole milk and orange juice",
    "what's on sale this week",
    "can you recommend some fruit",
    "I'm vegan",
    "can I talk to someone",
];

const SPOKEN: &[&str] = &[
    "how much is the banana",
    "where can I find the orange juice",
    "do you have sparkling water in stock",
];

/// The same product name up to word order and spacing ("Milk Whole", "Whole Milk";
/// "Almondmilk", "Almond Milk"): the catalog holds such duplicates.
fn same_name(a: &str, b: &str) -> bool {
    let words = |s: &str| {
        let mut w: Vec<String> = s.split_whitespace().map(|x| x.to_lowercase()).collect();
        w.sort();
        w
    };
    let joined = |s: &str| s.to_lowercase().replace(' ', "");
    words(a) == words(b) || joined(a) == joined(b)
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * p).round() as usize]
}

pub fn run(cfg: &DeviceConfig, runs: usize, with_peer: bool, json: bool) -> Result<ExitCode> {
    let runs = runs.max(1);
    let cat = aisle_runtime::kiosk::demo_catalog(&crate::isolated(cfg))?.0;
    let t = Instant::now();
    let products = cat.products()?;
    let load_ms = t.elapsed().as_secs_f64() * 1000.0;
    let t = Instant::now();
    let index = ProductIndex::build(&products);
    let index_ms = t.elapsed().as_secs_f64() * 1000.0;

    // Lookup: median per query, and whether the meant product came first.
    let mut ours = Vec::new();
    for (q, _) in LOOKUPS {
        let mut times = Vec::new();
        let mut top = None;
        for _ in 0..runs {
            let t = Instant::now();
            top = index.search(q, 1).into_iter().next();
            times.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        ours.push((percentile(&mut times, 0.5), top.map(|m| m.sku)));
    }
    let name_of = |sku: Option<&str>| {
        sku.and_then(|k| cat.product(k).ok().flatten())
            .map(|p| p.name)
            .unwrap_or_else(|| "-".into())
    };
    let hit = |got: Option<&str>, want: &str| {
        got == Some(want) || (got.is_some() && same_name(&name_of(got), &name_of(Some(want))))
    };
    let our_right = ours
        .iter()
        .zip(LOOKUPS)
        .filter(|((_, got), (_, want))| hit(got.as_deref(), want))
        .count();

    let engine = Assistant::new(&cat)?;
    let mut answer_ms = Vec::new();
    for q in QUESTIONS {
        for _ in 0..runs {
            let a = engine.ask(q, &mut Session::default(), None)?;
            answer_ms.push(a.elapsed_us as f64 / 1000.0);
        }
    }
    let (p50, p95, max) = (
        percentile(&mut answer_ms, 0.5),
        percentile(&mut answer_ms, 0.95),
        percentile(&mut answer_ms, 1.0),
    );

    // End of speech to answer text: VAD + whisper on the whole utterance, then the
    // grammar (the live loop's speculative decode usually hides part of this).
    let dir = tempfile::tempdir()?;
    let transcriber = crate::load_transcriber(cfg, Some(2))?;
    let mut eos = Vec::new();
    for (i, q) in SPOKEN.iter().enumerate() {
        let wav = crate::speech::espeak_16k(q, dir.path(), &format!("q{i}"))?;
        let audio = aisle_speech::decode_wav(&wav)?;
        let mut times = Vec::new();
        let mut heard = String::new();
        for _ in 0..runs {
            let t = Instant::now();
            let tr = transcriber.transcribe(&audio.samples, None)?;
            let a = engine.ask(&tr.text, &mut Session::default(), None)?;
            times.push(t.elapsed().as_secs_f64() * 1000.0);
            heard = format!("{} -> {}", tr.text, a.text);
        }
        eos.push((*q, percentile(&mut times, 0.5), heard));
    }
    let our_peak = crate::speech::peak_rss_mib();

    let peer: Option<serde_json::Value> = if with_peer {
        let python = aisle_models::ensure_venv(
            &cfg.data_dir.join("tools/bench-venv-rapidfuzz"),
            &[PEER_REQUIREMENT],
            "rapidfuzz",
        )?;
        let names = dir.path().join("names.txt");
        let queries = dir.path().join("queries.txt");
        std::fs::write(
            &names,
            products
                .iter()
                .map(|p| p.name.as_str())
                .collect::<Vec<_>>()
                .join("\n"),
        )?;
        std::fs::write(
            &queries,
            LOOKUPS
                .iter()
                .map(|(q, _)| *q)
                .collect::<Vec<_>>()
                .join("\n"),
        )?;
        Some(crate::run_peer(
            &python,
            dir.path(),
            "peer_rapidfuzz.py",
            PEER_SCRIPT,
            &[
                names.into_os_string(),
                queries.into_os_string(),
                runs.to_string().into(),
            ],
        )?)
    } else {
        None
    };
    let peer_row = |i: usize| -> Option<(f64, Option<String>)> {
        let r = &peer.as_ref()?["results"][i];
        let sku = r["index"]
            .as_u64()
            .and_then(|j| products.get(j as usize))
            .map(|p| p.sku.clone());
        Some((r["ms"].as_f64()?, sku))
    };
    let peer_right = (0..LOOKUPS.len())
        .filter(|&i| hit(peer_row(i).and_then(|r| r.1).as_deref(), LOOKUPS[i].1))
        .count();
    let mut ours_ms: Vec<f64> = ours.iter().map(|r| r.0).collect();
    let our_med = percentile(&mut ours_ms, 0.5);
    let mut peer_ms: Vec<f64> = (0..LOOKUPS.len())
        .filter_map(|i| peer_row(i).map(|r| r.0))
        .collect();
    let peer_med = (!peer_ms.is_empty()).then(|| percentile(&mut peer_ms, 0.5));
    let peer_peak = peer
        .as_ref()
        .and_then(|p| p["peak_rss_kib"].as_f64())
        .map(|k| k / 1024.0);

    if json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "products": products.len(),
                "catalog_load_ms": load_ms,
                "index_build_ms": index_ms,
                "lookup": {
                    "queries": LOOKUPS.len(),
                    "aisle_median_ms": our_med, "aisle_top1": our_right,
                    "peer": "rapidfuzz WRatio", "peer_median_ms": peer_med, "peer_top1": peer.as_ref().map(|_| peer_right),
                    "peer_build_ms": peer.as_ref().and_then(|p| p["build_ms"].as_f64()),
                },
                "answer_ms": { "p50": p50, "p95": p95, "max": max, "questions": QUESTIONS.len(), "runs": runs },
                "end_of_speech_to_answer": eos.iter().map(|(q, ms, heard)| serde_json::json!({ "question": q, "ms": ms, "heard": heard })).collect::<Vec<_>>(),
                "aisle_peak_rss_mib": our_peak,
                "peer_peak_rss_mib": peer_peak,
            }))?
        );
        return Ok(ExitCode::SUCCESS);
    }
    outln!(
        "assistant benchmark: demo store, {} products; catalog load {load_ms:.0} ms, name index build {index_ms:.0} ms; median of {runs} run(s)",
        products.len()
    );
    outln!(
        "product lookup ({} spoken-style queries: exact, misheard, reordered):",
        LOOKUPS.len()
    );
    outln!("  {:<22} {:>12} {:>10}", "", "median ms", "top-1");
    outln!(
        "  {:<22} {our_med:>12.3} {:>10}",
        "aisle ProductIndex",
        format!("{our_right}/{}", LOOKUPS.len())
    );
    match peer_med {
        Some(pm) => {
            outln!(
                "  {:<22} {pm:>12.3} {:>10}",
                "rapidfuzz (WRatio)",
                format!("{peer_right}/{}", LOOKUPS.len())
            );
            outln!("  aisle/peer latency {:.2}x", our_med / pm);
        }
        None => outln!("  rapidfuzz: skipped (--no-peer)"),
    }
    for (i, (q, want)) in LOOKUPS.iter().enumerate() {
        let got = ours[i].1.as_deref();
        let peer_got = peer_row(i).and_then(|r| r.1);
        if !hit(got, want) || (peer.is_some() && !hit(peer_got.as_deref(), want)) {
            outln!(
                "  miss {q:?}: meant {}; aisle {}; rapidfuzz {}",
                name_of(Some(want)),
                name_of(got),
                name_of(peer_got.as_deref())
            );
        }
    }
    outln!(
        "grammar answers ({} questions x {runs}): p50 {p50:.2} ms, p95 {p95:.2} ms, max {max:.2} ms (goal: under 20 ms)",
        QUESTIONS.len()
    );
    outln!("end of speech to answer text (VAD + whisper + grammar, 2 threads; goal under 1 s):");
    for (q, ms, heard) in &eos {
        outln!("  {ms:>7.0} ms  {q:<36} {heard}");
    }
    outln!(
        "peak memory: aisle {} MiB (demo store, index, speech models), rapidfuzz {} MiB",
        our_peak
            .map(|m| format!("{m:.0}"))
            .unwrap_or_else(|| "?".into()),
        peer_peak
            .map(|m| format!("{m:.0}"))
            .unwrap_or_else(|| "-".into())
    );
    Ok(ExitCode::SUCCESS)
}
