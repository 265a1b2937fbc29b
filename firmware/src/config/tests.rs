//! Unit tests of the configuration and board profiles.
