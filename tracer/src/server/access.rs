//! Who may see what through the HTTP API.
//!
//! The tracer holds the address space of every traced process, which the kernel shows only to
//! their owner (and root) in `/proc/PID/maps`. The API shows no more by default:
//!
//! - public, to any client: the landing page, `/healthz`, `/metrics` and the process list
//!   (pid, comm, counters: what `/proc/PID/stat` shows everyone), without the `exe` paths;
//! - restricted: a process's detail, its maps, the report (file names, argv, ASLR bases) and
//!   every `POST`. Over a Unix socket (`--listen unix:PATH`) the peer's credentials
//!   (`SO_PEERCRED`) are checked against the process asked about as `ptrace_may_access`
//!   would; over TCP only a client with the bearer token `tracer run` hands its command
//!   (`TRACER_API_TOKEN`), or any client with `--trust-tcp-clients`.
//!
//! With `--web-config` (TLS, basic auth: see `webconfig`), a TCP client that passes basic auth
//! or presents a certificate the client CA verified sees everything; with users configured,
//! every request needs one (401).
//!
//! Where `/proc` hides other users' processes (`hidepid=1|2|4`), an unprivileged user cannot
//! list their pids, comms or counters there, so the process list and `/metrics` are restricted
//! too (as for every traced process: the Unix socket's root, the token, `--web-config` or
//! `--trust-tcp-clients`); only the landing page and `/healthz` stay public.
//!
//! A loopback TCP listener also refuses a foreign `Host` (421), so a web page cannot read it by
//! DNS rebinding, and every `POST` over TCP must carry a header a browser sends only after a
//! CORS preflight (which the API never grants): `Authorization` or `Content-Type:
//! application/json`.

use std::net::SocketAddr;

use axum::http::{Method, Request, StatusCode, header};

/// Who is on the other end of a connection.
#[derive(Clone, Debug)]
pub enum Peer {
    /// `client_cert`: over TLS, with a certificate the configured client CA verified.
    Tcp {
        local: SocketAddr,
        client_cert: bool,
    },
    Unix {
        uid: u32,
        gid: u32,
        pid: i32,
    },
}

/// What a client may see, decided per request (an extension on the request).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Only the public routes; the process list without `exe`.
    Public,
    /// A Unix-socket peer allowed one process's routes as its owner (`may_read`): only while
    /// that process runs. Once it has exited its pid can be handed to anybody, whose
    /// ownership would then lend them the dead process's layout.
    Owner,
    /// Everything.
    Full,
}

/// The API's access settings.
#[derive(Clone, Debug, Default)]
pub struct Policy {
    /// `--web-config`: TLS and basic-auth users.
    pub web: Option<crate::server::webconfig::WebConfig>,
    /// `--trust-tcp-clients`: every TCP client sees everything.
    pub trust_tcp: bool,
    /// A bearer token that grants full access (`tracer run` gives it to CMD).
    pub token: Option<String>,
    /// The `hidepid=` option of the `/proc` the tracer sees, when it hides processes.
    pub hidepid: Option<String>,
}

/// A refusal: the status and the text to answer with.
#[derive(Debug, PartialEq, Eq)]
pub struct Refusal {
    pub status: StatusCode,
    pub message: String,
}

fn refuse(status: StatusCode, message: impl Into<String>) -> Refusal {
    Refusal {
        status,
        message: message.into(),
    }
}

/// Whether basic auth is configured (`--web-config` with users).
pub fn basic_auth_required(policy: &Policy) -> bool {
    policy.web.as_ref().is_some_and(|w| w.users.required())
}

/// The user and password of an `Authorization: Basic` header.
pub fn basic_credentials<B>(request: &Request<B>) -> Option<(String, Vec<u8>)> {
    use base64::Engine as _;
    let value = request.headers().get(header::AUTHORIZATION)?.as_bytes();
    let (scheme, encoded) = value.split_at(value.iter().position(|&b| b == b' ')?);
    if !scheme.eq_ignore_ascii_case(b"basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim_ascii())
        .ok()?;
    let colon = decoded.iter().position(|&b| b == b':')?;
    let user = String::from_utf8(decoded[..colon].to_vec()).ok()?;
    Some((user, decoded[colon + 1..].to_vec()))
}

/// Which processes a restricted route reveals or changes.
#[derive(Debug, PartialEq, Eq)]
enum Scope {
    Public,
    Process(u32),
    /// Every traced process (the report, a phase of all processes).
    All,
}

/// The process a `pid` query parameter names, if any.
fn pid_parameter(query: Option<&str>) -> Option<Option<u32>> {
    let query = query?;
    query
        .split('&')
        .find_map(|kv| kv.strip_prefix("pid="))
        .map(|v| v.parse().ok())
}

/// Fails closed: only the listed public routes are public; any other path (an unknown one
/// too, however it is spelt) needs authorization before the router sees it.
/// `proc_hides`: `/proc` hides other users' processes, so the lists of processes are no longer
/// public.
fn scope(method: &Method, path: &str, query: Option<&str>, proc_hides: bool) -> Scope {
    let pid_of = |p: &str| p.parse::<u32>().ok();
    match path {
        "/" | "/healthz" if method != Method::POST => Scope::Public,
        "/metrics" | "/api/v1/processes" if method != Method::POST && !proc_hides => Scope::Public,
        "/api/v1/phases" | "/debug/pprof/heap" | "/debug/pprof/allocs" | "/debug/pprof/faults" => {
            match pid_parameter(query) {
                Some(Some(pid)) => Scope::Process(pid),
                // An unreadable pid parameter is refused by the handler; authorise as for all.
                _ => Scope::All,
            }
        }
        _ => match path
            .strip_prefix("/api/v1/processes/")
            .and_then(|rest| rest.split('/').next())
            .and_then(pid_of)
        {
            Some(pid) => Scope::Process(pid),
            None => Scope::All,
        },
    }
}

/// Whether `host` (a Host header value) is `localhost` or an IP address. DNS rebinding, the
/// attack this check stops, needs a name the attacker controls; an address literal cannot be
/// rebound (a page whose origin is that address is served by that address), and allowing any
/// lets a proxy in front of the loopback listener (a sidecar) pass its own address on.
fn host_is_local(host: &str) -> bool {
    let name = if let Some(bracketed) = host.strip_prefix('[') {
        match bracketed.split_once(']') {
            Some((name, port)) if port.is_empty() || port.starts_with(':') => name,
            _ => return false,
        }
    } else {
        match host.rsplit_once(':') {
            Some((name, _port)) if !name.contains(':') => name,
            Some(_) => host,
            None => host,
        }
    };
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    name == "localhost" || name.ends_with(".localhost") || name.parse::<std::net::IpAddr>().is_ok()
}

/// Whether the request carries a header no CORS "simple request" can have.
fn preflighted(headers: &axum::http::HeaderMap) -> bool {
    if headers.contains_key(header::AUTHORIZATION) {
        return true;
    }
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"))
}

/// Compares without leaking through timing how much of the token matched.
fn same_token(given: &[u8], token: &[u8]) -> bool {
    given.len() == token.len() && given.iter().zip(token).fold(0u8, |d, (a, b)| d | (a ^ b)) == 0
}

fn bearer<B>(request: &Request<B>) -> Option<&[u8]> {
    let value = request.headers().get(header::AUTHORIZATION)?.as_bytes();
    let (scheme, token) = value.split_at(value.iter().position(|&b| b == b' ')?);
    scheme
        .eq_ignore_ascii_case(b"bearer")
        .then(|| token.trim_ascii())
}

const HOW_TCP: &str = "this route shows what /proc shows only to the process's owner: ask over \
     the Unix socket (tracer --listen unix:PATH, as the process's owner or root), with the \
     token tracer run gives its command (Authorization: Bearer $TRACER_API_TOKEN), or start \
     the tracer with --trust-tcp-clients on a machine where every local user may see every \
     traced process";

/// Why a TCP client is refused, and what to do.
fn how_tcp(policy: &Policy, path: &str) -> String {
    match &policy.hidepid {
        Some(mode) if matches!(path, "/metrics" | "/api/v1/processes") => format!(
            "/proc is mounted hidepid={mode} on this host, so the traced processes are not \
             listed to anonymous clients either: {HOW_TCP}"
        ),
        _ => HOW_TCP.to_string(),
    }
}

/// Decides a request: the access it gets, or why it is refused. `basic_ok`: whether its basic
/// auth credentials were those of a configured user (checked beforehand: bcrypt blocks).
pub fn decide<B>(
    policy: &Policy,
    peer: &Peer,
    request: &Request<B>,
    basic_ok: bool,
) -> Result<Access, Refusal> {
    let method = request.method();
    let path = request.uri().path();
    let scope = scope(
        method,
        path,
        request.uri().query(),
        policy.hidepid.is_some(),
    );
    match peer {
        Peer::Tcp { local, client_cert } => {
            // to_canonical: on a dual-stack listener an IPv4 client of 127.0.0.1 arrives at
            // ::ffff:127.0.0.1, which is_loopback() alone does not call loopback.
            if local.ip().to_canonical().is_loopback() {
                let host = request
                    .headers()
                    .get(header::HOST)
                    .and_then(|h| h.to_str().ok())
                    .or_else(|| request.uri().authority().map(|a| a.as_str()));
                if let Some(host) = host
                    && !host_is_local(host)
                {
                    return Err(refuse(
                        StatusCode::MISDIRECTED_REQUEST,
                        "this API answers only requests addressed to the loopback address it \
                         listens on (Host: localhost or an IP address, not a name)",
                    ));
                }
            }
            if basic_auth_required(policy) && !basic_ok {
                return Err(refuse(
                    StatusCode::UNAUTHORIZED,
                    "this API needs a user of its web config (basic auth)",
                ));
            }
            if method == Method::POST && !preflighted(request.headers()) {
                return Err(refuse(
                    StatusCode::FORBIDDEN,
                    "a POST needs an Authorization header or Content-Type: application/json",
                ));
            }
            let token_ok = policy
                .token
                .as_deref()
                .zip(bearer(request))
                .is_some_and(|(token, given)| same_token(given, token.as_bytes()));
            let full = policy.trust_tcp || token_ok || basic_ok || *client_cert;
            if bearer(request).is_some() && !token_ok && !policy.trust_tcp {
                return Err(refuse(StatusCode::UNAUTHORIZED, "wrong API token"));
            }
            match (scope, full) {
                (_, true) => Ok(Access::Full),
                (Scope::Public, false) => Ok(Access::Public),
                (_, false) => Err(refuse(StatusCode::FORBIDDEN, how_tcp(policy, path))),
            }
        }
        Peer::Unix { uid, gid, pid } => {
            let admin = crate::server::peercred::is_admin(*uid, *pid);
            let allowed = match scope {
                Scope::Public => true,
                _ if admin => true,
                Scope::Process(target) => crate::server::peercred::may_read(*uid, *gid, target),
                Scope::All => false,
            };
            if !allowed {
                return Err(refuse(
                    StatusCode::FORBIDDEN,
                    match scope {
                        Scope::All => {
                            "this route shows every traced process: only root (or \
                                       CAP_SYS_PTRACE) may use it; ask about one process \
                                       (e.g. ?pid=PID) as its owner"
                        }
                        _ => {
                            "you may not read this process's memory layout (as with \
                              /proc/PID/maps: ask as its owner or root)"
                        }
                    },
                ));
            }
            Ok(match scope {
                _ if admin => Access::Full,
                Scope::Process(_) => Access::Owner,
                _ => Access::Public,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: &str, uri: &str, headers: &[(&str, &str)]) -> Request<()> {
        let mut builder = Request::builder().method(method).uri(uri);
        for (k, v) in headers {
            builder = builder.header(*k, *v);
        }
        builder.body(()).unwrap()
    }

    fn tcp() -> Peer {
        Peer::Tcp {
            local: "127.0.0.1:19410".parse().unwrap(),
            client_cert: false,
        }
    }

    #[test]
    fn a_foreign_host_on_loopback_is_misdirected() {
        let policy = Policy::default();
        for host in [
            "attacker.example",
            "attacker.example:19410",
            "127.0.0.1.nip.io",
            "[::1",
            "[attacker.example]:1",
        ] {
            let r = request("GET", "/metrics", &[("host", host)]);
            let refused = decide(&policy, &tcp(), &r, false).unwrap_err();
            assert_eq!(refused.status, StatusCode::MISDIRECTED_REQUEST, "{host}");
        }
        for host in [
            "localhost",
            "127.0.0.1:19410",
            "[::1]:19410",
            "[::1]",
            "LOCALHOST:1",
        ] {
            let r = request("GET", "/metrics", &[("host", host)]);
            assert_eq!(
                decide(&policy, &tcp(), &r, false),
                Ok(Access::Public),
                "{host}"
            );
        }
        // On a non-loopback listener the name is not known: no check.
        let wide = Peer::Tcp {
            local: "10.1.2.3:19410".parse().unwrap(),
            client_cert: false,
        };
        let r = request("GET", "/metrics", &[("host", "tracer.monitoring.svc")]);
        assert_eq!(decide(&policy, &wide, &r, false), Ok(Access::Public));
    }

    #[test]
    fn restricted_routes_need_authorization_over_tcp() {
        let policy = Policy {
            token: Some("s3cret".into()),
            ..Policy::default()
        };
        let host = ("host", "127.0.0.1");
        for uri in [
            "/api/v1/processes/1",
            "/api/v1/processes/1/maps",
            "/api/v1/report",
        ] {
            let refused =
                decide(&policy, &tcp(), &request("GET", uri, &[host]), false).unwrap_err();
            assert_eq!(refused.status, StatusCode::FORBIDDEN, "{uri}");
            assert!(refused.message.contains("--listen unix:"), "{uri}");
            let with_token = request("GET", uri, &[host, ("authorization", "Bearer s3cret")]);
            assert_eq!(
                decide(&policy, &tcp(), &with_token, false),
                Ok(Access::Full)
            );
            let wrong = request("GET", uri, &[host, ("authorization", "Bearer s3cre")]);
            assert_eq!(
                decide(&policy, &tcp(), &wrong, false).unwrap_err().status,
                StatusCode::UNAUTHORIZED
            );
        }
        let trusting = Policy {
            trust_tcp: true,
            ..Policy::default()
        };
        let r = request("GET", "/api/v1/report", &[host]);
        assert_eq!(decide(&trusting, &tcp(), &r, false), Ok(Access::Full));
    }

    #[test]
    fn with_web_config_users_every_request_needs_one_and_they_see_everything() {
        let hash = bcrypt::hash("pw", 4).unwrap();
        let text = format!("basic_auth_users:\n  prom: '{hash}'\n");
        let policy = Policy {
            web: Some(crate::server::webconfig::parse(&text, std::path::Path::new(".")).unwrap()),
            ..Policy::default()
        };
        let host = ("host", "127.0.0.1");
        // "prom:pw" and "prom:no" in base64.
        let good = request(
            "GET",
            "/api/v1/report",
            &[host, ("authorization", "Basic cHJvbTpwdw==")],
        );
        let (user, password) = basic_credentials(&good).unwrap();
        assert_eq!((user.as_str(), password.as_slice()), ("prom", &b"pw"[..]));
        let checked = policy.web.as_ref().unwrap().users.check(&user, &password);
        assert_eq!(decide(&policy, &tcp(), &good, checked), Ok(Access::Full));
        let bad = request(
            "GET",
            "/metrics",
            &[host, ("authorization", "Basic cHJvbTpubw==")],
        );
        let (user, password) = basic_credentials(&bad).unwrap();
        let checked = policy.web.as_ref().unwrap().users.check(&user, &password);
        assert!(!checked);
        let refused = decide(&policy, &tcp(), &bad, checked).unwrap_err();
        assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
        let none = request("GET", "/metrics", &[host]);
        assert_eq!(
            decide(&policy, &tcp(), &none, false).unwrap_err().status,
            StatusCode::UNAUTHORIZED
        );
        // A client certificate verified by the client CA (no users configured).
        let cert = Peer::Tcp {
            local: "127.0.0.1:19410".parse().unwrap(),
            client_cert: true,
        };
        let r = request("GET", "/api/v1/report", &[host]);
        assert_eq!(
            decide(&Policy::default(), &cert, &r, false),
            Ok(Access::Full)
        );
    }

    #[test]
    fn a_post_is_never_a_simple_request() {
        let trusting = Policy {
            trust_tcp: true,
            ..Policy::default()
        };
        let host = ("host", "127.0.0.1");
        for ct in [
            None,
            Some("text/plain"),
            Some("application/x-www-form-urlencoded"),
        ] {
            let mut headers = vec![host];
            headers.extend(ct.map(|c| ("content-type", c)));
            let r = request("POST", "/api/v1/phases?name=x", &headers);
            let refused = decide(&trusting, &tcp(), &r, false).unwrap_err();
            assert_eq!(refused.status, StatusCode::FORBIDDEN, "{ct:?}");
        }
        let json = request(
            "POST",
            "/api/v1/phases?name=x",
            &[host, ("content-type", "application/json")],
        );
        assert_eq!(decide(&trusting, &tcp(), &json, false), Ok(Access::Full));
        // Preflighted but not authorised: still refused by default.
        let refused = decide(&Policy::default(), &tcp(), &json, false).unwrap_err();
        assert_eq!(refused.status, StatusCode::FORBIDDEN);
    }

    fn scope_of(method: &Method, path: &str, query: Option<&str>) -> Scope {
        scope(method, path, query, false)
    }

    #[test]
    fn where_proc_hides_pids_the_process_lists_are_restricted() {
        let policy = Policy {
            hidepid: Some("invisible".into()),
            token: Some("s3cret".into()),
            ..Policy::default()
        };
        let host = ("host", "127.0.0.1");
        for uri in ["/metrics", "/api/v1/processes"] {
            let refused =
                decide(&policy, &tcp(), &request("GET", uri, &[host]), false).unwrap_err();
            assert_eq!(refused.status, StatusCode::FORBIDDEN, "{uri}");
            assert!(refused.message.contains("hidepid=invisible"), "{uri}");
            let with_token = request("GET", uri, &[host, ("authorization", "Bearer s3cret")]);
            assert_eq!(
                decide(&policy, &tcp(), &with_token, false),
                Ok(Access::Full)
            );
            // A Unix peer that is not root asks about every process.
            let user = Peer::Unix {
                uid: 65534,
                gid: 65534,
                pid: i32::MAX,
            };
            let refused = decide(&policy, &user, &request("GET", uri, &[]), false).unwrap_err();
            assert_eq!(refused.status, StatusCode::FORBIDDEN, "{uri}");
        }
        for uri in ["/", "/healthz"] {
            let r = request("GET", uri, &[host]);
            assert_eq!(decide(&policy, &tcp(), &r, false), Ok(Access::Public));
        }
    }

    #[test]
    fn routes_are_scoped_to_the_processes_they_reveal() {
        assert_eq!(scope_of(&Method::GET, "/metrics", None), Scope::Public);
        assert_eq!(
            scope_of(&Method::GET, "/api/v1/processes", None),
            Scope::Public
        );
        assert_eq!(
            scope_of(&Method::GET, "/api/v1/processes/42/maps", None),
            Scope::Process(42)
        );
        assert_eq!(
            scope_of(&Method::POST, "/api/v1/phases", Some("name=a&pid=7")),
            Scope::Process(7)
        );
        assert_eq!(
            scope_of(&Method::POST, "/api/v1/phases", Some("name=a")),
            Scope::All
        );
        // A call-site profile is a process's as its layout is; all of them need full access.
        assert_eq!(
            scope_of(&Method::GET, "/debug/pprof/heap", Some("seconds=30&pid=7")),
            Scope::Process(7)
        );
        assert_eq!(
            scope_of(&Method::GET, "/debug/pprof/heap", None),
            Scope::All
        );
        assert_eq!(
            scope_of(&Method::GET, "/debug/pprof/other", Some("pid=7")),
            Scope::All
        );
        assert_eq!(scope_of(&Method::POST, "/anything", None), Scope::All);
        assert_eq!(scope_of(&Method::GET, "/api/v1/%72eport", None), Scope::All);
        assert_eq!(scope_of(&Method::POST, "/metrics", None), Scope::All);
        assert_eq!(scope_of(&Method::GET, "/api/v1/report", None), Scope::All);
    }
}
