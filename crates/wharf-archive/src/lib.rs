//! Distribution bytes: the single-pass digests and the inspection of wheels and sdists.
