//! A stand-in HTTP peer (CTLive here; Infobip later) on 127.0.0.1 that records what it receives
//! and answers as told: 200, any status, 429 with `Retry-After`, or never (past the client's
//! timeout).

use std::collections::{HashMap, VecDeque};
use std::net::TcpListener;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use actix_web::dev::ServerHandle;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use bytes::Bytes;
use futures::channel::oneshot;
use serde_json::Value;

/// How the stand-in answers one request.
#[derive(Clone, Debug)]
pub enum Reply {
    /// 200 with `{}`.
    Ok,
    /// 200 with this JSON body.
    Json(Value),
    /// This status, empty JSON body.
    Status(u16),
    /// A redirect (302) to this location.
    Redirect(String),
    /// 429 with `Retry-After: <secs>`.
    TooManyRequests {
        /// The `Retry-After` seconds.
        retry_after: u64,
    },
    /// Never answers.
    Hang,
    /// Answers 200 once the test calls [`StandIn::release_held`].
    Hold,
}

/// One request as the stand-in saw it.
#[derive(Clone, Debug)]
pub struct Received {
    /// The path.
    pub path: String,
    /// The `Authorization` header, if any.
    pub authorization: Option<String>,
    /// The `Content-Type` header, if any.
    pub content_type: Option<String>,
    /// The body as JSON (`Value::Null` if it was not JSON).
    pub body: Value,
    /// How it was answered.
    pub reply: Reply,
    /// When it arrived.
    pub at: Instant,
}

type Chooser = Box<dyn FnMut(&Value) -> Reply + Send>;

#[derive(Default)]
struct Script {
    /// Files served by path: content type and bytes.
    files: HashMap<String, (String, Bytes)>,
    received: Vec<Received>,
    held: Vec<oneshot::Sender<()>>,
    next: VecDeque<Reply>,
    chooser: Option<Chooser>,
}

/// A running stand-in.
pub struct StandIn {
    port: u16,
    script: Arc<Mutex<Script>>,
    handle: ServerHandle,
}

impl StandIn {
    /// Starts on a free port.
    pub fn start() -> Self {
        Self::start_on(TcpListener::bind("127.0.0.1:0").expect("bind a free port"))
    }

    /// Starts on a port chosen earlier (to come up where a gateway already points).
    pub fn start_on(listener: TcpListener) -> Self {
        let port = listener.local_addr().expect("bound").port();
        let script = Arc::new(Mutex::new(Script::default()));
        let shared = web::Data::from(script.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(shared.clone())
                .default_service(web::to(receive))
        })
        .workers(2)
        .disable_signals()
        .listen(listener)
        .expect("listen")
        .run();
        let handle = server.handle();
        actix_web::rt::spawn(server);
        Self {
            port,
            script,
            handle,
        }
    }

    /// The URL of `path` on this stand-in.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Answers the next requests with `replies`, in order, then 200 again.
    pub fn reply_next(&self, replies: impl IntoIterator<Item = Reply>) {
        self.script().next.extend(replies);
    }

    /// Chooses each answer from the body (after any `reply_next` are used up).
    pub fn reply_with(&self, chooser: impl FnMut(&Value) -> Reply + Send + 'static) {
        self.script().chooser = Some(Box::new(chooser));
    }

    /// Serves `bytes` as `content_type` at `path` (to GETs answered `Ok` or `Hold`).
    pub fn put_file(&self, path: &str, content_type: &str, bytes: Bytes) {
        self.script()
            .files
            .insert(path.to_owned(), (content_type.to_owned(), bytes));
    }

    /// How many requests reached `path`.
    pub fn hits(&self, path: &str) -> usize {
        self.script()
            .received
            .iter()
            .filter(|r| r.path == path)
            .count()
    }

    /// Answers every request held so far (see [`Reply::Hold`]).
    pub fn release_held(&self) {
        for held in self.script().held.drain(..) {
            let _ = held.send(());
        }
    }

    /// How many requests are held now.
    pub fn held(&self) -> usize {
        self.script().held.len()
    }

    /// Every request so far, in arrival order.
    pub fn received(&self) -> Vec<Received> {
        self.script().received.clone()
    }

    /// The bodies answered 200 (or held to be answered 200), in arrival order.
    pub fn taken(&self) -> Vec<Value> {
        self.script()
            .received
            .iter()
            .filter(|received| matches!(received.reply, Reply::Ok | Reply::Json(_) | Reply::Hold))
            .map(|received| received.body.clone())
            .collect()
    }

    /// The events (`results[0]`) answered 200, in arrival order.
    pub fn taken_events(&self) -> Vec<Value> {
        self.taken()
            .into_iter()
            .map(|body| body["results"][0].clone())
            .collect()
    }

    /// The messageIds answered 200, grouped by the event's customer (`from`), in arrival order.
    pub fn taken_by_customer(&self) -> HashMap<String, Vec<String>> {
        let mut grouped: HashMap<String, Vec<String>> = HashMap::new();
        for event in self.taken_events() {
            let text = |field: &str| event[field].as_str().unwrap_or_default().to_owned();
            grouped
                .entry(text("from"))
                .or_default()
                .push(text("messageId"));
        }
        grouped
    }

    /// Stops serving.
    pub async fn stop(&self) {
        self.handle.stop(false).await;
    }

    fn script(&self) -> MutexGuard<'_, Script> {
        self.script.lock().expect("stand-in state")
    }
}

/// A peer that is down: its loopback port is held by a socket that does not listen, so every
/// connection is refused, until [`bring_up`](Self::bring_up) starts a stand-in on the same port.
pub struct DownPeer {
    socket: socket2::Socket,
    port: u16,
}

impl DownPeer {
    /// Holds a free loopback port without listening on it.
    pub fn reserve() -> Self {
        let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
            .expect("a socket");
        let any_port: std::net::SocketAddr = "127.0.0.1:0".parse().expect("an address");
        socket.bind(&any_port.into()).expect("a loopback port");
        let port = socket
            .local_addr()
            .ok()
            .and_then(|address| address.as_socket())
            .expect("bound")
            .port();
        Self { socket, port }
    }

    /// The URL of `path` on this peer.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Starts a stand-in on the port.
    pub fn bring_up(self) -> StandIn {
        drop(self.socket);
        StandIn::start_on(TcpListener::bind(("127.0.0.1", self.port)).expect("the held port"))
    }
}

async fn receive(req: HttpRequest, body: Bytes, script: web::Data<Mutex<Script>>) -> HttpResponse {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let file = script
        .lock()
        .expect("stand-in state")
        .files
        .get(req.path())
        .cloned();
    let header = |name| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let mut release = None;
    let reply = {
        let mut script = script.lock().expect("stand-in state");
        let reply = match script.next.pop_front() {
            Some(reply) => reply,
            None => script
                .chooser
                .as_mut()
                .map_or(Reply::Ok, |choose| choose(&body)),
        };
        script.received.push(Received {
            path: req.path().to_owned(),
            authorization: header("authorization"),
            content_type: header("content-type"),
            body,
            reply: reply.clone(),
            at: Instant::now(),
        });
        if matches!(reply, Reply::Hold) {
            let (sender, receiver) = oneshot::channel();
            script.held.push(sender);
            release = Some(receiver);
        }
        reply
    };
    if let (Some((content_type, bytes)), Reply::Ok | Reply::Hold) = (file, &reply) {
        if let Some(release) = release {
            let _ = release.await;
        }
        return HttpResponse::Ok().content_type(content_type).body(bytes);
    }
    match reply {
        Reply::Ok => HttpResponse::Ok().json(serde_json::json!({})),
        Reply::Json(body) => HttpResponse::Ok().json(body),
        Reply::Redirect(location) => HttpResponse::Found().insert_header(("Location", location)).finish(),
        Reply::Status(code) => HttpResponse::build(actix_web::http::StatusCode::from_u16(code).expect("valid status"))
            .json(serde_json::json!({"requestError": {"serviceException": {"messageId": "STANDIN", "text": format!("stand-in answered {code}")}}})),
        Reply::TooManyRequests { retry_after } => HttpResponse::TooManyRequests()
            .insert_header(("Retry-After", retry_after.to_string()))
            .json(serde_json::json!({})),
        Reply::Hang => {
            std::future::pending::<()>().await;
            HttpResponse::Ok().finish()
        }
        Reply::Hold => {
            if let Some(release) = release {
                let _ = release.await;
            }
            HttpResponse::Ok().json(serde_json::json!({}))
        }
    }
}
