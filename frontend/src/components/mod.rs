//! Reusable view pieces.

pub mod header;
pub mod modal;
pub mod status;
