//! AR overlays (issue #6): overlay layout from plain product facts and boxes, and
//! rendering. Nothing is implemented yet. Architecture invariant: this crate takes
//! plain overlay data and knows nothing about how a product was found.
