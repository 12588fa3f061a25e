//! The actix-web routes: the webhook, sends, media, health, and the error answers they share.

pub(crate) mod auth;
mod body;
pub mod error;
mod health;
mod media;
mod send;
mod webhook;

use actix_web::web;

use crate::protocol::media_links::OUTBOUND_MEDIA;

/// Mounts every route of the gateway on `cfg`.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource(["/imchannel/message", "/{tenant}/imchannel/message"])
            .route(web::post().to(webhook::receive)),
    )
    .service(
        web::resource([
            "/imchannel/omni/1/advanced",
            "/{tenant}/imchannel/omni/1/advanced",
        ])
        .route(web::post().to(send::receive)),
    )
    .service(
        web::resource(["/imchannel/media/{id}", "/{tenant}/imchannel/media/{id}"])
            .route(web::get().to(|req, state| media::serve(req, state, "media"))),
    );
    for (_, function) in OUTBOUND_MEDIA {
        cfg.service(
            web::resource([
                format!("/imchannel/{function}/{{id}}"),
                format!("/{{tenant}}/imchannel/{function}/{{id}}"),
            ])
            .route(web::get().to(move |req, state| media::serve(req, state, function)))
            .route(web::head().to(move |req, state| media::serve(req, state, function))),
        );
    }
    cfg.route("/healthz", web::get().to(health::alive))
        .route("/readyz", web::get().to(health::ready));
}

/// The tenant a request names: its first path segment, or `default` on the paths without one.
fn tenant_of(req: &actix_web::HttpRequest) -> &str {
    req.match_info()
        .get("tenant")
        .unwrap_or(crate::DEFAULT_TENANT)
}
