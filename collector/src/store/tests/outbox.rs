//! The store suite for the notification outbox, groups and maintenance windows, on both backends.
