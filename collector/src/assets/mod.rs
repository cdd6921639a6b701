//! Asset records (CMDB) kept current from agent inventory (placeholder; being written).
