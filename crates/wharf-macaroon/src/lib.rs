//! Macaroon API tokens in PyPI's wire format and the caveats PyPI defines. No I/O.
