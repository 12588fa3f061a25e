//! The gateway as its own server: binds the listener itself (port 0 in tests), mounts the
//! gateway, answers unknown paths in the error shape.

use std::net::TcpListener;

use actix_web::dev::{Server, ServerHandle};
use actix_web::{web, App, HttpServer};

use crate::config::Settings;
use crate::gateway::{hostname, worker_count, Gateway, StartError};
use crate::http::error::not_found;

/// A built, not yet running, gateway server.
pub struct Application {
    port: u16,
    server: Server,
    gateway: Gateway,
}

impl Application {
    /// Builds the gateway and its server on `server.bind`.
    pub async fn build(settings: Settings) -> Result<Self, StartError> {
        let listener = TcpListener::bind(&settings.server.bind)?;
        Self::build_on(settings, listener).await
    }

    /// Builds the gateway and its server on a listener bound already (to learn its port before
    /// `server.public_url` is set, say).
    pub async fn build_on(settings: Settings, listener: TcpListener) -> Result<Self, StartError> {
        let port = listener.local_addr()?.port();
        let workers = worker_count(&settings);
        // Bound to a port, this process is the only live one of its name on this host.
        let gateway = Gateway::builder(settings)
            .instance_id(format!("{}:{port}", hostname()))
            .build()
            .await?;
        let mounted = gateway.clone();
        let server = HttpServer::new(move || {
            let gateway = mounted.clone();
            App::new()
                .configure(move |cfg| gateway.configure(cfg))
                .default_service(web::to(not_found))
        })
        .workers(workers)
        .listen(listener)?
        .run();
        Ok(Self {
            port,
            server,
            gateway,
        })
    }

    /// The port it listens on (the real one when bound to port 0).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The gateway it serves.
    pub fn gateway(&self) -> &Gateway {
        &self.gateway
    }

    /// A handle to stop the server.
    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    /// Serves until stopped (by a signal or the handle).
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await
    }
}
