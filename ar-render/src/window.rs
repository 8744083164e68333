//! The tablet AR mode in a window: camera frames and overlays arrive on their own
//! channels (the caller reads frames at the camera's pace and locates and identifies
//! products on other threads, slower), the latest of each is drawn, the frame as the
//! background texture and the overlay on top; a tap or click on a card sends its sku
//! back; the caller's answer is shown in a banner at the bottom. The drawing rate is
//! logged every few seconds.

use std::sync::Mutex;
use std::sync::mpsc::{Receiver, Sender};

use bevy::core_pipeline::tonemapping::Tonemapping;
use bevy::prelude::*;
use bevy::render::RenderPlugin;
use bevy::text::{FontSize, FontSource};
use image::RgbImage;

use crate::render::{CardSku, Fonts, OverlayRoot, RenderError, rgba_image, spawn_overlay};
use aisle_ar::layout::Overlay;

/// The window's ends of the channels to the caller.
pub struct WindowLink {
    /// Camera frames, shown as they come.
    pub frames: Receiver<RgbImage>,
    /// Overlays (in frame pixels), drawn over whichever frame is shown.
    pub overlays: Receiver<Overlay>,
    /// Skus of tapped cards.
    pub taps: Sender<String>,
    /// Text to show in the answer banner.
    pub answers: Receiver<String>,
}

#[derive(Resource)]
struct Link(Mutex<WindowLink>);

impl Link {
    /// The newest message waiting on one of the link's channels (older ones dropped).
    fn latest<T>(&self, channel: impl Fn(&WindowLink) -> &Receiver<T>) -> Option<T> {
        self.0
            .lock()
            .ok()
            .and_then(|l| channel(&l).try_iter().last())
    }
}

#[derive(Resource)]
struct Scene {
    camera: Entity,
    frame: Handle<Image>,
    fonts: Fonts,
    answer: Entity,
}

/// Counts for the rate log.
#[derive(Resource, Default)]
struct Rates {
    since: Option<std::time::Instant>,
    draws: u32,
    frames: u32,
    overlays: u32,
}

const RATE_LOG_SECS: f32 = 5.0;

/// Whether a window can be opened here (an X11 or Wayland display).
pub fn display_available() -> bool {
    std::env::var_os("DISPLAY").is_some() || std::env::var_os("WAYLAND_DISPLAY").is_some()
}

/// Opens the window and runs until it is closed.
pub fn run_window(
    title: &str,
    width: u32,
    height: u32,
    link: WindowLink,
) -> Result<(), RenderError> {
    if !display_available() {
        return Err(RenderError::NoDisplay);
    }
    let mut app = App::new();
    app.add_plugins(
        DefaultPlugins
            .set(WindowPlugin {
                primary_window: Some(Window {
                    title: title.to_string(),
                    resolution: (width.max(320), height.max(240)).into(),
                    ..default()
                }),
                ..default()
            })
            .set(RenderPlugin {
                synchronous_pipeline_compilation: true,
                ..default()
            }),
    )
    .insert_resource(Link(Mutex::new(link)))
    .init_resource::<Rates>()
    .add_systems(Startup, setup)
    .add_systems(
        Update,
        (show_frames, show_overlays, taps, answers, log_rates),
    );
    app.run();
    Ok(())
}

fn setup(
    mut commands: Commands,
    mut images: ResMut<Assets<Image>>,
    mut fonts: ResMut<Assets<Font>>,
) {
    let camera = commands
        .spawn((Camera2d, Msaa::Off, Tonemapping::None))
        .id();
    let frame = images.add(rgba_image(&RgbImage::new(1, 1)));
    let fonts = Fonts::load(&mut fonts);
    // The camera frame, full size, behind everything.
    commands.spawn((
        UiTargetCamera(camera),
        GlobalZIndex(-1),
        Node {
            width: Val::Percent(100.0),
            height: Val::Percent(100.0),
            ..default()
        },
        ImageNode::new(frame.clone()),
    ));
    let answer = commands
        .spawn((
            UiTargetCamera(camera),
            GlobalZIndex(10),
            Node {
                position_type: PositionType::Absolute,
                bottom: Val::Px(16.0),
                left: Val::Px(16.0),
                right: Val::Px(16.0),
                padding: UiRect::all(Val::Px(12.0)),
                border_radius: BorderRadius::all(Val::Px(10.0)),
                display: Display::None,
                ..default()
            },
            BackgroundColor(Color::srgba_u8(0, 0, 0, 210)),
            Text::new(""),
            TextFont {
                font: FontSource::Handle(fonts.regular.clone()),
                font_size: FontSize::Px(22.0),
                ..default()
            },
            TextColor(Color::WHITE),
        ))
        .id();
    commands.insert_resource(Scene {
        camera,
        frame,
        fonts,
        answer,
    });
}

fn show_frames(
    link: Res<Link>,
    scene: Res<Scene>,
    mut images: ResMut<Assets<Image>>,
    mut ui_scale: ResMut<UiScale>,
    mut rates: ResMut<Rates>,
    windows: Query<&Window>,
) {
    let latest = link.latest(|l| &l.frames);
    let Some(frame) = latest else {
        return;
    };
    rates.frames += 1;
    // Same size as before: bevy writes into the existing texture.
    let _ = images.insert(&scene.frame, rgba_image(&frame));
    // The overlay is in frame pixels: scale the UI to the window.
    if let Some(w) = windows.iter().next() {
        ui_scale.0 = w.width() / frame.width().max(1) as f32;
    }
}

fn show_overlays(
    mut commands: Commands,
    link: Res<Link>,
    scene: Res<Scene>,
    mut rates: ResMut<Rates>,
    old: Query<Entity, With<OverlayRoot>>,
) {
    let latest = link.latest(|l| &l.overlays);
    let Some(overlay) = latest else {
        return;
    };
    rates.overlays += 1;
    for e in &old {
        commands.entity(e).despawn();
    }
    spawn_overlay(&mut commands, scene.camera, None, &overlay, &scene.fonts);
}

fn log_rates(mut rates: ResMut<Rates>) {
    rates.draws += 1;
    let now = std::time::Instant::now();
    let since = *rates.since.get_or_insert(now);
    let secs = now.duration_since(since).as_secs_f32();
    if secs >= RATE_LOG_SECS {
        tracing::info!(
            drawn_fps = format!("{:.1}", rates.draws as f32 / secs),
            camera_fps = format!("{:.1}", rates.frames as f32 / secs),
            overlays_per_s = format!("{:.1}", rates.overlays as f32 / secs),
            "AR window"
        );
        *rates = Rates {
            since: Some(now),
            ..Rates::default()
        };
    }
}

fn taps(link: Res<Link>, cards: Query<(&Interaction, &CardSku), Changed<Interaction>>) {
    for (i, sku) in &cards {
        if *i == Interaction::Pressed
            && let Ok(l) = link.0.lock()
        {
            let _ = l.taps.send(sku.0.clone());
        }
    }
}

fn answers(link: Res<Link>, scene: Res<Scene>, mut q: Query<(&mut Text, &mut Node)>) {
    let latest = link.latest(|l| &l.answers);
    if let Some(text) = latest
        && let Ok((mut t, mut node)) = q.get_mut(scene.answer)
    {
        t.0 = text;
        node.display = Display::Flex;
    }
}
