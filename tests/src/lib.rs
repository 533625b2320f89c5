//! Integration harness for Heimdall.
