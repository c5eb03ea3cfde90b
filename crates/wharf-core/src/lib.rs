//! Pure domain logic of Wharf: project names, versions, distribution filenames and core
//! metadata, with the error texts PyPI uses. No I/O.
