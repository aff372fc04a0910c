//! Test harness for multi-agent tests (placeholder, being written).
