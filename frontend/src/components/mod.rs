//! Reusable view pieces.

pub mod copy;
pub mod header;
pub mod modal;
pub mod on_demand;
pub mod status;
