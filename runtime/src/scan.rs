//! Recognising the product in front of the camera against the store's catalog.
//!
//! [`VisionModels`] loads the image/text model; [`Scanner`] holds the catalog's
//! embedding index (product texts in the joint space, enrolled photos) and scans
//! images. The text index is persisted under the data directory, keyed by the
//! model's fingerprint and a hash of the products' texts, so it is built once and
//! rebuilt only when the catalog or a model changes.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use aisle_models::{Store, hash::sha256_bytes};
use aisle_vision::ann::{IvfIndex, IvfParams};
use aisle_vision::clip::{Clip, ClipTokenizer};
use aisle_vision::encoder::{Conse, EfficientNet, EfficientNetConse, ImageTextModel};
use aisle_vision::matcher::{self, Candidate, Decision, Entry, Fusion, OcrIndex, Query};
use aisle_vision::ocr::{Ocr, OcrError, TextLine};
use aisle_vision::vectors::Vectors;
use aisle_vision::{ImageError, ImageLimits, MiniLm, OnnxOptions, load_image};
use serde::Serialize;

use crate::catalog::{CatalogDb, CatalogError, Product, ReferencePhoto};

#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error(transparent)]
    Encoder(#[from] aisle_vision::encoder::EncoderError),
    #[error(transparent)]
    Onnx(#[from] aisle_vision::OnnxError),
    #[error(transparent)]
    Text(#[from] aisle_vision::TextModelError),
    #[error(transparent)]
    Ocr(#[from] OcrError),
    #[error(transparent)]
    Clip(#[from] aisle_vision::clip::ClipError),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    Model(#[from] aisle_models::ModelError),
    #[error("{path}: {message}")]
    Cache { path: PathBuf, message: String },
    #[error("no product with SKU {0:?} in the catalog")]
    UnknownSku(String),
}

pub type Result<T, E = ScanError> = std::result::Result<T, E>;

/// Which models to load and how to run them.
#[derive(Debug, Clone)]
pub struct VisionSpec {
    pub image_model: String,
    pub text_model: String,
    pub labels_model: String,
    pub options: OnnxOptions,
    /// Where derived embeddings are cached.
    pub cache_dir: PathBuf,
    /// Label reading; `None` scans without OCR.
    pub ocr: Option<OcrSpec>,
    /// `Some`: `image_model` is a CLIP model (files `image_encoder.onnx` and
    /// `text_encoder.onnx`) used instead of EfficientNet + ConSE + MiniLM.
    pub clip: Option<ClipSpec>,
}

/// A CLIP model's tokenizer (model-store name) and input size.
#[derive(Debug, Clone)]
pub struct ClipSpec {
    pub tokenizer: String,
    pub image_size: u32,
}

/// The OCR models (model-store names) and how to run them.
#[derive(Debug, Clone)]
pub struct OcrSpec {
    pub detection: String,
    pub recognition: String,
    /// Text-line orientation classifier; `None` reads lines as they come.
    pub orientation: Option<String>,
    pub options: OnnxOptions,
}

/// The loaded models: the image/text backend (EfficientNet + ConSE + MiniLM by
/// default, or CLIP) and PP-OCRv4 (label text) when configured.
pub struct VisionModels {
    backend: Backend,
    pub ocr: Option<Ocr>,
    /// Threads for the models and for index builds (`inference.threads`).
    pub threads: usize,
}

// One per process, never moved around: the size difference costs nothing.
#[allow(clippy::large_enum_variant)]
enum Backend {
    Conse {
        minilm: MiniLm,
        net: EfficientNet,
        conse: Conse,
        minilm_sha: String,
    },
    Clip(Clip),
}

impl VisionModels {
    pub fn load(store: &Store, spec: &VisionSpec) -> Result<Self> {
        let backend = match &spec.clip {
            Some(c) => Backend::Clip(Self::load_clip(store, spec, c)?),
            None => Self::load_conse(store, spec)?,
        };
        let ocr = match &spec.ocr {
            Some(o) => {
                let det = store.verify(&o.detection, &mut |_| {})?;
                let rec = store.verify(&o.recognition, &mut |_| {})?;
                let cls = match &o.orientation {
                    Some(name) => Some(store.verify(name, &mut |_| {})?),
                    None => None,
                };
                let cls_path = match &cls {
                    Some(a) => Some(a.first_file()?.0),
                    None => None,
                };
                Some(Ocr::load_with_orientation(
                    det.first_file()?.0,
                    rec.first_file()?.0,
                    cls_path,
                    &o.options,
                )?)
            }
            None => None,
        };
        Ok(VisionModels {
            backend,
            ocr,
            threads: spec.options.threads.max(1),
        })
    }

    fn load_clip(store: &Store, spec: &VisionSpec, c: &ClipSpec) -> Result<Clip> {
        let model = store.verify(&spec.image_model, &mut |_| {})?;
        let vocab = store.verify(&c.tokenizer, &mut |_| {})?;
        let tokenizer = ClipTokenizer::load(vocab.first_file()?.0)?;
        let fingerprint = sha256_bytes(
            model
                .manifest
                .files
                .iter()
                .map(|f| f.sha256.as_str())
                .collect::<Vec<_>>()
                .join("")
                .as_bytes(),
        );
        Ok(Clip::load(
            model.path("image_encoder.onnx")?,
            model.path("text_encoder.onnx")?,
            tokenizer,
            c.image_size,
            &fingerprint,
            &spec.options,
        )?)
    }

    fn load_conse(store: &Store, spec: &VisionSpec) -> Result<Backend> {
        let text = store.verify(&spec.text_model, &mut |_| {})?;
        let minilm_sha = text
            .manifest
            .files
            .iter()
            .map(|f| f.sha256.as_str())
            .collect::<Vec<_>>()
            .join("");
        let minilm_sha = sha256_bytes(minilm_sha.as_bytes());
        let minilm = MiniLm::load(&text)?;
        let image = store.verify(&spec.image_model, &mut |_| {})?;
        let (net_path, net_sha) = image.first_file()?;
        let net = EfficientNet::load(net_path, net_sha, &spec.options)?;
        let labels_art = store.verify(&spec.labels_model, &mut |_| {})?;
        let (labels_path, labels_sha) = labels_art.first_file()?;
        let labels = Conse::read_labels(labels_path)?;
        let cache = spec.cache_dir.join(format!(
            "conse-{}-{}.vec",
            &minilm_sha[..16],
            &labels_sha[..16.min(labels_sha.len())]
        ));
        let conse = match read_vectors(&cache) {
            Ok(v) if v.keys.len() == labels.len() && v.keys == labels => {
                Conse::from_parts(labels, v.vectors).ok_or_else(|| ScanError::Cache {
                    path: cache.clone(),
                    message: "label count mismatch".into(),
                })?
            }
            _ => {
                let c = Conse::build(labels, &minilm);
                let keys: Vec<String> = (0..1000).map(|i| c.label(i).to_string()).collect();
                write_vectors(&cache, &keys, c.label_embeddings())?;
                c
            }
        };
        Ok(Backend::Conse {
            minilm,
            net,
            conse,
            minilm_sha,
        })
    }

    /// The joint image/text model over these weights.
    pub fn model(&self) -> Box<dyn ImageTextModel + '_> {
        match &self.backend {
            Backend::Conse {
                minilm,
                net,
                conse,
                minilm_sha,
            } => Box::new(EfficientNetConse::new(net, conse, minilm, minilm_sha)),
            Backend::Clip(c) => Box::new(ClipRef(c)),
        }
    }

    /// The ONNX engine the image model runs on.
    pub fn image_engine(&self) -> aisle_vision::Engine {
        match &self.backend {
            Backend::Conse { net, .. } => net.onnx().engine(),
            Backend::Clip(c) => c.engine(),
        }
    }
}

/// A borrowed CLIP model as an [`ImageTextModel`].
struct ClipRef<'a>(&'a Clip);

impl ImageTextModel for ClipRef<'_> {
    fn name(&self) -> &str {
        self.0.name()
    }
    fn fingerprint(&self) -> String {
        self.0.fingerprint()
    }
    fn embed_image(
        &self,
        img: &image::RgbImage,
    ) -> std::result::Result<aisle_vision::ImageEmbedding, aisle_vision::encoder::EncoderError>
    {
        self.0.embed_image(img)
    }
    fn embed_text(&self, text: &str) -> Vec<f32> {
        self.0.embed_text(text)
    }
    fn visual_fingerprint(&self) -> String {
        self.0.visual_fingerprint()
    }
}

/// Largest vector cache read (a million 1,280-d vectors is 5 GB; caches here are the
/// catalog's products, about 256 MB at 50k x 1,280).
const MAX_VECTOR_FILE_BYTES: u64 = 4 << 30;

fn read_vectors(path: &Path) -> std::result::Result<Vectors, String> {
    let bytes = aisle_firmware_config::read_bounded(path, MAX_VECTOR_FILE_BYTES)
        .map_err(|e| e.to_string())?;
    aisle_vision::vectors::parse(&bytes)
}

/// Written to a temporary file and renamed, so a crash never leaves half a cache.
fn write_vectors(path: &Path, keys: &[String], vectors: &[Vec<f32>]) -> Result<()> {
    let err = |e: std::io::Error| ScanError::Cache {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    let out = aisle_vision::vectors::encode(keys, vectors).map_err(|e| ScanError::Cache {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp).map_err(err)?;
    f.write_all(&out).map_err(err)?;
    f.sync_all().map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

/// What a product is called in the joint space: its name, brand and description.
pub fn product_text(p: &Product) -> String {
    let mut t = p.name.clone();
    if let Some(b) = p
        .brand
        .as_deref()
        .filter(|b| !b.is_empty() && !p.name.contains(b))
    {
        t = format!("{b} {t}");
    }
    if let Some(d) = p.description.as_deref().filter(|d| !d.is_empty()) {
        t.push_str(". ");
        t.push_str(d);
    }
    t
}

/// Per-stage timings of one scan, microseconds.
#[derive(Debug, Clone, Copy, Default, Serialize, schemars::JsonSchema)]
pub struct Timings {
    pub decode_us: u64,
    pub preprocess_us: u64,
    pub embed_us: u64,
    pub ocr_us: u64,
    pub search_us: u64,
    pub total_us: u64,
}

/// The answer to one scan.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct ScanReport {
    pub image: String,
    pub decision: Decision,
    pub confidence: f32,
    pub matches: Vec<Candidate>,
    /// What the image model saw (ImageNet classes), best first.
    pub seen: Vec<(String, f32)>,
    /// Text read on the label, a line per line; `None` when OCR did not run.
    pub ocr_text: Option<String>,
    /// The lines read, with where they are and how sure the reading is.
    pub ocr_lines: Vec<TextLine>,
    pub timings: Timings,
}

/// The catalog's embedding index and the models, ready to scan. Owns a share of the
/// loaded models, so a running kiosk keeps one and rebuilds it when the catalog
/// changes without loading any model again.
pub struct Scanner {
    models: std::sync::Arc<VisionModels>,
    /// Approximate index of the product texts, for catalogs above
    /// [`Scanner::APPROXIMATE_ABOVE`] products; exact search below.
    ann: Option<IvfIndex>,
    /// Cells of the approximate index read per scan.
    pub probes: usize,
    ocr_index: OcrIndex,
    entries: Vec<Entry>,
    pub fusion: Fusion,
    pub limits: ImageLimits,
}

impl Scanner {
    /// Builds (or loads from the cache) the index of `cat`'s products.
    /// `progress(done, total)` is called while product texts are embedded.
    pub fn build(
        models: std::sync::Arc<VisionModels>,
        cat: &CatalogDb,
        cache_dir: &Path,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<Self> {
        let products = cat.products()?;
        let photos = {
            let model = models.model();
            cat.reference_photos(&model.visual_fingerprint())?
        };
        Self::build_from(models, products, photos, cache_dir, progress)
    }

    /// [`Self::build`] over products and enrolled photos already read.
    pub fn build_from(
        models: std::sync::Arc<VisionModels>,
        products: Vec<Product>,
        photos: Vec<ReferencePhoto>,
        cache_dir: &Path,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<Self> {
        let model = models.model();
        let texts: Vec<String> = products.iter().map(product_text).collect();
        let mut key_src = model.fingerprint();
        for (p, t) in products.iter().zip(&texts) {
            key_src.push('\n');
            key_src.push_str(&p.sku);
            key_src.push('\t');
            key_src.push_str(t);
        }
        let key = sha256_bytes(key_src.as_bytes());
        let cache = cache_dir.join(format!("products-{}.vec", &key[..24]));
        let skus: Vec<String> = products.iter().map(|p| p.sku.clone()).collect();
        let vectors = match read_vectors(&cache) {
            Ok(v) if v.keys == skus => v.vectors,
            _ => {
                let v = embed_all(model.as_ref(), &texts, models.threads, progress);
                write_vectors(&cache, &skus, &v)?;
                v
            }
        };
        drop(model);
        let mut entries: Vec<Entry> = products
            .into_iter()
            .zip(vectors)
            .map(|(p, text)| Entry {
                sku: p.sku,
                name: p.name,
                text,
                references: Vec::new(),
            })
            .collect();
        let by_sku: std::collections::HashMap<String, usize> = entries
            .iter()
            .enumerate()
            .map(|(i, e)| (e.sku.clone(), i))
            .collect();
        for ReferencePhoto { sku, embedding, .. } in photos {
            if let Some(&i) = by_sku.get(&sku) {
                entries[i].references.push(embedding);
            }
        }
        let mut scanner = Scanner {
            models,
            ann: None,
            probes: 32,
            ocr_index: OcrIndex::build(&entries),
            entries,
            fusion: Fusion::default(),
            limits: ImageLimits::default(),
        };
        if scanner.entries.len() > Self::APPROXIMATE_ABOVE {
            let t = Instant::now();
            let lists = scanner.use_approximate_search();
            tracing::info!(
                products = scanner.entries.len(),
                lists,
                ms = t.elapsed().as_millis() as u64,
                "approximate product index built"
            );
        }
        Ok(scanner)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn model(&self) -> Box<dyn ImageTextModel + '_> {
        self.models.model()
    }

    /// The loaded models this scanner runs.
    pub fn models(&self) -> &std::sync::Arc<VisionModels> {
        &self.models
    }

    /// Catalogs larger than this are searched through an approximate index
    /// (exact search reads every vector: ~8 ms at 50k products, ~165 ms at 1M).
    pub const APPROXIMATE_ABOVE: usize = 200_000;
    /// Text matches taken from the approximate index before fusion.
    const APPROXIMATE_CANDIDATES: usize = 256;

    /// Builds the approximate index over the product texts (catalogs above
    /// [`Self::APPROXIMATE_ABOVE`] get one at [`Self::build`]; a test or a bench
    /// can ask for it at any size). Returns the number of cells.
    pub fn use_approximate_search(&mut self) -> usize {
        let dim = self.entries.first().map_or(0, |e| e.text.len());
        let mut m = ndarray::Array2::<f32>::zeros((self.entries.len(), dim));
        for (mut row, e) in m.rows_mut().into_iter().zip(&self.entries) {
            if e.text.len() == dim {
                row.assign(&ndarray::ArrayView1::from(e.text.as_slice()));
            }
        }
        let threads = self.models.threads;
        let index = IvfIndex::build(
            m.view(),
            &IvfParams {
                threads,
                ..Default::default()
            },
        );
        let lists = index.lists();
        self.ann = Some(index);
        lists
    }

    pub fn approximate(&self) -> bool {
        self.ann.is_some()
    }

    /// The products as the matcher sees them, in catalog order.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    pub fn enrolled_photos(&self) -> usize {
        self.entries.iter().map(|e| e.references.len()).sum()
    }

    /// Scans the image file at `path`.
    pub fn scan_path(&self, path: &Path, top_k: usize) -> Result<ScanReport> {
        let t0 = Instant::now();
        let img = load_image(path, &self.limits)?;
        let decode_us = t0.elapsed().as_micros() as u64;
        let mut r = self.scan_image(&img, top_k)?;
        r.image = path.display().to_string();
        r.timings.decode_us = decode_us;
        r.timings.total_us += decode_us;
        Ok(r)
    }

    /// Scans a decoded image: the image model and OCR run side by side.
    pub fn scan_image(&self, img: &image::RgbImage, top_k: usize) -> Result<ScanReport> {
        let t0 = Instant::now();
        let (e, ocr) = std::thread::scope(|s| {
            let reader = self
                .models
                .ocr
                .as_ref()
                .map(|o| s.spawn(move || o.read(img)));
            let e = self.model().embed_image(img);
            let ocr = reader.and_then(joined_or_skipped);
            (e, ocr)
        });
        let e = e?;
        let ocr = ocr.transpose()?;
        let t1 = Instant::now();
        let ocr_text = ocr.as_ref().map(|o| o.text());
        let ocr_scores = ocr_text.as_deref().and_then(|t| self.ocr_index.scores(t));
        let query = Query {
            visual: &e.visual,
            joint: &e.joint,
            ocr: ocr_scores.as_deref(),
            certainty: e.certainty,
        };
        let ranking = match &self.ann {
            None => matcher::rank(&self.entries, &query, &self.fusion, top_k),
            Some(ann) => {
                // The best text matches from the index, every product with
                // enrolled photos, every product whose name was read.
                let mut c: Vec<usize> = ann
                    .search(&e.joint, Self::APPROXIMATE_CANDIDATES, self.probes)
                    .into_iter()
                    .map(|(_, i)| i as usize)
                    .collect();
                c.extend(
                    self.entries
                        .iter()
                        .enumerate()
                        .filter(|(_, x)| !x.references.is_empty())
                        .map(|(i, _)| i),
                );
                if let Some(o) = &ocr_scores {
                    c.extend(
                        o.iter()
                            .enumerate()
                            .filter(|(_, s)| **s > 0.0)
                            .map(|(i, _)| i),
                    );
                }
                c.sort_unstable();
                c.dedup();
                matcher::rank_among(&self.entries, c, &query, &self.fusion, top_k)
            }
        };
        let search_us = t1.elapsed().as_micros() as u64;
        let (ocr_us, ocr_lines) = match ocr {
            Some(o) => (o.detect_us + o.recognise_us, o.lines),
            None => (0, Vec::new()),
        };
        Ok(ScanReport {
            image: String::new(),
            decision: ranking.decision,
            confidence: ranking.confidence,
            matches: ranking.matches,
            seen: e.classes,
            ocr_text,
            ocr_lines,
            timings: Timings {
                decode_us: 0,
                preprocess_us: e.preprocess_us,
                embed_us: e.embed_us,
                ocr_us,
                search_us,
                total_us: t0.elapsed().as_micros() as u64,
            },
        })
    }

    /// Enrolls reference photos for `sku`: every image is decoded and embedded
    /// first, so a bad file adds nothing. Returns how many were new.
    pub fn enroll(&mut self, cat: &mut CatalogDb, sku: &str, photos: &[PathBuf]) -> Result<usize> {
        if cat.product(sku)?.is_none() {
            return Err(ScanError::UnknownSku(sku.to_string()));
        }
        let mut decoded = Vec::with_capacity(photos.len());
        for path in photos {
            let bytes = aisle_firmware_config::read_bounded(path, self.limits.max_file_bytes)
                .map_err(|source| ImageError::Io {
                    path: path.clone(),
                    source,
                })?;
            let img = aisle_vision::decode_image(&bytes, path, &self.limits)?;
            decoded.push((sha256_bytes(&bytes), img));
        }
        self.enroll_images(cat, sku, &decoded)
    }

    /// Enrolls decoded photos, each identified by a hash of its source.
    pub fn enroll_images(
        &mut self,
        cat: &mut CatalogDb,
        sku: &str,
        photos: &[(String, image::RgbImage)],
    ) -> Result<usize> {
        let (added, new) = store_references(self.models.model().as_ref(), cat, sku, photos)?;
        if let Some(e) = self.entries.iter_mut().find(|e| e.sku == sku) {
            e.references.extend(new.into_iter().map(|r| r.embedding));
        }
        Ok(added)
    }
}

/// Embeds reference photos of `sku` and stores them (all or none; only embeddings
/// are kept). Returns how many were new and the new ones.
pub fn store_references(
    model: &dyn ImageTextModel,
    cat: &mut CatalogDb,
    sku: &str,
    photos: &[(String, image::RgbImage)],
) -> Result<(usize, Vec<ReferencePhoto>)> {
    if cat.product(sku)?.is_none() {
        return Err(ScanError::UnknownSku(sku.to_string()));
    }
    let mut refs = Vec::with_capacity(photos.len());
    for (hash, img) in photos {
        refs.push(ReferencePhoto {
            sku: sku.to_string(),
            photo_sha256: hash.clone(),
            embedding: model.embed_visual(img)?,
        });
    }
    let fingerprint = model.visual_fingerprint();
    let known: std::collections::HashSet<String> = cat
        .reference_photos(&fingerprint)?
        .into_iter()
        .filter(|r| r.sku == sku)
        .map(|r| r.photo_sha256)
        .collect();
    let added = cat.add_reference_photos(&fingerprint, &refs)?;
    refs.retain(|r| !known.contains(&r.photo_sha256));
    Ok((added, refs))
}

/// Text embeddings of `texts`, on `threads` threads (`inference.threads`).
fn embed_all(
    model: &dyn ImageTextModel,
    texts: &[String],
    threads: usize,
    progress: &mut dyn FnMut(usize, usize),
) -> Vec<Vec<f32>> {
    let threads = threads.max(1);
    let total = texts.len();
    let mut out: Vec<Vec<f32>> = Vec::with_capacity(total);
    for chunk in texts.chunks(256 * threads) {
        let per = chunk.len().div_ceil(threads).max(1);
        let parts: Vec<Vec<Vec<f32>>> = std::thread::scope(|s| {
            let handles: Vec<_> = chunk
                .chunks(per)
                .map(|c| {
                    s.spawn(move || {
                        c.chunks(64)
                            .flat_map(|b| {
                                let b: Vec<&str> = b.iter().map(String::as_str).collect();
                                model.embed_texts(&b)
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                .collect()
        });
        for p in parts {
            out.extend(p);
        }
        progress(out.len(), total);
    }
    out
}

/// The label reader's result, or None when its thread panicked: OCR is one signal of
/// three, so on a strange frame the scan goes on without label text rather than
/// taking the caller (a service worker, the AR analyser) down with it.
fn joined_or_skipped<T>(reader: std::thread::ScopedJoinHandle<'_, T>) -> Option<T> {
    match reader.join() {
        Ok(r) => Some(r),
        Err(_) => {
            tracing::error!("label reading failed on this frame; scanning without it");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_label_reader_that_panics_leaves_the_scan_without_text() {
        std::thread::scope(|s| {
            let panicked = s.spawn(|| -> Vec<String> { panic!("a strange frame") });
            assert_eq!(super::joined_or_skipped(panicked), None);
            let read = s.spawn(|| vec!["COFFEE".to_string()]);
            assert_eq!(
                super::joined_or_skipped(read),
                Some(vec!["COFFEE".to_string()])
            );
        });
    }
}
