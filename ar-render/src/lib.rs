//! AR overlays drawn with bevy (wgpu): the layout's cards over camera frames,
//! off-screen to pictures ([`render`]) and in the tablet's window ([`window`]).
//! Kept apart from `aisle-ar`'s plain overlay types and layout, so that nothing that
//! only needs the types links a renderer.

pub mod render;
pub mod window;

pub use render::{RenderError, Renderer, SharedRenderer};
