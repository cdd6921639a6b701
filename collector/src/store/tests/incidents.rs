//! The store suite for incidents, parent holds and SLA clocks, on both backends.
