//! Hardware/software inventory (placeholder; being written).
