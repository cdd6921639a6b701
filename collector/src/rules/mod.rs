//! Threshold rules (placeholder; being written).
