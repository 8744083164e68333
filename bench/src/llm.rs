//! `aisle bench llm`: the on-device LLM (llama.cpp in `libaisle_llm.so`) against
//! llama.cpp through llama-cpp-python on the same GGUF, threads, prompts, grammar and
//! greedy decoding: free generation (first token, tokens/s) and the dialogue fallback
//! (a cached system prompt, a grammar-constrained product read per question), plus
//! the fallback's whole answer time and peak memory.

use std::process::ExitCode;
use std::time::Instant;

use aisle_firmware_config::DeviceConfig;
use aisle_runtime::dialogue::{Session, fallback, intent};
use aisle_runtime::llm::Llm;
use anyhow::{Context, Result};

const PEER_SCRIPT: &str = include_str!("peer_llama_cpp.py");
const PEER_REQUIREMENT: &str = "llama-cpp-python==0.3.36";
const STORY: &str = "<|im_start|>user\nWrite a short story about a shopper in a grocery store.<|im_end|>\n<|im_start|>assistant\n";
const STORY_TOKENS: u32 = 64;
const FALLBACK_TOKENS: u32 = 16;

/// Questions the intent grammar does not recognise (the fallback's job).
const QUESTIONS: &[&str] = &[
    "What's the damage on the extra sharp cheddar cheese?",
    "How pricey is the goat milk cheese?",
    "I'm hunting for awesome strength paper towels.",
    "Whereabouts would the tzatziki greek yogurt dip be?",
    "Are the thin and crispy margherita frozen pizzas expensive?",
    "What do I owe for the sharp cheddar?",
    "Which part of the shop has the extra sharp cheddar cheese?",
    "Do you guys carry goat milk cheese?",
];

fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

struct Gen {
    text: String,
    first_ms: f64,
    total_ms: f64,
    tokens: usize,
}

impl Gen {
    /// Tokens per second after the first.
    fn rate(&self) -> f64 {
        if self.tokens > 1 && self.total_ms > self.first_ms {
            (self.tokens - 1) as f64 * 1e3 / (self.total_ms - self.first_ms)
        } else {
            f64::NAN
        }
    }
}

fn ours(llm: &Llm, prompt: &str, grammar: Option<&str>, max: u32) -> Result<Gen> {
    let t0 = Instant::now();
    let mut first = None;
    let mut text = String::new();
    let stats = llm.generate(prompt, grammar, max, &mut |p| {
        first.get_or_insert_with(|| t0.elapsed().as_secs_f64() * 1e3);
        text.push_str(p);
        false
    })?;
    let total_ms = t0.elapsed().as_secs_f64() * 1e3;
    Ok(Gen {
        text: text.trim().to_string(),
        first_ms: first.unwrap_or(total_ms),
        total_ms,
        tokens: stats.generated_tokens as usize,
    })
}

fn peer_gen(v: &serde_json::Value) -> Gen {
    Gen {
        text: v["text"].as_str().unwrap_or_default().to_string(),
        first_ms: v["first_ms"].as_f64().unwrap_or(f64::NAN),
        total_ms: v["total_ms"].as_f64().unwrap_or(f64::NAN),
        tokens: v["tokens"].as_u64().unwrap_or(0) as usize,
    }
}

pub fn run(cfg: &DeviceConfig, args: &crate::BenchArgs, json: bool) -> Result<ExitCode> {
    let (runs, threads, with_peer) = (args.runs.max(1), args.threads, !args.no_peer);
    let store = aisle_runtime::kiosk::open_store(cfg)?;
    let model = aisle_runtime::kiosk::llm_model_path(cfg, &store)?;

    let t = Instant::now();
    let llm = std::sync::Arc::new(Llm::load(
        &model,
        threads,
        aisle_runtime::kiosk::LLM_CONTEXT,
    )?);
    let load_ms = t.elapsed().as_secs_f64() * 1e3;

    // Free generation from an empty cache; the first run warms up.
    let mut story = Vec::new();
    for _ in 0..=runs {
        llm.reset();
        story.push(ours(&llm, STORY, None, STORY_TOKENS)?);
    }
    story.remove(0);

    // The fallback's product read: the first question computes the cached prefix.
    let clauses: Vec<String> = QUESTIONS.iter().map(|q| intent::normalise(q)).collect();
    llm.reset();
    let mut reads = Vec::new();
    for c in &clauses {
        reads.push(ours(
            &llm,
            &fallback::prompt(c),
            Some(&fallback::span_grammar(c)),
            FALLBACK_TOKENS,
        )?);
    }

    // Whole answers on the LLM path (product read, intent by meaning, database).
    let cat = aisle_runtime::kiosk::demo_catalog(&crate::isolated(cfg))?.0;
    let meaning = aisle_runtime::kiosk::minilm(cfg, &store)
        .context("the fallback needs the text embedding model (models.text_embedding)")?;
    let engine = aisle_runtime::dialogue::Assistant::new(&cat)?
        .with_meaning(std::sync::Arc::new(aisle_runtime::kiosk::MiniLmEmbed(
            meaning,
        )))
        .with_llm(llm.clone());
    engine.ask(QUESTIONS[0], &mut Session::default(), None)?; // embeds the examples
    let mut answer_ms = Vec::new();
    let mut via_llm = 0;
    for _ in 0..runs {
        for q in QUESTIONS {
            let a = engine.ask(q, &mut Session::default(), None)?;
            via_llm += (a.path == "llm") as usize;
            answer_ms.push(a.elapsed_us as f64 / 1e3);
        }
    }
    let our_peak = crate::speech::peak_rss_mib();

    let peer: Option<serde_json::Value> = if with_peer {
        eprintln!(
            "peer: llama-cpp-python (pip builds llama.cpp from source on first use, ~10 min)"
        );
        let python = aisle_models::ensure_venv(
            &cfg.data_dir.join("tools/bench-venv-llama-cpp"),
            &[PEER_REQUIREMENT],
            "llama_cpp",
        )?;
        let dir = tempfile::tempdir()?;
        let spec = dir.path().join("prompts.json");
        std::fs::write(
            &spec,
            serde_json::to_vec(&serde_json::json!({
                "story": STORY,
                "story_tokens": STORY_TOKENS,
                "fallback": clauses.iter().map(|c| serde_json::json!({
                    "prompt": fallback::prompt(c),
                    "grammar": fallback::span_grammar(c),
                })).collect::<Vec<_>>(),
                "fallback_tokens": FALLBACK_TOKENS,
            }))?,
        )?;
        Some(crate::run_peer(
            &python,
            dir.path(),
            "peer_llama_cpp.py",
            PEER_SCRIPT,
            &[
                model.clone().into_os_string(),
                threads.to_string().into(),
                runs.to_string().into(),
                spec.into_os_string(),
            ],
        )?)
    } else {
        None
    };
    let peer_story: Vec<Gen> = peer
        .as_ref()
        .and_then(|p| p["story"].as_array())
        .map(|a| a.iter().map(peer_gen).collect())
        .unwrap_or_default();
    let peer_reads: Vec<Gen> = peer
        .as_ref()
        .and_then(|p| p["fallback"].as_array())
        .map(|a| a.iter().map(peer_gen).collect())
        .unwrap_or_default();

    let stat =
        |v: &[Gen], f: &dyn Fn(&Gen) -> f64| median(&mut v.iter().map(f).collect::<Vec<_>>());
    let warm = |v: &[Gen], f: &dyn Fn(&Gen) -> f64| {
        median(&mut v.iter().skip(1).map(f).collect::<Vec<_>>())
    };
    let rows = [
        (
            "free generation: first token (ms)",
            stat(&story, &|g| g.first_ms),
            stat(&peer_story, &|g| g.first_ms),
        ),
        (
            "free generation: tokens/s",
            stat(&story, &|g| g.rate()),
            stat(&peer_story, &|g| g.rate()),
        ),
        (
            "fallback, cold: prefix + first read (ms)",
            reads.first().map_or(f64::NAN, |g| g.total_ms),
            peer_reads.first().map_or(f64::NAN, |g| g.total_ms),
        ),
        (
            "fallback, cached prefix: first token (ms)",
            warm(&reads, &|g| g.first_ms),
            warm(&peer_reads, &|g| g.first_ms),
        ),
        (
            "fallback, cached prefix: whole read (ms)",
            warm(&reads, &|g| g.total_ms),
            warm(&peer_reads, &|g| g.total_ms),
        ),
    ];
    let same_story = peer_story
        .first()
        .zip(story.first())
        .map(|(p, o)| p.text.trim() == o.text.trim());
    let same_reads = reads
        .iter()
        .zip(&peer_reads)
        .filter(|(a, b)| a.text == b.text)
        .count();
    let peer_peak = peer
        .as_ref()
        .and_then(|p| p["peak_rss_kib"].as_f64())
        .map(|k| k / 1024.0);
    let answer_p50 = median(&mut answer_ms.clone());

    if json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "model": model,
                "library": llm.library,
                "threads": threads,
                "runs": runs,
                "load_ms": load_ms,
                "peer": peer.as_ref().map(|_| "llama-cpp-python 0.3.36"),
                "peer_load_ms": peer.as_ref().and_then(|p| p["load_ms"].as_f64()),
                "rows": rows.iter().map(|(n, o, p)| serde_json::json!({"metric": n, "aisle": o, "peer": p})).collect::<Vec<_>>(),
                "same_story_text": same_story,
                "same_product_reads": same_reads,
                "reads": reads.iter().map(|g| g.text.clone()).collect::<Vec<_>>(),
                "fallback_answer_ms_p50": answer_p50,
                "answers_via_llm": via_llm,
                "answers": answer_ms.len(),
                "aisle_peak_rss_mib": our_peak,
                "peer_peak_rss_mib": peer_peak,
            }))?
        );
        return Ok(ExitCode::SUCCESS);
    }
    outln!(
        "LLM benchmark: {} ({} threads, greedy, median of {runs} run(s)); model load {load_ms:.0} ms",
        cfg.file.models.llm,
        threads
    );
    outln!(
        "  peer: llama-cpp-python {} (llama.cpp built from source by pip), the same GGUF file (same quantisation), n_threads = n_threads_batch = {threads}, n_ctx 1024, n_batch 512, greedy; aisle: llama.cpp in libaisle_llm.so, the same settings",
        PEER_REQUIREMENT.trim_start_matches("llama-cpp-python=="),
    );
    outln!(
        "  {:<44} {:>10} {:>18} {:>10}",
        "",
        "aisle",
        "llama-cpp-python",
        "aisle/peer"
    );
    for (n, o, p) in rows {
        let ratio = o / p;
        outln!(
            "  {n:<44} {o:>10.1} {:>18} {:>10}",
            if p.is_nan() {
                "-".into()
            } else {
                format!("{p:.1}")
            },
            if p.is_nan() {
                "-".into()
            } else {
                format!("{ratio:.2}x")
            }
        );
    }
    outln!(
        "  (tokens/s: higher is better, a ratio above 1 is faster; times: a ratio below 1 is faster)"
    );
    if let Some(same) = same_story {
        outln!(
            "  same generated text: {}; same product reads: {same_reads}/{}",
            if same {
                "yes"
            } else {
                "no (greedy near-ties differ between builds)"
            },
            reads.len()
        );
    }
    outln!(
        "  fallback answer (product read + intent by meaning + database): p50 {answer_p50:.1} ms, {via_llm}/{} answered via the LLM path",
        answer_ms.len()
    );
    outln!(
        "  peak memory: aisle {} MiB (LLM, MiniLM and the demo store in one process){}",
        our_peak.map_or("-".into(), |m| format!("{m:.0}")),
        peer_peak
            .map(|p| format!(", llama-cpp-python {p:.0} MiB (LLM only)"))
            .unwrap_or_default()
    );
    Ok(ExitCode::SUCCESS)
}
