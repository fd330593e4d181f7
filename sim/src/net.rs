//! HTTP over turmoil's simulated TCP: a listener the service's own serve
//! loop accepts from, and the kit's client transport over it (hyper, one
//! connection per request: reqwest cannot run inside turmoil).

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use testkit::{Answer, ApiRequest, NoAnswer, Reply, Transport};
use tokio::task::JoinHandle;

pub const PORT: u16 = 8080;

/// turmoil's listener as an `axum::serve::Listener`, so that the production
/// serve loop (`accounts::http::serve`) runs unchanged in the simulation.
pub struct SimListener(pub turmoil::net::TcpListener);

impl axum::serve::Listener for SimListener {
    type Io = turmoil::net::TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.0.accept().await {
                Ok(accepted) => return accepted,
                // As tokio's listener does in axum: an accept error is the
                // peer's problem; wait a little and go on accepting.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.0.local_addr()
    }
}

/// Aborts the connection task when the request is over, timed out or not:
/// turmoil TCP has no retransmission, so a connection that lost a message
/// would otherwise hang forever.
struct AbortOnDrop(Option<JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(task) = self.0.take() {
            task.abort();
        }
    }
}

/// The kit's client transport over turmoil TCP: one fresh connection per
/// request to a simulated host. (Here, not in the kit, so that turmoil stays
/// a dependency of the simulation only.) A caller's timeout drops the
/// exchange, and with it the connection task.
#[derive(Clone, Copy, Debug)]
pub struct TurmoilHost(pub &'static str);

impl Transport for TurmoilHost {
    async fn send(&self, request: ApiRequest) -> Reply {
        let mut connection = AbortOnDrop(None);
        exchange(self.0, request, &mut connection)
            .await
            .map_err(NoAnswer::Failed)
    }
}

async fn exchange(
    host: &str,
    request: ApiRequest,
    connection: &mut AbortOnDrop,
) -> Result<Answer, String> {
    let stream = turmoil::net::TcpStream::connect((host, PORT))
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let (mut sender, driver) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    connection.0 = Some(tokio::spawn(async move {
        // Its errors reach the request below as well.
        let _ = driver.await;
    }));
    let mut builder = Request::builder()
        .method(request.method)
        .uri(&request.target)
        .header(hyper::header::HOST, host);
    for (name, value) in &request.headers {
        builder = builder.header(name, value);
    }
    let request = builder
        .body(Full::new(Bytes::from(request.body)))
        .map_err(|e| format!("request: {e}"))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("send: {e}"))?;
    let (parts, body) = response.into_parts();
    let body = body
        .collect()
        .await
        .map_err(|e| format!("body: {e}"))?
        .to_bytes();
    Ok(Answer::new(parts.status, parts.headers, &body))
}
