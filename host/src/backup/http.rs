//! object_store's HTTP client for S3, on the host's own hyper and rustls (ring, the machine's CA
//! certificates, as outbound requests use): no second HTTP and TLS stack to build and keep.

use async_trait::async_trait;
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector as PlainConnector;
use hyper_util::rt::TokioExecutor;
use object_store::ClientOptions;
use object_store::client::{
    HttpClient, HttpConnector, HttpError, HttpErrorKind, HttpRequest, HttpRequestBody, HttpResponse, HttpResponseBody,
    HttpService,
};
use std::time::Duration;

/// How long one request to the store may take, connecting included (a batch is a few MiB at
/// most; object_store retries a failed request, and the flusher the whole batch).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Default)]
pub struct Connector;

impl HttpConnector for Connector {
    fn connect(&self, _options: &ClientOptions) -> object_store::Result<HttpClient> {
        let tls = crate::outbound::tls_config().map_err(|e| object_store::Error::Generic {
            store: "S3",
            source: format!("TLS for the backup store: {e}").into(),
        })?;
        let mut plain = PlainConnector::new();
        plain.enforce_http(false);
        plain.set_connect_timeout(Some(CONNECT_TIMEOUT));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config((*tls).clone())
            .https_or_http()
            .enable_http1()
            .wrap_connector(plain);
        Ok(HttpClient::new(Service { client: Client::builder(TokioExecutor::new()).build(https) }))
    }
}

#[derive(Debug)]
struct Service {
    client: Client<hyper_rustls::HttpsConnector<PlainConnector>, HttpRequestBody>,
}

#[async_trait]
impl HttpService for Service {
    async fn call(&self, request: HttpRequest) -> Result<HttpResponse, HttpError> {
        let response = tokio::time::timeout(REQUEST_TIMEOUT, self.client.request(request))
            .await
            .map_err(|_| HttpError::new(HttpErrorKind::Timeout, TimedOut))?
            .map_err(|e| {
                let kind = if e.is_connect() { HttpErrorKind::Connect } else { HttpErrorKind::Request };
                HttpError::new(kind, e)
            })?;
        Ok(response.map(|body| HttpResponseBody::new(body.map_err(|e| HttpError::new(HttpErrorKind::Interrupted, e)))))
    }
}

#[derive(Debug)]
struct TimedOut;

impl std::fmt::Display for TimedOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "no answer from the backup store within {REQUEST_TIMEOUT:?}")
    }
}

impl std::error::Error for TimedOut {}
