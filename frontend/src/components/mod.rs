//! Reusable view pieces.

pub mod copy;
pub mod header;
pub mod modal;
pub mod status;
