//! The store suite for samples, agents, history and latest values, on both backends.
