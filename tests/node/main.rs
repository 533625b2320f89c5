//! Single-node integration suite.
