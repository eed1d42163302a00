//! The HTTP listener (axum). Handlers do not touch the tracer's state: they send a query to
//! the session loop, which answers between two ring-buffer drains, so the hot path needs no
//! locks and every answer reflects all records drained so far.

use std::net::SocketAddr;

use axum::{
    Router,
    extract::{Path, Query as UrlQuery, State},
    http::{HeaderMap, StatusCode, header},
    response::{Html, IntoResponse, Response},
    routing::{get, post},
};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

/// What a handler asks the session.
#[derive(Debug)]
pub enum Ask {
    Processes,
    Process(u32),
    Maps(u32),
    /// Compare the model of a process with /proc now (and heal it if it drifted).
    Check(u32),
    /// The metrics: Prometheus text exposition, or OpenMetrics when the scraper asked for it.
    Metrics {
        openmetrics: bool,
    },
    /// Mark a phase: snapshot every running traced process (or one).
    Phase {
        name: String,
        pid: Option<u32>,
    },
    /// The report (`--report`'s document) as of now.
    Report,
}

/// The session's answer.
#[derive(Debug)]
pub enum Answer {
    Json(Value),
    Text(String),
    /// The exposition and its Content-Type.
    Metrics(String, &'static str),
    NotFound(String),
    BadRequest(String),
    Failed(String),
}

pub struct Query {
    pub ask: Ask,
    pub reply: oneshot::Sender<Answer>,
}

#[derive(Clone)]
struct Api {
    queries: mpsc::Sender<Query>,
}

impl Api {
    async fn ask(&self, ask: Ask) -> Response {
        let (reply, answer) = oneshot::channel();
        if self.queries.send(Query { ask, reply }).await.is_err() {
            return (StatusCode::SERVICE_UNAVAILABLE, "tracer is shutting down\n").into_response();
        }
        match answer.await {
            Ok(Answer::Json(value)) => axum::Json(value).into_response(),
            Ok(Answer::Text(text)) => {
                ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response()
            }
            Ok(Answer::Metrics(text, content_type)) => {
                ([(header::CONTENT_TYPE, content_type)], text).into_response()
            }
            Ok(Answer::NotFound(what)) => {
                (StatusCode::NOT_FOUND, format!("{what}\n")).into_response()
            }
            Ok(Answer::BadRequest(why)) => {
                (StatusCode::BAD_REQUEST, format!("{why}\n")).into_response()
            }
            Ok(Answer::Failed(why)) => {
                (StatusCode::INTERNAL_SERVER_ERROR, format!("{why}\n")).into_response()
            }
            Err(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, "tracer is shutting down\n").into_response()
            }
        }
    }
}

const LANDING: &str = r#"<!doctype html>
<html><head><meta charset="utf-8"><title>tracer</title></head>
<body>
<h1>tracer</h1>
<p>Live allocation tracer: VMAs, heap and page faults of traced processes.</p>
<ul>
<li><a href="/metrics">/metrics</a>: Prometheus metrics</li>
<li><a href="/api/v1/processes">/api/v1/processes</a>: traced processes (JSON)</li>
<li>/api/v1/processes/{pid}: one process, with its VMAs and heap history (JSON)</li>
<li>/api/v1/processes/{pid}/maps: its reconstructed address space, in /proc/PID/maps format</li>
<li>POST /api/v1/processes/{pid}/check: compare the model with /proc now</li>
<li>POST /api/v1/phases?name=NAME[&amp;pid=PID]: mark a phase (snapshot of RSS, heap, VSZ,
VMAs, faults) for the report and <code>--check</code></li>
<li><a href="/api/v1/report">/api/v1/report</a>: the report (as <code>--report</code> writes it) as of now</li>
<li><a href="/healthz">/healthz</a></li>
</ul>
</body></html>
"#;

fn router(api: Api) -> Router {
    Router::new()
        .route("/", get(|| async { Html(LANDING) }))
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/metrics",
            get(|State(api): State<Api>, headers: HeaderMap| async move {
                let openmetrics = headers
                    .get_all(header::ACCEPT)
                    .iter()
                    .any(|v| crate::openmetrics::wanted(v.as_bytes()));
                api.ask(Ask::Metrics { openmetrics }).await
            }),
        )
        .route(
            "/api/v1/processes",
            get(|State(api): State<Api>| async move { api.ask(Ask::Processes).await }),
        )
        .route(
            "/api/v1/processes/{pid}",
            get(|State(api): State<Api>, Path(pid): Path<u32>| async move {
                api.ask(Ask::Process(pid)).await
            }),
        )
        .route(
            "/api/v1/processes/{pid}/maps",
            get(|State(api): State<Api>, Path(pid): Path<u32>| async move {
                api.ask(Ask::Maps(pid)).await
            }),
        )
        .route(
            "/api/v1/processes/{pid}/check",
            post(|State(api): State<Api>, Path(pid): Path<u32>| async move {
                api.ask(Ask::Check(pid)).await
            }),
        )
        .route(
            "/api/v1/phases",
            post(
                |State(api): State<Api>, UrlQuery(mark): UrlQuery<PhaseMark>| async move {
                    api.ask(Ask::Phase {
                        name: mark.name,
                        pid: mark.pid,
                    })
                    .await
                },
            ),
        )
        .route(
            "/api/v1/report",
            get(|State(api): State<Api>| async move { api.ask(Ask::Report).await }),
        )
        .with_state(api)
}

/// `POST /api/v1/phases?name=NAME[&pid=PID]`.
#[derive(serde::Deserialize)]
struct PhaseMark {
    name: String,
    pid: Option<u32>,
}

/// Binds `addr` and serves in the background; returns the query stream for the session and
/// the address actually bound (port 0 picks a free one).
pub async fn serve(addr: SocketAddr) -> std::io::Result<(mpsc::Receiver<Query>, SocketAddr)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let (queries, receiver) = mpsc::channel(64);
    let app = router(Api { queries });
    tokio::spawn(async move {
        if let Err(err) = axum::serve(listener, app).await {
            log::error!("HTTP server stopped: {err}");
        }
    });
    Ok((receiver, bound))
}
