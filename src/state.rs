//! What every request handler shares: the tenants, the intake, the media and the body limit.

use std::collections::HashMap;

use imchannel_actors::intake::Intake;

use crate::config::Settings;
use crate::http::auth::BasicCredentials;
use crate::http::error::ApiError;
use crate::media::{Media, MediaArbiter};

/// One configured tenant as the handlers need it.
pub struct Tenant {
    /// Its name, the first path segment.
    pub name: String,
    /// What Infobip must present on webhooks.
    pub webhook_auth: BasicCredentials,
    /// What CTLive must present on sends.
    pub api_auth: BasicCredentials,
    /// The OMNI scenario of sends that name none.
    pub scenario_key: String,
}

/// The state shared by every worker's handlers.
pub struct AppState {
    tenants: HashMap<String, Tenant>,
    /// Where accepted batches go.
    pub intake: Intake,
    /// `server.max_body_bytes`.
    pub max_body_bytes: usize,
    /// Media items: registered, fetched, served.
    pub media: Media,
    _media_arbiter: MediaArbiter,
}

impl AppState {
    /// The state for `settings`, feeding `intake`.
    pub fn new(
        settings: &Settings,
        intake: Intake,
        media: Media,
        media_arbiter: MediaArbiter,
    ) -> Self {
        let tenants = settings
            .tenants
            .iter()
            .map(|(name, tenant)| {
                let state = Tenant {
                    name: name.clone(),
                    webhook_auth: BasicCredentials::new(
                        &tenant.webhook_user,
                        &tenant.webhook_password,
                    ),
                    api_auth: BasicCredentials::new(&tenant.api_user, &tenant.api_password),
                    scenario_key: tenant.scenario_key.clone(),
                };
                (name.clone(), state)
            })
            .collect();
        Self {
            tenants,
            intake,
            max_body_bytes: settings.server.max_body_bytes,
            media,
            _media_arbiter: media_arbiter,
        }
    }

    /// The tenant of that name, or 404 whatever the credentials.
    pub fn tenant(&self, name: &str) -> Result<&Tenant, ApiError> {
        self.tenants
            .get(name)
            .ok_or_else(|| ApiError::NotFound(format!("no tenant named {name:.64}")))
    }
}
