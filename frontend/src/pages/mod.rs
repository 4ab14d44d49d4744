//! One module per route.

pub mod detail;
pub mod execute;
pub mod fleet;
pub mod history;
pub mod not_found;
