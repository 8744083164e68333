//! Live mode: the same loop the microphone uses, fed from files and from an in-memory
//! 48 kHz stereo source (downmix and resampling inside the loop).

use std::sync::atomic::AtomicBool;
use std::time::Duration;

use aisle_speech::wer::wer;
use aisle_speech::{AudioSource, FileSource, ListenConfig, ListenEvent};

use crate::bad_input::{noise, write_wav};
use crate::{read_i16, serial, speak, transcriber};

const FIRST: &str = "where are the frozen vegetables";
const SECOND: &str = "is there a cheaper brand of olive oil and where can I find the baby food";

/// 16 kHz samples of a spoken question.
fn spoken_16k(text: &str, name: &str) -> Vec<f32> {
    let path = speak(text, name);
    aisle_speech::decode_wav(&path).expect("decode").samples
}

fn run(source: &mut dyn AudioSource, cfg: &ListenConfig) -> Vec<ListenEvent> {
    let stop = AtomicBool::new(false);
    let mut events = Vec::new();
    transcriber()
        .listen(source, cfg, &stop, &mut |e| events.push(e))
        .expect("listen");
    events
}

fn finals(events: &[ListenEvent]) -> Vec<&aisle_speech::Utterance> {
    events
        .iter()
        .filter_map(|e| match e {
            ListenEvent::Final(u) => Some(u),
            _ => None,
        })
        .collect()
}

#[test]
fn two_questions_give_partials_then_two_finals() {
    let _g = serial();
    let silence = vec![0.0f32; 16_000];
    let a = spoken_16k(FIRST, "live-a.wav");
    let b = spoken_16k(SECOND, "live-b.wav");
    let all = [&silence[..], &a, &silence, &b, &silence].concat();
    let path = write_wav("live-two.wav", 16_000, 1, 16, &all);
    let events = run(
        &mut FileSource::open(&path, false).expect("open"),
        &ListenConfig::default(),
    );
    let starts = events
        .iter()
        .filter(|e| matches!(e, ListenEvent::SpeechStart { .. }))
        .count();
    let f = finals(&events);
    assert_eq!(starts, 2, "{events:#?}");
    assert_eq!(f.len(), 2, "{events:#?}");
    for (u, reference) in f.iter().zip([FIRST, SECOND]) {
        let w = wer(reference, &u.text);
        println!(
            "final {:?} (WER {w:.2}, {} - {} ms)",
            u.text, u.start_ms, u.end_ms
        );
        assert!(w <= 0.25, "{reference:?} -> {:?}", u.text);
    }
    // Final timings sit where the questions are (1 s silence, question, 1 s, question).
    let a_ms = a.len() as u64 / 16;
    assert!(
        f[0].start_ms >= 600 && f[0].end_ms <= 1000 + a_ms + 400,
        "{:?}",
        f[0]
    );
    assert!(f[1].start_ms >= 1000 + a_ms + 600, "{:?}", f[1]);
    // The second question is long enough for partials, all before its final.
    let final_idx = events
        .iter()
        .rposition(|e| matches!(e, ListenEvent::Final(_)))
        .expect("final");
    let partials: Vec<&String> = events[..final_idx]
        .iter()
        .filter_map(|e| match e {
            ListenEvent::Partial { at_ms, text } if *at_ms > f[0].end_ms => Some(text),
            _ => None,
        })
        .collect();
    assert!(!partials.is_empty(), "{events:#?}");
    // A partial is what was said so far: the last one starts like the question (the
    // first, from about a second of audio, may not yet).
    let first_word = |s: &str| aisle_speech::wer::normalise(s).into_iter().next();
    let last = partials.last().map(|p| p.as_str()).unwrap_or_default();
    assert_eq!(first_word(last), first_word(SECOND), "{partials:?}");
    println!("partials: {partials:?}");
}

#[test]
fn silence_and_noise_give_no_events_and_stop_ends_at_once() {
    let _g = serial();
    let quiet = [vec![0.0f32; 48_000], noise(48_000, 0.3)].concat();
    let path = write_wav("live-noise.wav", 16_000, 1, 16, &quiet);
    let events = run(
        &mut FileSource::open(&path, false).expect("open"),
        &ListenConfig::default(),
    );
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, ListenEvent::Final(_) | ListenEvent::Partial { .. })),
        "{events:#?}"
    );

    let stop = AtomicBool::new(true);
    let summary = transcriber()
        .listen(
            &mut FileSource::open(&path, true).expect("open"),
            &ListenConfig::default(),
            &stop,
            &mut |_| {},
        )
        .expect("listen");
    assert_eq!(summary.audio_ms, 0);
}

/// Interleaved samples handed out in 10 ms chunks, like a device callback would.
struct Memory {
    samples: Vec<f32>,
    pos: usize,
    rate: u32,
    channels: u16,
}

impl AudioSource for Memory {
    fn sample_rate(&self) -> u32 {
        self.rate
    }
    fn channels(&self) -> u16 {
        self.channels
    }
    fn describe(&self) -> String {
        "memory".into()
    }
    fn read(&mut self, out: &mut Vec<f32>, _: Duration) -> aisle_speech::Result<bool> {
        if self.pos >= self.samples.len() {
            return Ok(false);
        }
        let n = (self.rate as usize / 100) * self.channels as usize;
        let end = (self.pos + n).min(self.samples.len());
        out.extend_from_slice(&self.samples[self.pos..end]);
        self.pos = end;
        Ok(true)
    }
}

#[test]
fn stereo_48k_device_audio_is_downmixed_and_resampled() {
    let _g = serial();
    let (s, rate) = read_i16(&speak(FIRST, "live-48k.wav"));
    let mono: Vec<f32> = s.iter().map(|&v| v as f32 / 32768.0).collect();
    let at48 = aisle_speech::resample::to_16k(&mono, rate)
        .map(|x| {
            // 16 kHz -> 48 kHz by sample repetition is enough for a fixture.
            x.iter().flat_map(|&v| [v, v, v]).collect::<Vec<f32>>()
        })
        .expect("resample");
    let pad = vec![0.0f32; 48_000];
    let signal = [&pad[..], &at48, &pad].concat();
    // Left channel carries the voice, right is silent: the downmix halves it.
    let stereo: Vec<f32> = signal.iter().flat_map(|&v| [v, 0.0]).collect();
    let events = run(
        &mut Memory {
            samples: stereo,
            pos: 0,
            rate: 48_000,
            channels: 2,
        },
        &ListenConfig::default(),
    );
    let f = finals(&events);
    assert_eq!(f.len(), 1, "{events:#?}");
    assert!(wer(FIRST, &f[0].text) <= 0.25, "{:?}", f[0].text);
}

#[test]
fn a_long_monologue_is_cut_at_the_utterance_limit() {
    let _g = serial();
    let b = spoken_16k(SECOND, "live-long.wav");
    let path = write_wav("live-long-16k.wav", 16_000, 1, 16, &b);
    let cfg = ListenConfig {
        max_utterance_ms: 2_000,
        partial_every_ms: u32::MAX,
        ..ListenConfig::default()
    };
    let events = run(&mut FileSource::open(&path, false).expect("open"), &cfg);
    let f = finals(&events);
    assert!(f.len() >= 2, "{events:#?}");
    for u in &f {
        assert!(u.end_ms - u.start_ms <= 2_000 + 2 * 200 + 32, "{u:?}");
    }
    let joined: Vec<&str> = f.iter().map(|u| u.text.as_str()).collect();
    println!("cut into {joined:?}");
}

/// A shopper who pauses 600 ms in the middle of a question ("how much is the ...
/// organic peanut butter") is heard as one question, at full speed and at real-time
/// pace; a finished question is not held open for the pause allowance.
#[test]
fn a_pause_inside_a_question_does_not_split_it() {
    let _g = serial();
    let silence = vec![0.0f32; 16_000];
    let pause = vec![0.0f32; 9_600]; // 600 ms
    let a = spoken_16k("how much is the", "pause-a.wav");
    let b = spoken_16k("organic peanut butter", "pause-b.wav");
    let all = [&silence[..], &a, &pause, &b, &silence].concat();
    let path = write_wav("pause.wav", 16_000, 1, 16, &all);
    for realtime in [false, true] {
        let events = run(
            &mut FileSource::open(&path, realtime).expect("open"),
            &ListenConfig::default(),
        );
        let f = finals(&events);
        assert_eq!(f.len(), 1, "realtime {realtime}: {events:#?}");
        let t = f[0].text.to_lowercase();
        assert!(t.contains("how much") && t.contains("organic"), "{t:?}");
    }
    // The same words without the tail: a finished question ends at the short
    // endpoint, well before the 1.2 s the unfinished one may wait.
    let q = spoken_16k("how much is the organic peanut butter", "pause-q.wav");
    let path = write_wav(
        "pause-q16.wav",
        16_000,
        1,
        16,
        &[&silence[..], &q, &silence, &silence].concat(),
    );
    let events = run(
        &mut FileSource::open(&path, true).expect("open"),
        &ListenConfig::default(),
    );
    let f = finals(&events);
    assert_eq!(f.len(), 1, "{events:#?}");
    assert!(f[0].speculative, "{:?}", f[0]);
}
