//! Rendering with bevy (wgpu underneath): the camera frame as a full-size image, the
//! overlay's cards on top as bevy UI nodes placed at the layout's pixel positions.
//!
//! [`Renderer`] renders off-screen into an image and reads it back (`aisle ar render`,
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
use bevy::render::render_resource::{Extent3d, TextureDimension, TextureFormat};
use bevy::render::view::screenshot::{Screenshot, ScreenshotCaptured};
use bevy::text::{FontSize, FontSource};
use bevy::window::ExitCondition;
use image::{RgbImage, RgbaImage};

use crate::layout::{LineRole, Overlay, Stock};

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

/// Spawns the camera frame (`frame`, shown full size) and `overlay` as UI nodes for
/// `camera`; returns the root, to despawn before the next frame.
pub fn spawn_overlay(
    commands: &mut Commands,
    camera: Entity,
    frame: Handle<Image>,
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
            ImageNode::new(frame),
        ))
        .id();
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

/// A camera frame as a bevy image (sRGB, opaque).
pub fn rgba_image(frame: &RgbImage) -> Image {
    let (w, h) = frame.dimensions();
    let mut data = Vec::with_capacity((w * h * 4) as usize);
    for p in frame.pixels() {
        data.extend_from_slice(&[p[0], p[1], p[2], 255]);
    }
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

/// Off-screen renderer: one bevy app, kept for many frames.
pub struct Renderer {
    app: App,
    camera: Entity,
    target: Handle<Image>,
    frame: Handle<Image>,
    size: (u32, u32),
    fonts: Fonts,
    root: Option<Entity>,
    captured: Arc<Mutex<Option<Image>>>,
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
        let (target, frame) = {
            let mut images = world.resource_mut::<Assets<Image>>();
            let target = images.add(Image::new_target_texture(
                1,
                1,
                TextureFormat::Rgba8UnormSrgb,
                None,
            ));
            let frame = images.add(rgba_image(&RgbImage::new(1, 1)));
            (target, frame)
        };
        let camera = world
            .spawn((
                Camera2d,
                Camera {
                    clear_color: ClearColorConfig::Custom(Color::BLACK),
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
            frame,
            size: (1, 1),
            fonts,
            root: None,
            captured: Arc::new(Mutex::new(None)),
        })
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
        let world = self.app.world_mut();
        let resized = self.size != (w, h);
        {
            let mut images = world.resource_mut::<Assets<Image>>();
            if resized {
                let _ = images.insert(
                    &self.target,
                    Image::new_target_texture(w, h, TextureFormat::Rgba8UnormSrgb, None),
                );
                self.size = (w, h);
            }
            let _ = images.insert(&self.frame, rgba_image(frame));
        }
        if let Some(root) = self.root.take() {
            world.entity_mut(root).despawn();
        }
        let mut commands = world.commands();
        self.root = Some(spawn_overlay(
            &mut commands,
            self.camera,
            self.frame.clone(),
            overlay,
            &self.fonts,
        ));
        world.flush();
        if resized {
            // A new target takes a frame to reach the camera (its size, its texture).
            for _ in 0..2 {
                self.app.update();
            }
        }
        let world = self.app.world_mut();
        let mut commands = world.commands();
        let slot = self.captured.clone();
        commands
            .spawn(Screenshot::image(self.target.clone()))
            .observe(move |shot: On<ScreenshotCaptured>| {
                if let Ok(mut s) = slot.lock() {
                    *s = Some(shot.image.clone());
                }
            });
        world.flush();
        for _ in 0..MAX_UPDATES {
            self.app.update();
            let got = self.captured.lock().ok().and_then(|mut s| s.take());
            if let Some(img) = got {
                let dynamic = img
                    .try_into_dynamic()
                    .map_err(|e| RenderError::Readback(e.to_string()))?;
                return Ok(dynamic.to_rgba8());
            }
        }
        Err(RenderError::Timeout(MAX_UPDATES))
    }
}
