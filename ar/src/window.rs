//! The tablet AR mode in a window: frames and their overlays arrive on a channel (the
//! caller locates and identifies products on its own thread), are drawn as they come,
//! and a tap or click on a card sends its sku back; the caller's answer is shown in a
//! banner at the bottom.

use std::sync::Mutex;
use std::sync::mpsc::{Receiver, Sender};

use bevy::core_pipeline::tonemapping::Tonemapping;
use bevy::prelude::*;
use bevy::render::RenderPlugin;
use bevy::text::{FontSize, FontSource};
use image::RgbImage;

use crate::layout::Overlay;
use crate::render::{CardSku, Fonts, OverlayRoot, RenderError, rgba_image, spawn_overlay};

/// One frame to show.
pub struct WindowFrame {
    pub frame: RgbImage,
    pub overlay: Overlay,
}

/// The window's ends of the channels to the caller.
pub struct WindowLink {
    pub frames: Receiver<WindowFrame>,
    /// Skus of tapped cards.
    pub taps: Sender<String>,
    /// Text to show in the answer banner.
    pub answers: Receiver<String>,
}

#[derive(Resource)]
struct Link(Mutex<WindowLink>);

#[derive(Resource)]
struct Scene {
    camera: Entity,
    frame: Handle<Image>,
    fonts: Fonts,
    answer: Entity,
}

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
    .add_systems(Startup, setup)
    .add_systems(Update, (show_frames, taps, answers));
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
    mut commands: Commands,
    link: Res<Link>,
    scene: Res<Scene>,
    mut images: ResMut<Assets<Image>>,
    mut ui_scale: ResMut<UiScale>,
    windows: Query<&Window>,
    old: Query<Entity, With<OverlayRoot>>,
) {
    let latest = match link.0.lock() {
        Ok(l) => l.frames.try_iter().last(),
        Err(_) => None,
    };
    let Some(next) = latest else {
        return;
    };
    let _ = images.insert(&scene.frame, rgba_image(&next.frame));
    for e in &old {
        commands.entity(e).despawn();
    }
    // The overlay is in frame pixels: scale the UI to the window.
    if let Some(w) = windows.iter().next() {
        ui_scale.0 = w.width() / next.frame.width().max(1) as f32;
    }
    spawn_overlay(
        &mut commands,
        scene.camera,
        scene.frame.clone(),
        &next.overlay,
        &scene.fonts,
    );
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
    let latest = match link.0.lock() {
        Ok(l) => l.answers.try_iter().last(),
        Err(_) => None,
    };
    if let Some(text) = latest
        && let Ok((mut t, mut node)) = q.get_mut(scene.answer)
    {
        t.0 = text;
        node.display = Display::Flex;
    }
}
