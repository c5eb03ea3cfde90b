//! Generated protobuf and gRPC types for Wharf (`proto/wharf/v1`), and nothing else.

/// Version 1 of Wharf's wire types: the verifier service and the bus messages.
#[allow(
    clippy::all,
    clippy::pedantic,
    unreachable_pub,
    missing_debug_implementations,
    rustdoc::broken_intra_doc_links
)]
pub mod v1 {
    tonic::include_proto!("wharf.v1");
}
