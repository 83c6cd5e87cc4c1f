//! The web console: a read-only page the controllers serve on their HTTP port (`/console`),
//! behind the same login as clients. The page (`index.html`, embedded in the binary) polls
//! `/api/overview` every 2 s and `/api/config` on demand; both answer JSON built from the calls
//! `shoal status`, `shoal chunks`, `shoal config` and `shoal upgrade --status` make
//! ([`api`]), so any controller serves it, leader or not.
//!
//! Login: `POST /console/login` with the user's name and password (checked against the
//! cluster's users, as a client's: see `crate::user_admin`) sets a session cookie holding a
//! signed token (the one Flight SQL hands out); the API answers 401 without a token of a
//! current user (`/api/session` says who is logged in, or nobody). Any role may look.

mod api;

use axum::Router;
use axum::extract::{Form, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use shoal_client::channel::Channels;
use shoal_client::controller::ControllerClient;
use shoal_common::secret::Keys;
use shoal_common::users::TOKEN_TTL;

use crate::controller_service::ControllerCore;
use crate::user_admin::directory;

const PAGE: &str = include_str!("index.html");
const COOKIE: &str = "shoal_console";

/// What the console's handlers share.
#[derive(Clone)]
pub struct Console {
    core: ControllerCore,
    secret: Keys,
    controllers: ControllerClient,
    channels: Channels,
}

impl Console {
    pub fn new(
        core: ControllerCore,
        secret: &Keys,
        controllers: ControllerClient,
        channels: Channels,
    ) -> Self {
        Self {
            core,
            secret: secret.clone(),
            controllers,
            channels,
        }
    }

    /// The console's routes, to serve beside the node's `/metrics`.
    pub fn router(self) -> Router {
        Router::new()
            .route("/", get(|| async { Redirect::to("/console") }))
            .route("/console", get(|| async { Html(PAGE) }))
            .route("/console/login", post(login))
            .route("/console/logout", post(logout))
            .route("/api/session", get(session))
            .route("/api/overview", get(overview))
            .route("/api/config", get(config))
            .with_state(self)
    }

    /// The user a request's session cookie names, if its token is valid.
    fn session(&self, headers: &HeaderMap) -> Option<String> {
        let cookies = headers.get(header::COOKIE)?.to_str().ok()?;
        let token = cookies
            .split(';')
            .filter_map(|c| c.trim().split_once('='))
            .find(|(name, _)| *name == COOKIE)?
            .1;
        directory(&self.core)
            .check_token(&self.secret, token)
            .map(|(name, _)| name)
    }
}

#[derive(Deserialize)]
struct Login {
    user: String,
    password: String,
}

async fn login(State(c): State<Console>, Form(form): Form<Login>) -> Response {
    let users = directory(&c.core);
    // A password hash: on a blocking thread, not the controller's async workers.
    let (checking, user, password) = (users.clone(), form.user.clone(), form.password);
    let verified = tokio::task::spawn_blocking(move || checking.verify(&user, &password))
        .await
        .ok()
        .flatten();
    let Some((role, generation)) = verified else {
        tracing::warn!(user = %form.user, "console login refused");
        return (
            StatusCode::UNAUTHORIZED,
            Html("<p>Wrong user name or password. <a href=\"/console\">Back</a></p>"),
        )
            .into_response();
    };
    let token = users.issue_token(&c.secret, &form.user, role, generation);
    // The console is served over HTTPS exactly when the node's connections are TLS: then the
    // browser must never send the token over plain HTTP.
    let secure = if c.channels.tls().is_some() {
        "; Secure"
    } else {
        ""
    };
    let cookie = format!(
        "{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
        TOKEN_TTL.as_secs()
    );
    ([(header::SET_COOKIE, cookie)], Redirect::to("/console")).into_response()
}

async fn logout() -> Response {
    let cookie = format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0");
    ([(header::SET_COOKIE, cookie)], Redirect::to("/console")).into_response()
}

/// Who is logged in (`{"user": null}` if nobody): the page asks first, so a visitor who is
/// not logged in sees the form without a failed request.
async fn session(State(c): State<Console>, headers: HeaderMap) -> Response {
    api::json(Ok(serde_json::json!({ "user": c.session(&headers) })))
}

async fn overview(State(c): State<Console>, headers: HeaderMap) -> Response {
    match c.session(&headers) {
        Some(_) => api::json(api::overview(&c.controllers).await),
        None => unauthorized(),
    }
}

async fn config(State(c): State<Console>, headers: HeaderMap) -> Response {
    match c.session(&headers) {
        Some(_) => api::json(api::config(&c.controllers, &c.channels).await),
        None => unauthorized(),
    }
}

fn unauthorized() -> Response {
    (StatusCode::UNAUTHORIZED, "log in first\n").into_response()
}
