//! Harness for the end-to-end tests: starts real `wharf` processes and drives real clients.
