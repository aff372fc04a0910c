//! Saturn's replicated cluster state (being written).

pub mod job;
