//! The talk's web service: an HTTP gateway to `echo`.
//!
//! `POST /echo/upper` with `{"text": "hi"}` calls `echo.upper` in the request's trace and
//! answers `{"text": "HI"}`; the trace id comes back in `X-Trace-Id`, and the same id is in the
//! log lines of the gateway, of `echo`, and of the listener that handles echo's event.

use std::sync::Arc;

use lymph::Context;
use lymph::web::routing::{get, post};
use lymph::web::{Json, Router, WebInterface};
use serde::{Deserialize, Serialize};

use crate::echo::EchoClient;

/// The JSON body of `/echo/upper`, in both directions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Text {
    /// The text.
    pub text: String,
}

/// The gateway: lymph class `web:Gateway`, installed as `web`.
#[derive(Debug, Clone, Default)]
pub struct Gateway;

impl WebInterface for Gateway {
    fn name(&self) -> &'static str {
        "web"
    }

    fn router(self: Arc<Self>) -> Router {
        Router::new().route("/echo/upper", post(upper)).route("/", get(index))
    }
}

async fn upper(ctx: Context, Json(body): Json<Text>) -> lymph::Result<Json<Text>> {
    tracing::info!(text = %body.text, "gateway: upper");
    let text = ctx.client::<EchoClient>().upper(body.text).await?;
    Ok(Json(Text { text }))
}

async fn index() -> &'static str {
    "lymph-rs talk gateway: POST /echo/upper {\"text\": ...}\n"
}
