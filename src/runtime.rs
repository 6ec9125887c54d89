//! Wiring a running Hub: bind the listener, open the [`Hub`], serve the
//! [`App`] until asked to stop, then drain the store. `main` and the
//! integration tests start Hubs the same way, through [`Running::start`].

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::http::{self, App, ServerLimits};
use crate::hub::{Hub, HubSeams, StartError};

/// A Hub serving HTTP in the current tokio runtime.
#[derive(Debug)]
pub struct Running {
    /// The address actually bound (differs from the configured one for port 0).
    pub addr: SocketAddr,
    pub hub: Arc<Hub>,
    stop: Option<oneshot::Sender<()>>,
    served: Option<JoinHandle<std::io::Result<()>>>,
}

impl Running {
    /// Binds `config.listen`, opens the data directory and starts serving.
    pub async fn start(config: Config) -> Result<Running, StartError> {
        Running::start_with_fault(config, None).await
    }

    /// [`Running::start`] with the store behind a fault switch (for tests).
    pub async fn start_with_fault(
        config: Config,
        fault: Option<crate::store::FaultSwitch>,
    ) -> Result<Running, StartError> {
        Running::start_with(
            config,
            HubSeams {
                fault,
                ..HubSeams::default()
            },
        )
        .await
    }

    /// [`Running::start`] with test seams (see [`HubSeams`]).
    pub async fn start_with(mut config: Config, seams: HubSeams) -> Result<Running, StartError> {
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|error| {
                StartError::new(format!("cannot listen on {}: {error}", config.listen))
            })?;
        let addr = listener
            .local_addr()
            .map_err(|error| StartError::new(format!("cannot read the bound address: {error}")))?;
        config.set_bound_address(addr);
        Running::serve_with(listener, config, std::future::pending(), seams)
    }

    /// Serves on an already bound listener until `shutdown` completes or
    /// [`Running::stop`] is called.
    pub fn serve(
        listener: tokio::net::TcpListener,
        config: Config,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<Running, StartError> {
        Running::serve_with(listener, config, shutdown, HubSeams::default())
    }

    fn serve_with(
        listener: tokio::net::TcpListener,
        config: Config,
        shutdown: impl Future<Output = ()> + Send + 'static,
        seams: HubSeams,
    ) -> Result<Running, StartError> {
        let addr = listener
            .local_addr()
            .map_err(|error| StartError::new(format!("cannot read the bound address: {error}")))?;
        let limits = ServerLimits::from_config(&config);
        let hub = Hub::open_with(config, seams)?;
        let app = Arc::new(App::for_hub(hub.clone()));
        let (stop, stopped) = oneshot::channel::<()>();
        let signal = async move {
            tokio::select! {
                () = shutdown => {}
                _ = stopped => {}
            }
        };
        let served = tokio::spawn(http::serve(listener, app, limits, signal));
        Ok(Running {
            addr,
            hub,
            stop: Some(stop),
            served: Some(served),
        })
    }

    /// Waits until the server stops (its shutdown future completed), then
    /// drains the writer and makes the final durable commit.
    pub async fn wait(mut self) -> std::io::Result<()> {
        let result = match self.served.take() {
            Some(served) => served
                .await
                .unwrap_or_else(|join| Err(std::io::Error::other(join))),
            None => Ok(()),
        };
        self.hub.shutdown().await;
        result
    }

    /// Stops accepting, lets in-flight requests finish (up to the grace
    /// deadline), drains the store.
    pub async fn stop(mut self) -> std::io::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.wait().await
    }
}
