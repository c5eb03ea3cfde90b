//! Wharf's services wired and supervised.
//!
//! [`App`] builds one process from typed settings: the embedded mode (gateway, in-process
//! verifier, storage worker and bus together) or one scaled service (gateway, verifier or
//! worker), binds its listener, and runs its tasks under one [`Supervisor`]: the first task
//! that ends on its own stops the others and ends the run with an error naming it.
//! [`adapters`] opens the index, the file store and the bus, each through one function.
//! With the `test-support` feature, `TestApp` runs the whole registry in-process for tests.

pub mod adapters;
mod app;
mod connections;
pub mod server;
pub mod supervisor;
#[cfg(feature = "test-support")]
pub mod test_app;

pub use adapters::{
    BusSettings, ConfigError, IndexSettings, StoreSettings, open_bus, open_index, open_store,
};
pub use app::{
    App, EmbeddedSettings, GatewayProcessSettings, Parts, PublicListener, VerifierProcessSettings,
    WorkerProcessSettings,
};
pub use supervisor::Supervisor;
#[cfg(feature = "test-support")]
pub use test_app::{Events, TestApp, TestAppBuilder};
