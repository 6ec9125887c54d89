//! The HTTP edge (DESIGN §5): hyper 1.x without a framework.
//!
//! - [`server`]: accept loop, connection cap, timeouts, body limits, graceful shutdown.
//! - [`request`]: the fully read [`Request`] and the [`Service`] trait handlers implement.
//! - [`response`]: JSON, JECP error envelopes, CORS, cache headers and conditional GET.
//! - [`router`]: the route table (404 / 405 with `Allow` / CORS preflight).
//! - [`discovery`]: `agent.json`, `agent-guide.json`, `llms.txt`.
//! - [`health`]: `/health` and the [`HealthProbe`] the store implements.
//! - [`endpoints`]: business routes translated into `hub` calls.
//! - [`app`]: [`App`], the Hub's service, one `match` arm per route.
//!
//! This layer holds no business rules: it parses, bounds and renders; decisions belong to `hub`.

pub mod app;
pub mod discovery;
pub mod endpoints;
pub mod health;
pub mod request;
pub mod response;
pub mod router;
pub mod server;

pub use app::App;
pub use discovery::DiscoveryInputs;
pub use health::HealthProbe;
pub use request::{Request, Service};
pub use response::Response;
pub use router::{Resolution, Route};
pub use server::{ServerLimits, serve};
