//! TCP port and TLS certificate probe (placeholder; being written).
