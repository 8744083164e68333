//! AR overlays (issue #6): overlay layout from plain product facts and boxes, and
//! rendering (to come). Architecture invariant: this crate takes plain overlay
//! data and knows nothing about how a product was found.
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
