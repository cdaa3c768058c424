//! Serving objects over HTTP with [axum](https://docs.rs/axum) (feature `axum`): one line
//! forwards a request to an object's `fetch`.
//!
//! ```
//! use axum::extract::{Path, Request, State};
//! use axum::response::Response;
//! use axum::routing::any;
//! use durable_runtime::http::{Request as ObjectRequest, Response as ObjectResponse};
//! use durable_runtime::{durable_object, Context, Namespace, Result, Runtime};
//!
//! #[durable_object]
//! pub struct Page { ctx: Context }
//!
//! #[durable_object]
//! impl Page {
//!     pub fn new(ctx: Context) -> Self { Page { ctx } }
//!
//!     pub async fn fetch(&mut self, request: ObjectRequest) -> Result<ObjectResponse> {
//!         let hits: u64 = self.ctx.storage().get("hits")?.unwrap_or(0) + 1;
//!         self.ctx.storage_mut().put("hits", &hits)?;
//!         Ok(ObjectResponse::new(format!("{} seen {hits} times", request.uri().path()).into()))
//!     }
//! }
//!
//! async fn page(State(pages): State<Namespace<Page>>, Path(name): Path<String>, request: Request) -> Response {
//!     durable_runtime::axum::forward(&pages.get_by_name(&name), request).await
//! }
//!
//! # #[tokio::main]
//! # async fn main() {
//! let rt = Runtime::in_memory();
//! let app: axum::Router = axum::Router::new()
//!     .route("/pages/{name}", any(page))
//!     .with_state(rt.namespace::<Page>());
//! # let _ = app;
//! # }
//! ```

use axum::body::Body;
use axum::response::{IntoResponse, Response};

use crate::error::ErrorKind;
use crate::http::{Fetch, Request as ObjectRequest, StatusCode};
use crate::stub::ObjectStub;

/// The largest request body [`forward`] reads: 16 MiB (the default frame bound of a
/// connection between runtimes). A larger body is answered 413.
pub const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// Sends `request` to the object behind `stub` (its `fetch` method) and answers with its
/// response: in this process, or across the connection to the object's runtime.
///
/// The body is read whole first (at most [`MAX_BODY_BYTES`]; more is answered 413). When the
/// call fails, the error is logged (with `tracing`) and the client gets a status without
/// the error's text: 503 (with `Retry-After: 1`) when retrying may succeed (overloaded,
/// disconnected, shutting down), 504 for a timeout, 500 otherwise.
///
/// Dropping the future stops waiting: a request already sent still runs and commits.
pub async fn forward<S>(stub: &S, request: axum::extract::Request) -> Response
where
    S: ObjectStub,
    S::Object: Fetch,
{
    let (parts, body) = request.into_parts();
    let body = match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
        Ok(body) => body,
        Err(_) => {
            return (
                StatusCode::PAYLOAD_TOO_LARGE,
                "request body too large or unreadable\n",
            )
                .into_response()
        }
    };
    let mut request = ObjectRequest::new(body);
    *request.method_mut() = parts.method;
    *request.uri_mut() = parts.uri;
    *request.version_mut() = parts.version;
    *request.headers_mut() = parts.headers;
    match stub.fetch(request).await {
        Ok(response) => response.map(Body::from),
        Err(err) => {
            tracing::warn!(id = %stub.id(), error = %err, "forwarding a request to an object failed");
            let status = if err.kind() == ErrorKind::Timeout {
                StatusCode::GATEWAY_TIMEOUT
            } else if err.is_retryable() || err.is_overloaded() || err.kind() == ErrorKind::Closed {
                StatusCode::SERVICE_UNAVAILABLE
            } else {
                StatusCode::INTERNAL_SERVER_ERROR
            };
            let mut response =
                (status, status.canonical_reason().unwrap_or("error")).into_response();
            if status == StatusCode::SERVICE_UNAVAILABLE {
                response
                    .headers_mut()
                    .insert("retry-after", crate::http::HeaderValue::from_static("1"));
            }
            response
        }
    }
}
