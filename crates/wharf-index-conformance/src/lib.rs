//! Nothing but a home for `tests/index_rules.rs`, the conformance suite that runs every rule
//! of [`wharf_index`] against both adapters (`wharf-index-sqlite`, `wharf-index-postgres`).
