//! AR overlays (issue #6): overlay layout from plain product facts and boxes.
//! Architecture invariant: this crate takes plain overlay data and knows nothing
//! about how a product was found, nor how cards are drawn (`aisle-ar-render` draws
//! them with bevy); it links no renderer.
//!
//! - [`layout`]: pure placement of product cards (name, price, stock badge,
//!   promotion ribbon, aisle direction) beside their products, never covering a
//!   product or another card, readable at kiosk and tablet sizes, steady across
//!   frames ([`layout::Stabilizer`]).

pub mod layout;

pub use layout::{
    Card, Detection, LayoutParams, Overlay, ProductFacts, Profile, Rect, Side, Stability,
    Stabilizer, Stock, layout,
};

/// Draws an overlay's cards over its camera frame. `aisle-ar-render` implements it with
/// bevy; whoever needs pictures takes one of these instead of linking a renderer.
pub trait Paint: Send + Sync {
    fn paint(&self, frame: &image::RgbImage, overlay: &Overlay)
    -> Result<image::RgbaImage, String>;
}
