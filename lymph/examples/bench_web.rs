//! Web interface throughput over loopback TCP, with keep-alive HTTP/1.1 connections, printed as
//! requests per second:
//!
//! - bare axum (`axum::serve`), a handler that upper-cases a JSON body: the baseline;
//! - the same handler as a lymph web interface (trace id, span, metrics, `X-Trace-Id`);
//! - a lymph web interface that calls `echo.upper` over embedded RPC for each request.
//!
//! Each runs sequentially on one connection, then on 8 connections at once.
//!
//! `cargo run --release -p lymph --example bench_web [requests]`

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use lymph::memory::MemoryNetwork;
use lymph::web::routing::post;
use lymph::web::{Json, Router, WebInterface};
use lymph::{Container, Context, Result};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Text {
    text: String,
}

async fn upper_locally(Json(body): Json<Text>) -> Json<Text> {
    Json(Text { text: body.text.to_uppercase() })
}

#[derive(Debug, Default)]
struct Echo;

#[lymph::interface(name = "echo")]
impl Echo {
    /// Upper-cases `text`.
    #[rpc]
    async fn upper(&self, text: String) -> Result<String> {
        Ok(text.to_uppercase())
    }
}

async fn upper_through_rpc(ctx: Context, Json(body): Json<Text>) -> Result<Json<Text>> {
    let text = ctx.client::<EchoClient>().upper(body.text).await?;
    Ok(Json(Text { text }))
}

/// Upper-cases in the handler.
struct Local;

impl WebInterface for Local {
    fn name(&self) -> &'static str {
        "local"
    }

    fn router(self: Arc<Self>) -> Router {
        Router::new().route("/upper", post(upper_locally))
    }
}

/// Upper-cases through `echo.upper`.
struct Gateway;

impl WebInterface for Gateway {
    fn name(&self) -> &'static str {
        "gateway"
    }

    fn router(self: Arc<Self>) -> Router {
        Router::new().route("/upper", post(upper_through_rpc))
    }
}

/// `requests` POSTs on one keep-alive connection to `addr`.
async fn client(addr: std::net::SocketAddr, requests: usize) {
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.expect("handshake");
    tokio::spawn(connection);
    for _ in 0..requests {
        sender.ready().await.expect("ready");
        let request = hyper::Request::post("/upper")
            .header("host", addr.to_string())
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from_static(br#"{"text": "hello"}"#)))
            .expect("request");
        let response = sender.send_request(request).await.expect("response");
        assert!(response.status().is_success(), "{}", response.status());
        let body = response.into_body().collect().await.expect("body").to_bytes();
        assert_eq!(&body[..], br#"{"text":"HELLO"}"#);
    }
}

/// Sequential and 8-connection requests per second against `addr`.
async fn measure(addr: std::net::SocketAddr, requests: usize) -> (f64, f64) {
    client(addr, 100).await;
    let started = Instant::now();
    client(addr, requests).await;
    let sequential = requests as f64 / started.elapsed().as_secs_f64();
    let started = Instant::now();
    let per_connection = requests / 8;
    let tasks: Vec<_> = (0..8).map(|_| tokio::spawn(client(addr, per_connection))).collect();
    for task in tasks {
        task.await.expect("client task");
    }
    let concurrent = (per_connection * 8) as f64 / started.elapsed().as_secs_f64();
    (sequential, concurrent)
}

#[tokio::main]
async fn main() -> Result<()> {
    let requests: usize = std::env::args().nth(1).and_then(|n| n.parse().ok()).unwrap_or(20_000);

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.map_err(lymph::Error::transport)?;
    let bare = listener.local_addr().map_err(lymph::Error::transport)?;
    let router = Router::new().route("/upper", post(upper_locally));
    tokio::spawn(async move { lymph::web::axum::serve(listener, router).await });

    let network = MemoryNetwork::new();
    let _echo = Container::builder().network(&network).interface(Echo).start().await?;
    let web = Container::builder().network(&network).web(Local).web(Gateway).start().await?;
    let local = web.web_addr("local").expect("local listens");
    let gateway = web.web_addr("gateway").expect("gateway listens");

    for (what, addr) in [("bare axum", bare), ("lymph web interface", local), ("lymph web -> echo.upper rpc", gateway)]
    {
        let (sequential, concurrent) = measure(addr, requests).await;
        println!("{what}, {requests} requests: sequential {sequential:.0} req/s, 8 connections {concurrent:.0} req/s");
    }
    Ok(())
}
