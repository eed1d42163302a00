//! The HTTP listener (axum). Handlers do not touch the tracer's state: they send a query to
//! the session loop, which answers between two ring-buffer drains, so the hot path needs no
//! locks and every answer reflects all records drained so far.

use std::time::Duration;

use axum::{
    Extension, Router,
    extract::{Path, Query as UrlQuery, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use crate::{
    server::access::{Access, Policy},
    server::listener::{self, ListenAddr},
};

/// How long a request waits for the session's answer before it gets a 503.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// What a handler asks the session.
#[derive(Debug)]
pub enum Ask {
    Processes,
    /// One process's detail; with `running_only`, not once it has exited (`Access::Owner`).
    Process {
        pid: u32,
        running_only: bool,
    },
    Maps {
        pid: u32,
        running_only: bool,
    },
    /// Compare the model of a process with /proc now (and heal it if it drifted).
    Check {
        pid: u32,
        running_only: bool,
    },
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
    /// The call-site profile (`--stacks`) of one process or of all, gzip'ed pprof, or
    /// with `folded` the folded stacks of its default type.
    Pprof {
        pid: Option<u32>,
        running_only: bool,
        default_type: &'static str,
        folded: bool,
    },
}

/// Whether a request may only see running processes (see `Access::Owner`).
fn owner_only(access: Option<Extension<Access>>) -> bool {
    access.is_some_and(|Extension(a)| a == Access::Owner)
}

/// The session's answer.
#[derive(Debug)]
pub enum Answer {
    Json(Value),
    /// JSON already serialised.
    JsonText(String),
    Text(String),
    /// The exposition and its Content-Type.
    Metrics(String, &'static str),
    NotFound(String),
    BadRequest(String),
    /// A limit was reached (the phase table of a process is full): nothing was changed.
    TooMany(String),
    Failed(String),
    /// A binary body and its Content-Type.
    Bytes(Vec<u8>, &'static str),
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
    /// The session's answer, or the response to give when it is shutting down or did not
    /// answer in time.
    async fn answer(&self, ask: Ask) -> Result<Answer, Response> {
        let (reply, answer) = oneshot::channel();
        let asked = async {
            self.queries.send(Query { ask, reply }).await.ok()?;
            answer.await.ok()
        };
        match tokio::time::timeout(REQUEST_TIMEOUT, asked).await {
            Ok(Some(answer)) => Ok(answer),
            Ok(None) => {
                Err((StatusCode::SERVICE_UNAVAILABLE, "tracer is shutting down\n").into_response())
            }
            Err(_) => Err((
                StatusCode::SERVICE_UNAVAILABLE,
                "the tracer did not answer in time\n",
            )
                .into_response()),
        }
    }

    async fn ask(&self, ask: Ask) -> Response {
        let answer = match self.answer(ask).await {
            Ok(answer) => answer,
            Err(response) => return response,
        };
        match answer {
            Answer::Json(value) => axum::Json(value).into_response(),
            Answer::Text(text) => {
                ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response()
            }
            Answer::JsonText(text) => {
                ([(header::CONTENT_TYPE, "application/json")], text).into_response()
            }
            Answer::Metrics(text, content_type) => {
                ([(header::CONTENT_TYPE, content_type)], text).into_response()
            }
            Answer::NotFound(what) => (StatusCode::NOT_FOUND, format!("{what}\n")).into_response(),
            Answer::BadRequest(why) => {
                (StatusCode::BAD_REQUEST, format!("{why}\n")).into_response()
            }
            Answer::TooMany(why) => {
                (StatusCode::TOO_MANY_REQUESTS, format!("{why}\n")).into_response()
            }
            Answer::Failed(why) => {
                (StatusCode::INTERNAL_SERVER_ERROR, format!("{why}\n")).into_response()
            }
            Answer::Bytes(body, content_type) => {
                ([(header::CONTENT_TYPE, content_type)], body).into_response()
            }
        }
    }

    /// The process list; without authorization, without the executables' paths (which
    /// /proc/PID/exe shows only to the owner).
    async fn processes(&self, access: Access) -> Response {
        match self.answer(Ask::Processes).await {
            Ok(Answer::Json(mut value)) => {
                if access != Access::Full
                    && let Some(list) = value["processes"].as_array_mut()
                {
                    for p in list {
                        if let Some(p) = p.as_object_mut() {
                            p.remove("exe");
                        }
                    }
                }
                axum::Json(value).into_response()
            }
            Ok(other) => {
                log::error!("unexpected answer to the process list: {other:?}");
                StatusCode::INTERNAL_SERVER_ERROR.into_response()
            }
            Err(response) => response,
        }
    }
}

fn router(api: Api) -> Router {
    Router::new()
        .route("/", get(|| async { crate::views::page::live() }))
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/metrics",
            get(|State(api): State<Api>, headers: HeaderMap| async move {
                let openmetrics = headers
                    .get_all(header::ACCEPT)
                    .iter()
                    .any(|v| crate::views::openmetrics::wanted(v.as_bytes()));
                api.ask(Ask::Metrics { openmetrics }).await
            }),
        )
        .route(
            "/api/v1/processes",
            get(
                |State(api): State<Api>, access: Option<Extension<Access>>| async move {
                    let access = access.map_or(Access::Public, |Extension(a)| a);
                    api.processes(access).await
                },
            ),
        )
        .route(
            "/api/v1/processes/{pid}",
            get(
                |State(api): State<Api>,
                 Path(pid): Path<u32>,
                 access: Option<Extension<Access>>| async move {
                    let running_only = owner_only(access);
                    api.ask(Ask::Process { pid, running_only }).await
                },
            ),
        )
        .route(
            "/api/v1/processes/{pid}/maps",
            get(
                |State(api): State<Api>,
                 Path(pid): Path<u32>,
                 access: Option<Extension<Access>>| async move {
                    let running_only = owner_only(access);
                    api.ask(Ask::Maps { pid, running_only }).await
                },
            ),
        )
        .route(
            "/api/v1/processes/{pid}/check",
            post(
                |State(api): State<Api>,
                 Path(pid): Path<u32>,
                 access: Option<Extension<Access>>| async move {
                    let running_only = owner_only(access);
                    api.ask(Ask::Check { pid, running_only }).await
                },
            ),
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
        .route(
            "/debug/pprof/{profile}",
            get(
                |State(api): State<Api>,
                 Path(profile): Path<String>,
                 UrlQuery(q): UrlQuery<PprofQuery>,
                 access: Option<Extension<Access>>| async move {
                    // Go's names: `heap` shows the memory in use first, `allocs` all mapped.
                    let default_type = match profile.as_str() {
                        "heap" => "inuse_space",
                        "allocs" => "alloc_space",
                        "faults" => "faults",
                        _ => {
                            return (StatusCode::NOT_FOUND, "profiles: heap, allocs, faults\n")
                                .into_response();
                        }
                    };
                    let folded = match q.format.as_deref() {
                        None | Some("proto") => false,
                        Some("folded") => true,
                        Some(_) => {
                            return (StatusCode::BAD_REQUEST, "format: proto, folded\n")
                                .into_response();
                        }
                    };
                    let running_only = owner_only(access);
                    api.ask(Ask::Pprof {
                        pid: q.pid,
                        running_only,
                        default_type,
                        folded,
                    })
                    .await
                },
            ),
        )
        .with_state(api)
}

/// `GET /debug/pprof/{heap,allocs,faults}[?pid=PID][&format=folded]` (`seconds` and other
/// parameters that scrapers send are ignored: the profile is cumulative).
#[derive(serde::Deserialize)]
struct PprofQuery {
    pid: Option<u32>,
    format: Option<String>,
}

/// `POST /api/v1/phases?name=NAME[&pid=PID]`.
#[derive(serde::Deserialize)]
struct PhaseMark {
    name: String,
    pid: Option<u32>,
}

/// Binds `addr` and serves it from a thread of its own (see `listener`); returns the query
/// stream for the session and the address actually bound (port 0 picks a free one).
pub fn serve(
    addr: &ListenAddr,
    policy: Policy,
) -> std::io::Result<(mpsc::Receiver<Query>, ListenAddr)> {
    let (bound, local) = listener::bind(addr)?;
    let (queries, receiver) = mpsc::channel(64);
    listener::spawn(bound, router(Api { queries }), policy)?;
    Ok((receiver, local))
}
