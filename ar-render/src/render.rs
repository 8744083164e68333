//! Rendering with bevy (wgpu underneath): the camera frame as a full-size image, the
//! overlay's cards on top as bevy UI nodes placed at the layout's pixel positions.
//!
//! [`Renderer`] renders off-screen onto the frame and reads it back (`aisle ar render`,
//! the demo's overlay picture, the golden-image tests, the benchmark). It works on any
//! Vulkan, GL or Metal adapter wgpu finds, Mesa's software Vulkan (lavapipe) included.
//! [`spawn_overlay`] builds the same scene for the windowed tablet mode.

use std::sync::{Arc, Mutex};

use bevy::app::PluginsState;
use bevy::asset::RenderAssetUsages;
use bevy::camera::RenderTarget;
use bevy::core_pipeline::tonemapping::Tonemapping;
use bevy::prelude::*;
use bevy::render::RenderPlugin;
use bevy::render::gpu_readback::{Readback, ReadbackComplete};
use bevy::render::render_resource::{Extent3d, TextureDimension, TextureFormat, TextureUsages};
use bevy::text::{FontSize, FontSource};
use bevy::window::ExitCondition;
use image::{RgbImage, RgbaImage};

use aisle_ar::layout::{LineRole, Overlay, Stock};

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error(
        "no graphics adapter for rendering (install Mesa's software Vulkan, mesa-vulkan-drivers): {0}"
    )]
    NoAdapter(String),
    #[error("the frame was not rendered within {0} updates")]
    Timeout(u32),
    #[error("the rendered image could not be read back: {0}")]
    Readback(String),
    #[error("frame of {0}x{1} pixels cannot be rendered (1..=8192 on each side)")]
    Size(u32, u32),
    #[error(
        "no display to open a window on (DISPLAY and WAYLAND_DISPLAY are unset); `aisle ar render` works without one"
    )]
    NoDisplay,
}

/// Fonts for the cards: DejaVu Sans (regular and bold) when installed, else bevy's
/// built-in font.
#[derive(Clone, Default)]
pub struct Fonts {
    pub regular: Handle<Font>,
    pub bold: Handle<Font>,
}

const DEJAVU: &str = "/usr/share/fonts/truetype/dejavu";

impl Fonts {
    pub fn load(fonts: &mut Assets<Font>) -> Self {
        let mut one = |file: &str| -> Handle<Font> {
            match std::fs::read(format!("{DEJAVU}/{file}")) {
                Ok(bytes) => fonts.add(Font::from_bytes(bytes)),
                Err(_) => Handle::default(),
            }
        };
        Fonts {
            regular: one("DejaVuSans.ttf"),
            bold: one("DejaVuSans-Bold.ttf"),
        }
    }
}

/// Marks the overlay's root node (despawned and rebuilt each frame).
#[derive(Component)]
pub struct OverlayRoot;

/// Marks a card; carries the product's sku (the windowed mode asks about it on a tap).
#[derive(Component, Debug, Clone)]
pub struct CardSku(pub String);

fn stock_colour(s: &Stock) -> Color {
    match s {
        Stock::InStock(_) => Color::srgb_u8(46, 204, 113),
        Stock::Low(_) => Color::srgb_u8(243, 156, 18),
        Stock::Out => Color::srgb_u8(231, 76, 60),
    }
}

const ACCENT: Color = Color::srgb(0.31, 0.78, 1.0);

fn abs(x: f32, y: f32, w: f32, h: f32) -> Node {
    Node {
        position_type: PositionType::Absolute,
        left: Val::Px(x),
        top: Val::Px(y),
        width: Val::Px(w.max(0.0)),
        height: Val::Px(h.max(0.0)),
        ..default()
    }
}

/// Spawns `overlay` as UI nodes for `camera`, over the camera frame `background` drawn
/// full size when given (the window; off-screen, the frame is already in the target);
/// returns the root, to despawn before the next frame.
pub fn spawn_overlay(
    commands: &mut Commands,
    camera: Entity,
    background: Option<Handle<Image>>,
    overlay: &Overlay,
    fonts: &Fonts,
) -> Entity {
    let root = commands
        .spawn((
            OverlayRoot,
            UiTargetCamera(camera),
            Node {
                width: Val::Percent(100.0),
                height: Val::Percent(100.0),
                ..default()
            },
        ))
        .id();
    if let Some(frame) = background {
        commands.entity(root).insert(ImageNode::new(frame));
    }
    let text = |s: &str, px: f32, font: &Handle<Font>, colour: Color| {
        (
            Text::new(s),
            TextFont {
                font: FontSource::Handle(font.clone()),
                font_size: FontSize::Px(px),
                ..default()
            },
            TextColor(colour),
            TextLayout::no_wrap(),
        )
    };
    for card in &overlay.cards {
        let p = card.product;
        // The product's outline.
        commands.entity(root).with_child((
            BorderColor::all(ACCENT),
            Node {
                border: UiRect::all(Val::Px(3.0)),
                border_radius: BorderRadius::all(Val::Px(6.0)),
                ..abs(p.x, p.y, p.w, p.h)
            },
        ));
        // The leader: a thin bar from the card to the product, turned to its angle.
        let [(x0, y0), (x1, y1)] = card.leader;
        let len = ((x1 - x0).powi(2) + (y1 - y0).powi(2)).sqrt();
        if len >= 1.0 {
            let thick = 3.0;
            commands.entity(root).with_child((
                abs(
                    (x0 + x1) / 2.0 - len / 2.0,
                    (y0 + y1) / 2.0 - thick / 2.0,
                    len,
                    thick,
                ),
                BackgroundColor(ACCENT),
                UiTransform::from_rotation(Rot2::radians((y1 - y0).atan2(x1 - x0))),
            ));
        }
        let r = card.rect;
        let px = card.lines.first().map_or(16.0, |l| l.px);
        let card_entity = commands
            .spawn((
                CardSku(card.sku.clone()),
                Interaction::default(),
                Node {
                    border: UiRect::all(Val::Px(2.0)),
                    border_radius: BorderRadius::all(Val::Px((px * 0.35).max(4.0))),
                    overflow: Overflow::clip(),
                    ..abs(r.x, r.y, r.w, r.h)
                },
                BackgroundColor(Color::srgba_u8(16, 20, 28, 224)),
                BorderColor::all(Color::srgba(1.0, 1.0, 1.0, 0.85)),
            ))
            .id();
        commands.entity(root).add_child(card_entity);
        if let Some(rb) = card.ribbon {
            commands.entity(card_entity).with_child((
                abs(rb.x - r.x, rb.y - r.y, rb.w, rb.h),
                BackgroundColor(Color::srgb_u8(255, 140, 0)),
            ));
        }
        let b = card.badge;
        commands.entity(card_entity).with_child((
            Node {
                border_radius: BorderRadius::MAX,
                ..abs(b.x - r.x, b.y - r.y, b.w, b.h)
            },
            BackgroundColor(stock_colour(&card.stock)),
        ));
        for line in &card.lines {
            let (font, colour) = match line.role {
                LineRole::Name => (&fonts.bold, Color::WHITE),
                LineRole::Price => (&fonts.bold, Color::srgb_u8(255, 214, 10)),
                LineRole::Stock => (&fonts.regular, stock_colour(&card.stock)),
                LineRole::Promotion => (&fonts.bold, Color::srgb_u8(255, 170, 80)),
                LineRole::Aisle => (&fonts.regular, Color::srgb_u8(190, 212, 235)),
            };
            commands.entity(card_entity).with_child((
                Node {
                    position_type: PositionType::Absolute,
                    left: Val::Px(line.x - r.x),
                    top: Val::Px(line.y - r.y),
                    ..default()
                },
                text(&line.text, line.px, font, colour),
            ));
        }
    }
    if let Some(message) = &overlay.message {
        let px = (overlay.height / 24.0).clamp(16.0, 40.0);
        commands.entity(root).with_child((
            Node {
                position_type: PositionType::Absolute,
                bottom: Val::Px(px),
                left: Val::Px(0.0),
                width: Val::Percent(100.0),
                justify_content: JustifyContent::Center,
                ..default()
            },
            children![(
                Node {
                    padding: UiRect::axes(Val::Px(px * 0.8), Val::Px(px * 0.4)),
                    border_radius: BorderRadius::all(Val::Px(px * 0.4)),
                    ..default()
                },
                BackgroundColor(Color::srgba_u8(0, 0, 0, 225)),
                children![text(message, px, &fonts.regular, Color::WHITE)],
            )],
        ));
    }
    root
}

/// The frame's pixels as RGBA bytes (opaque).
fn rgba_bytes(frame: &RgbImage) -> Vec<u8> {
    let mut data = vec![255u8; frame.as_raw().len() / 3 * 4];
    for (o, i) in data.chunks_exact_mut(4).zip(frame.as_raw().chunks_exact(3)) {
        o[..3].copy_from_slice(i);
    }
    data
}

/// A camera frame as a bevy image (sRGB, opaque).
pub fn rgba_image(frame: &RgbImage) -> Image {
    let (w, h) = frame.dimensions();
    let data = rgba_bytes(frame);
    Image::new(
        Extent3d {
            width: w,
            height: h,
            depth_or_array_layers: 1,
        },
        TextureDimension::D2,
        data,
        TextureFormat::Rgba8UnormSrgb,
        RenderAssetUsages::RENDER_WORLD | RenderAssetUsages::MAIN_WORLD,
    )
}

/// Steps of the linear-to-sRGB table (fine enough that dark tones round right).
const ENCODE_STEPS: usize = 1 << 14;

/// sRGB decoding (byte to linear light) and encoding (linear light to byte) tables.
struct SrgbTables {
    decode: [f32; 256],
    encode: Vec<u8>,
}

fn srgb_tables() -> &'static SrgbTables {
    static TABLES: std::sync::OnceLock<SrgbTables> = std::sync::OnceLock::new();
    TABLES.get_or_init(|| {
        let mut decode = [0f32; 256];
        for (v, d) in decode.iter_mut().enumerate() {
            let c = v as f32 / 255.0;
            *d = if c <= 0.04045 {
                c / 12.92
            } else {
                ((c + 0.055) / 1.055).powf(2.4)
            };
        }
        let encode = (0..=ENCODE_STEPS)
            .map(|i| {
                let l = i as f32 / ENCODE_STEPS as f32;
                let c = if l <= 0.003_130_8 {
                    l * 12.92
                } else {
                    1.055 * l.powf(1.0 / 2.4) - 0.055
                };
                (c * 255.0 + 0.5) as u8
            })
            .collect();
        SrgbTables { decode, encode }
    })
}

/// Composites the rendered overlay layer (premultiplied alpha, sRGB-encoded, as the
/// UI's blending leaves it over transparent black) onto the camera frame, in linear
/// light as the GPU blends; in place, the layer becomes the picture.
fn composite(frame: &RgbImage, layer: &mut RgbaImage) {
    let layer: &mut [u8] = layer;
    // Split by rows over the cores (the GPU side is idle by now).
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let w = frame.width() as usize;
    let rows = (frame.height() as usize).div_ceil(threads).max(1);
    std::thread::scope(|s| {
        for (l, f) in layer
            .chunks_mut(rows * w * 4)
            .zip(frame.as_raw().chunks(rows * w * 3))
        {
            s.spawn(move || composite_rows(l, f));
        }
    });
}

fn composite_rows(layer: &mut [u8], frame: &[u8]) {
    let t = srgb_tables();
    for (l, f) in layer.chunks_exact_mut(4).zip(frame.chunks_exact(3)) {
        match l[3] {
            0 => l[..3].copy_from_slice(f),
            255 => {}
            a => {
                let keep = 1.0 - a as f32 / 255.0;
                for c in 0..3 {
                    let lin = t.decode[l[c] as usize] + t.decode[f[c] as usize] * keep;
                    l[c] = t.encode[((lin.min(1.0) * ENCODE_STEPS as f32) + 0.5) as usize];
                }
            }
        }
        l[3] = 255;
    }
}

/// The read-back's rows without the padding the copy needs (rows of 256-byte
/// multiples), as an RGBA image.
fn unpad(data: Vec<u8>, w: u32, h: u32) -> Result<RgbaImage, RenderError> {
    let row = w as usize * 4;
    let padded = row.next_multiple_of(256);
    let data = if padded != row && data.len() == padded * h as usize {
        data.chunks_exact(padded)
            .flat_map(|r| &r[..row])
            .copied()
            .collect()
    } else {
        data
    };
    let len = data.len();
    RgbaImage::from_raw(w, h, data).ok_or_else(|| {
        RenderError::Readback(format!("{len} bytes read back for a {w}x{h} RGBA picture"))
    })
}

/// Off-screen renderer: one bevy app, kept for many frames.
///
/// The camera draws only the overlay, on transparent black; the layer read back is
/// composited onto the camera frame on the CPU (premultiplied alpha, in linear light
/// as the GPU blends). A software renderer then never samples the whole frame as a
/// texture, which cost ~10 ms per 720p frame on lavapipe (the window mode, which has
/// no read-back, does draw the frame as its background texture). The camera renders
/// once per frame; the updates that wait for the read-back run with it switched off.
pub struct Renderer {
    app: App,
    camera: Entity,
    target: Handle<Image>,
    size: (u32, u32),
    fonts: Fonts,
    root: Option<Entity>,
    captured: Arc<Mutex<Option<Vec<u8>>>>,
}

fn target_image(w: u32, h: u32) -> Image {
    let mut image = Image::new_target_texture(w, h, TextureFormat::Rgba8UnormSrgb, None);
    // Read back by a plain copy.
    image.texture_descriptor.usage |= TextureUsages::COPY_SRC;
    image
}

impl std::fmt::Debug for Renderer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Renderer")
            .field("size", &self.size)
            .finish()
    }
}

const MAX_UPDATES: u32 = 20;

impl Renderer {
    /// Starts bevy without a window. Fails (does not panic) when wgpu finds no adapter.
    pub fn headless() -> Result<Self, RenderError> {
        let built = std::panic::catch_unwind(|| {
            let mut app = App::new();
            app.add_plugins(
                DefaultPlugins
                    .set(WindowPlugin {
                        primary_window: None,
                        exit_condition: ExitCondition::DontExit,
                        ..default()
                    })
                    .set(RenderPlugin {
                        // On the software renderer, asynchronous compilation leaves the
                        // first frames black.
                        synchronous_pipeline_compilation: true,
                        ..default()
                    })
                    .disable::<bevy::winit::WinitPlugin>()
                    .disable::<bevy::render::pipelined_rendering::PipelinedRenderingPlugin>(),
            );
            while app.plugins_state() == PluginsState::Adding {
                bevy::tasks::tick_global_task_pools_on_main_thread();
            }
            app.finish();
            app.cleanup();
            app
        });
        let mut app = built.map_err(|e| {
            let message = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "bevy's renderer failed to start".into());
            RenderError::NoAdapter(message)
        })?;
        let world = app.world_mut();
        let fonts = Fonts::load(&mut world.resource_mut::<Assets<Font>>());
        let target = world
            .resource_mut::<Assets<Image>>()
            .add(target_image(1, 1));
        let camera = world
            .spawn((
                Camera2d,
                Camera {
                    clear_color: ClearColorConfig::Custom(Color::NONE),
                    ..default()
                },
                RenderTarget::Image(target.clone().into()),
                // Flat UI over a photo: no multisampling, no tonemapping pass (each
                // would cost a full-frame pass on a software renderer).
                Msaa::Off,
                Tonemapping::None,
            ))
            .id();
        Ok(Renderer {
            app,
            camera,
            target,
            size: (1, 1),
            fonts,
            root: None,
            captured: Arc::new(Mutex::new(None)),
        })
    }

    fn set_camera_active(&mut self, active: bool) {
        if let Some(mut camera) = self.app.world_mut().get_mut::<Camera>(self.camera) {
            camera.is_active = active;
        }
    }

    /// Renders `overlay` over `frame` (the overlay's coordinates are the frame's pixels).
    pub fn render(
        &mut self,
        frame: &RgbImage,
        overlay: &Overlay,
    ) -> Result<RgbaImage, RenderError> {
        let (w, h) = frame.dimensions();
        if !(1..=8192).contains(&w) || !(1..=8192).contains(&h) {
            return Err(RenderError::Size(w, h));
        }
        self.set_camera_active(true);
        if self.size != (w, h) {
            // A new target takes a frame to reach the camera (its size, its texture).
            let world = self.app.world_mut();
            let _ = world
                .resource_mut::<Assets<Image>>()
                .insert(&self.target, target_image(w, h));
            self.size = (w, h);
            for _ in 0..2 {
                self.app.update();
            }
        }
        let world = self.app.world_mut();
        if let Some(root) = self.root.take() {
            world.entity_mut(root).despawn();
        }
        let mut commands = world.commands();
        self.root = Some(spawn_overlay(
            &mut commands,
            self.camera,
            None,
            overlay,
            &self.fonts,
        ));
        let slot = self.captured.clone();
        // A straight copy of the target into a buffer (a screenshot would first draw
        // the whole target again through a pipeline: ~10 ms more on lavapipe).
        let readback = commands
            .spawn(Readback::texture(self.target.clone()))
            .observe(move |done: On<ReadbackComplete>| {
                if let Ok(mut s) = slot.lock() {
                    *s = Some(done.data.clone());
                }
            })
            .id();
        world.flush();
        let mut result = Err(RenderError::Timeout(MAX_UPDATES));
        for i in 0..MAX_UPDATES {
            self.app.update();
            if i == 0 {
                // Drawn and copied; the next updates only wait for the read-back.
                self.set_camera_active(false);
            }
            let got = self.captured.lock().ok().and_then(|mut s| s.take());
            if let Some(data) = got {
                result = unpad(data, w, h).map(|mut layer| {
                    composite(frame, &mut layer);
                    layer
                });
                break;
            }
        }
        self.app.world_mut().entity_mut(readback).despawn();
        self.set_camera_active(true);
        result
    }
}

/// One renderer for a whole process, on a thread of its own (bevy's app stays on the
/// thread that made it), started on the first picture asked for and kept for the
/// next; any thread may ask. Pictures are drawn one at a time.
#[derive(Debug, Clone)]
pub struct SharedRenderer {
    jobs: std::sync::mpsc::Sender<Job>,
}

type Job = (
    RgbImage,
    Overlay,
    std::sync::mpsc::Sender<Result<RgbaImage, String>>,
);

impl SharedRenderer {
    /// The process's renderer thread (started once).
    pub fn get() -> Self {
        static SHARED: std::sync::OnceLock<Mutex<std::sync::mpsc::Sender<Job>>> =
            std::sync::OnceLock::new();
        let tx = SHARED.get_or_init(|| {
            let (tx, rx) = std::sync::mpsc::channel::<Job>();
            std::thread::spawn(move || {
                let mut r: Option<Renderer> = None;
                for (frame, overlay, reply) in rx {
                    if r.is_none() {
                        match Renderer::headless() {
                            Ok(made) => r = Some(made),
                            Err(e) => {
                                let _ = reply.send(Err(e.to_string()));
                                continue;
                            }
                        }
                    }
                    let drawn = match r.as_mut() {
                        Some(renderer) => {
                            renderer.render(&frame, &overlay).map_err(|e| e.to_string())
                        }
                        None => Err("no renderer".into()),
                    };
                    let _ = reply.send(drawn);
                }
            });
            Mutex::new(tx)
        });
        Self {
            jobs: tx.lock().unwrap_or_else(|p| p.into_inner()).clone(),
        }
    }

    /// `frame` with `overlay` drawn over it (blocks until drawn).
    pub fn render(&self, frame: &RgbImage, overlay: &Overlay) -> Result<RgbaImage, String> {
        let (tx, rx) = std::sync::mpsc::channel();
        self.jobs
            .send((frame.clone(), overlay.clone(), tx))
            .map_err(|_| "the renderer thread has stopped".to_string())?;
        rx.recv()
            .map_err(|_| "the renderer thread has stopped".to_string())?
    }
}

impl aisle_ar::Paint for SharedRenderer {
    fn paint(&self, frame: &RgbImage, overlay: &Overlay) -> Result<RgbaImage, String> {
        self.render(frame, overlay)
    }
}
