//! SPASE planner (placeholder, being written).
