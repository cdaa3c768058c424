//! HTTP requests to objects: an object's `fetch` method, reached with
//! [`ObjectStub::fetch`](crate::ObjectStub::fetch).
//!
//! [`Request`] and [`Response`] are the [`http`](https://docs.rs/http) crate's types with
//! [`Bytes`] bodies: a whole request in, a whole response out, as in Cloudflare's runtime
//! (where bodies are streams; here they are bounded by the wire's frame size when the object
//! lives in another process).
//!
//! ```
//! use durable_runtime::http::{Request, Response, StatusCode};
//! use durable_runtime::{durable_object, Context, ObjectStub, Result, Runtime};
//!
//! #[durable_object]
//! pub struct Counter { ctx: Context }
//!
//! #[durable_object]
//! impl Counter {
//!     pub fn new(ctx: Context) -> Self { Counter { ctx } }
//!
//!     pub async fn fetch(&mut self, request: Request) -> Result<Response> {
//!         let mut value: i64 = self.ctx.storage().get("value")?.unwrap_or(0);
//!         match request.uri().path() {
//!             "/increment" => value += 1,
//!             "/decrement" => value -= 1,
//!             "/" => {}
//!             _ => return Ok(Response::builder().status(StatusCode::NOT_FOUND).body("Not found".into())?),
//!         }
//!         self.ctx.storage_mut().put("value", &value)?;
//!         Ok(Response::new(value.to_string().into()))
//!     }
//! }
//!
//! #[tokio::main]
//! async fn main() -> Result<()> {
//!     let rt = Runtime::in_memory();
//!     let stub = rt.namespace::<Counter>().get_by_name("A");
//!     let request = Request::get("https://example.com/increment").body(Default::default())?;
//!     let response = ObjectStub::fetch(&stub, request).await?;
//!     assert_eq!(response.status(), StatusCode::OK);
//!     assert_eq!(response.body().as_ref(), b"1");
//!     Ok(())
//! }
//! ```

use serde::{Deserialize, Serialize};

pub use bytes::Bytes;
pub use http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri, Version};

use crate::error::{Error, Result};
use crate::sockets::{SocketId, SocketOffer, OFFER_SITE};

/// An HTTP request to an object: `http::Request<Bytes>`. (The parameter is there so that
/// `Request::builder()` and `Request::get(uri)` work as on `http::Request`.)
pub type Request<B = Bytes> = http::Request<B>;

/// An object's HTTP response: `http::Response<Bytes>`. (`Response::builder()` works as on
/// `http::Response`.)
pub type Response<B = Bytes> = http::Response<B>;

/// A class whose objects answer HTTP: implemented by `#[durable_object]` for a class with a
/// `fetch` method. Not meant to be implemented by hand.
#[doc(hidden)]
#[diagnostic::on_unimplemented(
    message = "`{Self}` has no `fetch` method",
    label = "`ObjectStub::fetch` sends an HTTP request to the object's `fetch` method",
    note = "add `pub async fn fetch(&mut self, request: Request) -> Result<Response>` to the `#[durable_object]` impl of `{Self}`"
)]
pub trait Fetch: crate::DurableObject {
    /// The call that runs `fetch(request)`.
    fn fetch_call(request: Request) -> crate::class::Call<Self::SharedCall, Self::ExclusiveCall>;

    /// `fetch`'s result, from the reply to that call.
    fn fetch_output(output: Self::Output) -> Result<Response>;
}

/// A request as it crosses the wire. Extensions stay behind (they are not data).
#[derive(Serialize, Deserialize)]
struct WireRequest {
    method: String,
    uri: String,
    version: u8,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
    /// The WebSocket an upgrade request offers (its holder is the sending peer).
    socket: Option<[u8; 16]>,
}

/// A response as it crosses the wire.
#[derive(Serialize, Deserialize)]
struct WireResponse {
    status: u16,
    version: u8,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
}

fn version_to_wire(version: Version) -> u8 {
    match version {
        Version::HTTP_09 => 9,
        Version::HTTP_10 => 10,
        Version::HTTP_2 => 20,
        Version::HTTP_3 => 30,
        _ => 11,
    }
}

fn version_from_wire(version: u8) -> Version {
    match version {
        9 => Version::HTTP_09,
        10 => Version::HTTP_10,
        20 => Version::HTTP_2,
        30 => Version::HTTP_3,
        _ => Version::HTTP_11,
    }
}

fn headers_to_wire(headers: &HeaderMap) -> Vec<(String, Vec<u8>)> {
    headers
        .iter()
        .map(|(name, value)| (name.as_str().to_owned(), value.as_bytes().to_vec()))
        .collect()
}

fn headers_from_wire(
    wire: Vec<(String, Vec<u8>)>,
    headers: &mut HeaderMap,
    bad: &impl Fn(String) -> Error,
) -> Result<()> {
    headers.reserve(wire.len());
    for (name, value) in wire {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| bad(format!("the header name {name:?} is invalid")))?;
        let value = HeaderValue::from_bytes(&value)
            .map_err(|_| bad(format!("the value of header {name} is invalid")))?;
        headers.append(name, value);
    }
    Ok(())
}

/// The wire codec of `fetch`, used by the code `#[durable_object]` generates: a request and
/// a `Result<Response>` in postcard, as plain fields (method, URI, version, headers, body).
#[doc(hidden)]
pub mod wire {
    use super::*;

    /// Appends the encoding of `request` to `out`.
    pub fn encode_request(request: &Request, out: &mut Vec<u8>) -> Result<()> {
        let wire = WireRequest {
            method: request.method().as_str().to_owned(),
            uri: request.uri().to_string(),
            version: version_to_wire(request.version()),
            headers: headers_to_wire(request.headers()),
            body: request.body().to_vec(),
            socket: request.extensions().get::<SocketOffer>().map(|o| o.id.0),
        };
        // The arguments of a call are a tuple: `fetch` has one.
        crate::wire::encode_value(&(wire,), out)
    }

    /// Decodes a request encoded by [`encode_request`].
    pub fn decode_request(class: &str, bytes: &[u8]) -> Result<Request> {
        let (wire,): (WireRequest,) =
            crate::wire::decode_value(class, "fetch", "arguments", bytes)?;
        let bad = |detail: String| {
            Error::invalid_argument(format!("a request to `{class}::fetch`: {detail}"))
        };
        let method = Method::from_bytes(wire.method.as_bytes())
            .map_err(|_| bad(format!("the method {:?} is invalid", wire.method)))?;
        let uri: Uri = wire
            .uri
            .parse()
            .map_err(|_| bad(format!("the URI {:?} is invalid", wire.uri)))?;
        let mut request = Request::new(Bytes::from(wire.body));
        *request.method_mut() = method;
        *request.uri_mut() = uri;
        *request.version_mut() = version_from_wire(wire.version);
        headers_from_wire(wire.headers, request.headers_mut(), &bad)?;
        if let Some(socket) = wire.socket {
            // Only a server decoding a front end's request knows the socket's holder.
            if OFFER_SITE.is_set() {
                let id = SocketId(socket);
                let holder = OFFER_SITE.with(|site| (site.0)(id));
                request
                    .extensions_mut()
                    .insert(SocketOffer::new(id, holder));
            }
        }
        Ok(request)
    }

    /// Appends the encoding of `fetch`'s result to `out`.
    pub fn encode_response(result: &Result<Response>, out: &mut Vec<u8>) -> Result<()> {
        let wire = result.as_ref().map(|response| WireResponse {
            status: response.status().as_u16(),
            version: version_to_wire(response.version()),
            headers: headers_to_wire(response.headers()),
            body: response.body().to_vec(),
        });
        crate::wire::encode_value(&wire, out)
    }

    /// Decodes `fetch`'s result encoded by [`encode_response`].
    pub fn decode_response(class: &str, bytes: &[u8]) -> Result<Result<Response>> {
        let wire: std::result::Result<WireResponse, Error> =
            crate::wire::decode_value(class, "fetch", "return value", bytes)?;
        let wire = match wire {
            Ok(wire) => wire,
            Err(e) => return Ok(Err(e)),
        };
        let bad = |detail: String| {
            Error::invalid_argument(format!("a response of `{class}::fetch`: {detail}"))
        };
        let status = StatusCode::from_u16(wire.status)
            .map_err(|_| bad(format!("the status {} is invalid", wire.status)))?;
        let mut response = Response::new(Bytes::from(wire.body));
        *response.status_mut() = status;
        *response.version_mut() = version_from_wire(wire.version);
        headers_from_wire(wire.headers, response.headers_mut(), &bad)?;
        Ok(Ok(response))
    }
}

#[cfg(test)]
mod tests {
    use super::wire::*;
    use super::*;

    #[test]
    fn requests_cross_the_wire_whole() {
        let request = Request::post("http://h/path?q=1")
            .header("x-a", "1")
            .header("x-a", "2")
            .header("content-type", "text/plain")
            .body(Bytes::from_static(b"hello"))
            .unwrap();
        let mut out = Vec::new();
        encode_request(&request, &mut out).unwrap();
        let back = decode_request("C", &out).unwrap();
        assert_eq!(back.method(), Method::POST);
        assert_eq!(back.uri(), "http://h/path?q=1");
        let values: Vec<_> = back.headers().get_all("x-a").iter().collect();
        assert_eq!(values, ["1", "2"]);
        assert_eq!(back.body().as_ref(), b"hello");
    }

    #[test]
    fn responses_and_errors_cross_the_wire() {
        let response = Response::builder()
            .status(418)
            .header("x-b", "z")
            .body(Bytes::from_static(b"tea"))
            .unwrap();
        let mut out = Vec::new();
        encode_response(&Ok(response), &mut out).unwrap();
        let back = decode_response("C", &out).unwrap().unwrap();
        assert_eq!(back.status(), 418);
        assert_eq!(back.headers()["x-b"], "z");
        assert_eq!(back.body().as_ref(), b"tea");

        let mut out = Vec::new();
        encode_response(&Err(Error::app("Nope", "no")), &mut out).unwrap();
        let err = decode_response("C", &out).unwrap().unwrap_err();
        assert_eq!(err.app_kind(), Some("Nope"));
    }

    #[test]
    fn malformed_messages_are_invalid_arguments() {
        let wire = WireRequest {
            method: "GET".into(),
            uri: "not a uri".into(),
            version: 11,
            headers: vec![],
            body: vec![],
            socket: None,
        };
        let mut out = Vec::new();
        crate::wire::encode_value(&(wire,), &mut out).unwrap();
        let err = decode_request("C", &out).unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::InvalidArgument);
        assert!(err.to_string().contains("URI"), "{err}");

        let wire = WireRequest {
            method: "GET".into(),
            uri: "/".into(),
            version: 11,
            headers: vec![("bad name".into(), b"v".to_vec())],
            body: vec![],
            socket: None,
        };
        let mut out = Vec::new();
        crate::wire::encode_value(&(wire,), &mut out).unwrap();
        let err = decode_request("C", &out).unwrap_err();
        assert!(err.to_string().contains("header name"), "{err}");

        assert!(decode_request("C", &[1, 2, 3]).is_err());
    }
}
