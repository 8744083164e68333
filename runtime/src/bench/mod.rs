//! `aisle bench ...`: benchmarks that print a table comparing aisle with a named peer
//! measured in the same run, on the same machine, with the same inputs.

pub mod assistant;
pub mod llm;
pub mod speech;
