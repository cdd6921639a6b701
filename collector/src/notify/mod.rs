//! Alert delivery to on-call staff (placeholder; being written).
