//! The HTTP side of `--metrics-addr`: `GET /metrics` answers the exposition, anything else
//! 404 (or 405 for a method other than GET and HEAD). HTTP/1 only, which is what Prometheus
//! scrapes with; each connection on a task of its own.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

use super::exposition::{self, Metrics};

/// A client that has not sent its request headers by then is dropped: a stalled connection
/// must not hold a task forever. Prometheus sends them at once.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// After a failed accept (out of file descriptors, say), wait this long before the next one
/// rather than spin.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// The metrics address could not be listened on: nothing was started.
#[derive(Debug, thiserror::Error)]
#[error("cannot serve metrics on {addr} (--metrics-addr; choose a HOST:PORT free on this machine)")]
pub struct BindError {
    addr: String,
    #[source]
    source: std::io::Error,
}

/// Listens on `addr` (`HOST:PORT`) and serves `metrics` from a task of its own until the
/// process ends; returns the address bound (the port chosen, for port 0).
pub async fn serve(addr: &str, metrics: Arc<Metrics>) -> Result<SocketAddr, BindError> {
    let bind_error = |source| BindError {
        addr: addr.to_owned(),
        source,
    };
    let listener = TcpListener::bind(addr).await.map_err(bind_error)?;
    let bound = listener.local_addr().map_err(bind_error)?;
    tokio::spawn(async move {
        loop {
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::debug!("metrics: accepting a connection: {e}");
                    tokio::time::sleep(ACCEPT_RETRY).await;
                    continue;
                }
            };
            let metrics = Arc::clone(&metrics);
            tokio::spawn(async move {
                let service = service_fn(move |request: Request<Incoming>| {
                    let response = respond(&metrics, &request);
                    async move { Ok::<_, Infallible>(response) }
                });
                let served = http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(HEADER_TIMEOUT)
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
                if let Err(e) = served {
                    tracing::debug!("metrics: serving a connection: {e}");
                }
            });
        }
    });
    Ok(bound)
}

fn respond(metrics: &Metrics, request: &Request<Incoming>) -> Response<Full<Bytes>> {
    let (status, content_type, body) = match (request.method(), request.uri().path()) {
        (&Method::GET | &Method::HEAD, "/metrics") => {
            (StatusCode::OK, exposition::CONTENT_TYPE, metrics.encode())
        }
        (_, "/metrics") => (
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain; charset=utf-8",
            "GET /metrics\n".to_owned(),
        ),
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "switchyard serves its metrics at /metrics\n".to_owned(),
        ),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}
