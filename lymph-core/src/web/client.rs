//! A small HTTP/1.1 client over a [`WebNetwork`], for tests and tools: the same calls reach a web
//! interface over real TCP and inside the simulator.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode, header};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::network::WebNetwork;
use crate::{Error, Result};

/// How long a request may take, connection included, by default.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// An HTTP client of one web server (`host:port`), one connection per request.
///
/// # Example
///
/// ```no_run
/// # async fn example() -> lymph_core::Result<()> {
/// use std::sync::Arc;
/// use lymph_core::web::{TcpWebNetwork, WebClient};
///
/// let client = WebClient::new(Arc::new(TcpWebNetwork::default()), "127.0.0.1", 4080);
/// let response = client.post_json("/echo/upper", &serde_json::json!({"text": "hi"})).await?;
/// assert_eq!(response.status().as_u16(), 200);
/// let body: serde_json::Value = response.json()?;
/// assert_eq!(body["text"], "HI");
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct WebClient {
    network: Arc<dyn WebNetwork>,
    host: String,
    port: u16,
    headers: HeaderMap,
    timeout: Duration,
}

impl fmt::Debug for WebClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebClient").field("host", &self.host).field("port", &self.port).finish_non_exhaustive()
    }
}

impl WebClient {
    /// A client of the server at `host:port`, reached through `network`.
    pub fn new(network: Arc<dyn WebNetwork>, host: impl Into<String>, port: u16) -> Self {
        Self { network, host: host.into(), port, headers: HeaderMap::new(), timeout: DEFAULT_TIMEOUT }
    }

    /// Sends `name: value` with every request.
    ///
    /// # Panics
    ///
    /// When `name` or `value` is not a valid header name or value.
    #[must_use]
    pub fn header(mut self, name: &str, value: &str) -> Self {
        let name = HeaderName::from_bytes(name.as_bytes()).expect("a valid header name");
        self.headers.insert(name, HeaderValue::from_str(value).expect("a valid header value"));
        self
    }

    /// Gives up on a request after `timeout` (10 s by default).
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The server's `host:port`.
    pub fn authority(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// `GET path`.
    ///
    /// # Errors
    ///
    /// When the server cannot be reached or the exchange fails or times out.
    pub async fn get(&self, path: &str) -> Result<WebResponse> {
        self.send(Method::GET, path, None, Bytes::new()).await
    }

    /// `POST path` with `body` as JSON.
    ///
    /// # Errors
    ///
    /// When `body` cannot be serialized, the server cannot be reached, or the exchange fails.
    pub async fn post_json(&self, path: &str, body: &impl Serialize) -> Result<WebResponse> {
        let body = serde_json::to_vec(body).map_err(|e| Error::Config(format!("request body: {e}")))?;
        self.send(Method::POST, path, Some("application/json"), Bytes::from(body)).await
    }

    /// `method path` with a body of `content_type`.
    ///
    /// # Errors
    ///
    /// When the server cannot be reached or the exchange fails or times out.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        body: Bytes,
    ) -> Result<WebResponse> {
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, self.authority())
            .body(Full::new(body))
            .map_err(|e| Error::Config(format!("bad request {path:?}: {e}")))?;
        request.headers_mut().extend(self.headers.clone());
        if let Some(content_type) = content_type {
            let value = HeaderValue::from_str(content_type).map_err(|e| Error::Config(format!("content type: {e}")))?;
            request.headers_mut().insert(header::CONTENT_TYPE, value);
        }
        let exchange = async {
            let io = self
                .network
                .connect(&self.host, self.port)
                .await
                .map_err(|e| Error::transport(format!("cannot connect to http://{}: {e}", self.authority())))?;
            let (mut sender, connection) =
                hyper::client::conn::http1::handshake(TokioIo::new(io)).await.map_err(Error::transport)?;
            let driver = tokio::spawn(connection);
            let response = sender.send_request(request).await.map_err(Error::transport)?;
            let (parts, body) = response.into_parts();
            let body = body.collect().await.map_err(Error::transport)?.to_bytes();
            driver.abort();
            Ok(WebResponse { status: parts.status, headers: parts.headers, body })
        };
        tokio::time::timeout(self.timeout, exchange).await.map_err(|_| {
            Error::transport(format!("http://{}{path} did not answer within {:?}", self.authority(), self.timeout))
        })?
    }
}

/// An HTTP response, read to its end.
#[derive(Debug, Clone)]
pub struct WebResponse {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl WebResponse {
    /// The status code.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The headers.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// The header `name`, if present and text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The trace id lymph puts in `X-Trace-Id`.
    pub fn trace_id(&self) -> Option<&str> {
        self.header(super::TRACE_ID_HEADER)
    }

    /// The body.
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON into `T`.
    ///
    /// # Errors
    ///
    /// When the body is not JSON of that shape; the error quotes the body.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_slice(&self.body).map_err(|e| {
            Error::transport(format!("the response body is not the JSON expected ({e}): {:?}", self.text()))
        })
    }
}
