//! The `saturn` command line.

pub mod plan;
