//! ICMP ping probe (placeholder; being written).
