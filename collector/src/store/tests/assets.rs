//! The store suite for inventory, assets, problems and changes, on both backends.
