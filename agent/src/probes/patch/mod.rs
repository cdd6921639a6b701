//! OS patch level (placeholder; being written).
