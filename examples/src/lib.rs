//! Runnable programs for `durable`, and the pieces they are built from: the counter (below),
//! the chat ([`chat`]: `cargo run --example chat`, Cloudflare's workers-chat-demo with
//! WebSockets that hibernate), and what their binaries share ([`cli`]).
//!
//! `cargo run --example counter` serves Cloudflare's "Build a counter" Worker on
//! `127.0.0.1:8787`, route for route and byte for byte:
//!
//! | request                                  | answer                                           |
//! |------------------------------------------|--------------------------------------------------|
//! | `/increment?name=A`                      | `Durable Object 'A' count: N` (after adding 1)   |
//! | `/decrement?name=A`                      | `Durable Object 'A' count: N` (after taking 1)   |
//! | `/?name=A`                               | `Durable Object 'A' count: N`                    |
//! | no `name`, or an empty one               | [`SELECT_NAME`]                                  |
//! | another path, with a `name`              | 404 `Not found`                                  |
//!
//! plus the JSON routes of the hono version of the same service: `GET /:name/value`,
//! `POST /:name/increment`, `POST /:name/decrement`, each answering `{"value":N}`, and
//! `GET /metrics` ([`metrics_app`]): the runtime's counters for Prometheus.
//!
//! The router is [`counter_app`]; the object behind it is [`Counter`]:
//!
//! ```
//! use durable_examples::{counter_app, Counter};
//! use durable_runtime::Runtime;
//!
//! # #[tokio::main] async fn main() -> durable_runtime::Result<()> {
//! let rt = Runtime::in_memory(); // the example uses Runtime::builder().data_dir("./data")
//! let app: axum::Router = counter_app(rt.namespace::<Counter>());
//! // axum::serve(listener, app).await
//! # drop(app);
//! # rt.shutdown().await }
//! ```

#![warn(missing_docs)]

pub mod chat;
pub mod cli;

pub use chat::{chat_app, ChatRoom};

use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use durable_runtime::{durable_object, Context, Metrics, Namespace, Result, Runtime};

/// The seed's Counter: one integer per object, stored under the key `"value"`.
#[durable_object]
pub struct Counter {
    ctx: Context,
}

#[durable_object]
impl Counter {
    /// Activates the counter (its value stays in storage).
    pub fn new(ctx: Context) -> Self {
        Counter { ctx }
    }

    /// The current value; 0 if the counter has never been written.
    pub async fn get_counter_value(&self) -> Result<i64> {
        Ok(self.ctx.storage().get("value")?.unwrap_or(0))
    }

    /// Adds `amount` and returns the new value. Exclusive, so read-modify-write is safe.
    pub async fn increment(&mut self, amount: i64) -> Result<i64> {
        let value = self.ctx.storage().get::<i64>("value")?.unwrap_or(0) + amount;
        self.ctx.storage_mut().put("value", &value)?;
        Ok(value)
    }

    /// Subtracts `amount` and returns the new value.
    pub async fn decrement(&mut self, amount: i64) -> Result<i64> {
        let value = self.ctx.storage().get::<i64>("value")?.unwrap_or(0) - amount;
        self.ctx.storage_mut().put("value", &value)?;
        Ok(value)
    }
}

/// The answer to a request without a `name` (or with an empty one), as the seed words it.
pub const SELECT_NAME: &str = "Select a Durable Object to contact by using the `name` URL \
                               query string parameter, for example, ?name=A";

/// The `Content-Type` workerd gives `new Response(string)`.
pub const TEXT_PLAIN: &str = "text/plain;charset=UTF-8";

/// The `Content-Type` hono's `c.json(..)` sends.
pub const APPLICATION_JSON: &str = "application/json";

/// The counter service: the seed Worker's routes, with the hono JSON routes in front of them.
///
/// Every request that no JSON route takes (another path, or another method on a JSON path)
/// goes to the seed's logic, which, like the Worker's `fetch`, ignores the method.
pub fn counter_app(counters: Namespace<Counter>) -> Router {
    Router::new()
        .route("/{name}/value", get(json_value).fallback(seed))
        .route("/{name}/increment", post(json_increment).fallback(seed))
        .route("/{name}/decrement", post(json_decrement).fallback(seed))
        .fallback(seed)
        .with_state(counters)
}

/// `GET /metrics`: `rt`'s [`Metrics`] in the Prometheus text format, to merge into an app
/// (`counter_app(..).merge(metrics_app(rt))`). A runtime connected to an object server holds
/// no objects, so its counters stay at zero.
pub fn metrics_app(rt: Runtime) -> Router {
    Router::new().route(
        "/metrics",
        get(move || {
            let body = rt.metrics().to_prometheus();
            async move {
                (
                    [(
                        header::CONTENT_TYPE,
                        HeaderValue::from_static(Metrics::PROMETHEUS_CONTENT_TYPE),
                    )],
                    body,
                )
            }
        }),
    )
}

/// The seed Worker's `fetch`: the `name` check first, then the path.
async fn seed(
    State(counters): State<Namespace<Counter>>,
    request: Request<axum::body::Body>,
) -> Response {
    let uri = request.uri();
    let Some(name) = query_param(uri.query(), "name").filter(|name| !name.is_empty()) else {
        return text(StatusCode::OK, SELECT_NAME.to_owned());
    };
    let stub = counters.get(counters.id_from_name(&name));
    let count = match uri.path() {
        "/increment" => stub.increment(1).await,
        "/decrement" => stub.decrement(1).await,
        "/" => stub.get_counter_value().await,
        _ => return text(StatusCode::NOT_FOUND, "Not found".to_owned()),
    };
    match count {
        Ok(count) => text(
            StatusCode::OK,
            format!("Durable Object '{name}' count: {count}"),
        ),
        Err(e) => failure(&e),
    }
}

/// `GET /:name/value`.
async fn json_value(
    State(counters): State<Namespace<Counter>>,
    Path(name): Path<String>,
) -> Response {
    json(counters.get_by_name(&name).get_counter_value().await)
}

/// `POST /:name/increment`.
async fn json_increment(
    State(counters): State<Namespace<Counter>>,
    Path(name): Path<String>,
) -> Response {
    json(counters.get_by_name(&name).increment(1).await)
}

/// `POST /:name/decrement`.
async fn json_decrement(
    State(counters): State<Namespace<Counter>>,
    Path(name): Path<String>,
) -> Response {
    json(counters.get_by_name(&name).decrement(1).await)
}

/// The first value of `key` in a query string, decoded as `URLSearchParams.get` does
/// (`+` is a space, percent-escapes are UTF-8, invalid sequences become U+FFFD).
pub fn query_param(query: Option<&str>, key: &str) -> Option<String> {
    form_urlencoded::parse(query?.as_bytes())
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

fn text(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, HeaderValue::from_static(TEXT_PLAIN))],
        body,
    )
        .into_response()
}

fn json(value: Result<i64>) -> Response {
    match value {
        Ok(value) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static(APPLICATION_JSON),
            )],
            serde_json::json!({ "value": value }).to_string(),
        )
            .into_response(),
        Err(e) => failure(&e),
    }
}

/// A failed call: 503 when the object is overloaded or unavailable for now (retry later),
/// 500 otherwise, as an exception thrown from a Worker's `fetch` would give.
fn failure(e: &durable_runtime::Error) -> Response {
    tracing::warn!(error = %e, "counter call failed");
    // Overloaded, or transient (storage, a lost connection to the object server, in a
    // cluster no reachable owner of the object's shard, `ErrorKind::Unavailable`): 503.
    if e.is_overloaded() || e.is_retryable() {
        text(
            StatusCode::SERVICE_UNAVAILABLE,
            "Service Unavailable".to_owned(),
        )
    } else {
        text(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Internal Server Error".to_owned(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use durable_runtime::{Error, ErrorKind};

    /// An error of a kind only the runtime makes, as it crosses the wire.
    fn runtime_error(repr: serde_json::Value) -> Error {
        serde_json::from_value(repr).expect("an error's wire form")
    }

    #[tokio::test]
    async fn failed_calls_answer_503_when_a_retry_may_succeed_and_500_otherwise() {
        let unavailable = runtime_error(serde_json::json!({
            "Unavailable": "shard 17 has no reachable owner"
        }));
        assert_eq!(unavailable.kind(), ErrorKind::Unavailable);
        let overloaded = runtime_error(serde_json::json!("Overloaded"));
        assert_eq!(overloaded.kind(), ErrorKind::Overloaded);
        let disconnected = runtime_error(serde_json::json!({ "Disconnected": "reset" }));
        assert_eq!(disconnected.kind(), ErrorKind::Disconnected);
        let closed = runtime_error(serde_json::json!("Closed"));
        assert_eq!(closed.kind(), ErrorKind::Closed);
        for (error, status, body) in [
            (unavailable, 503, "Service Unavailable"),
            (overloaded, 503, "Service Unavailable"),
            (disconnected, 503, "Service Unavailable"),
            (Error::storage("disk full"), 503, "Service Unavailable"),
            (Error::app("Oops", "a bug"), 500, "Internal Server Error"),
            (closed, 500, "Internal Server Error"),
            (Error::internal("broken"), 500, "Internal Server Error"),
        ] {
            let response = failure(&error);
            assert_eq!(response.status().as_u16(), status, "{error:?}");
            assert_eq!(
                response.headers().get(header::CONTENT_TYPE).unwrap(),
                TEXT_PLAIN,
                "{error:?}"
            );
            let bytes = axum::body::to_bytes(response.into_body(), 1 << 10)
                .await
                .unwrap();
            assert_eq!(&bytes[..], body.as_bytes(), "{error:?}");
        }
    }
}
