//! AR overlays (issue #6): overlay layout from plain product facts and boxes, and
//! rendering with bevy. Architecture invariant: this crate takes plain overlay
//! data and knows nothing about how a product was found.
//!
//! - [`layout`]: pure placement of product cards (name, price, stock badge,
//!   promotion ribbon, aisle direction) beside their products, never covering a
//!   product or another card, readable at kiosk and tablet sizes, steady across
//!   frames ([`layout::Stabilizer`]).
//! - [`render`]: the camera frame and the cards drawn with bevy (wgpu), off-screen
//!   to an image (headless, Mesa's software Vulkan works).
//! - [`window`]: the tablet AR mode in a window; a tap on a card sends its sku back.

pub mod layout;
pub mod render;
pub mod window;

pub use layout::{
    Card, Detection, LayoutParams, Overlay, ProductFacts, Profile, Rect, Side, Stability,
    Stabilizer, Stock, layout,
};
