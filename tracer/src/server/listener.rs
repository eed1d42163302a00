//! Where and how the HTTP API is served: a TCP or Unix-socket listener on a thread and runtime
//! of its own (so that neither the ring-buffer drain nor the API waits on the other), one task
//! per connection, a header-read timeout, and a cap on open connections, so that half-sent
//! requests can neither starve the API nor use up the descriptors the tracer needs for /proc.

use std::{
    convert::Infallible,
    net::SocketAddr,
    os::unix::fs::{FileTypeExt, PermissionsExt},
    path::PathBuf,
    sync::Arc,
    time::Duration,
};

use axum::{
    Router,
    http::Request,
    response::{IntoResponse, Response},
};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tower_service::Service as _;

use crate::server::access::{self, Peer, Policy};

/// A client that has not sent its request's headers within this time is disconnected (the
/// same applies to an idle keep-alive connection waiting for its next request).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);

/// `--listen`: a TCP address, or `unix:PATH` for a Unix-domain socket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ListenAddr {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl std::str::FromStr for ListenAddr {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if let Some(path) = text.strip_prefix("unix:") {
            if path.is_empty() {
                return Err("unix: needs a socket path, e.g. unix:/run/tracer.sock".into());
            }
            return Ok(ListenAddr::Unix(PathBuf::from(path)));
        }
        text.parse()
            .map(ListenAddr::Tcp)
            .map_err(|_| format!("`{text}`: expected IP:PORT (e.g. 127.0.0.1:19410) or unix:PATH"))
    }
}

impl std::fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ListenAddr::Tcp(addr) => write!(f, "{addr}"),
            ListenAddr::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

impl ListenAddr {
    /// The URL a client (CMD, through `TRACER_API_URL`) uses.
    pub fn url(&self) -> String {
        match self {
            ListenAddr::Tcp(addr) => format!("http://{addr}"),
            ListenAddr::Unix(_) => self.to_string(),
        }
    }
}

/// A bound, not yet served listener.
pub enum Bound {
    Tcp(std::net::TcpListener),
    Unix(std::os::unix::net::UnixListener),
}

/// Binds `addr` now (a busy port fails before anything else starts) and returns the address
/// actually bound (port 0 picks a free one).
pub fn bind(addr: &ListenAddr) -> std::io::Result<(Bound, ListenAddr)> {
    match addr {
        ListenAddr::Tcp(addr) => {
            let listener = std::net::TcpListener::bind(addr)?;
            deepen_backlog(&listener);
            listener.set_nonblocking(true)?;
            let bound = listener.local_addr()?;
            Ok((Bound::Tcp(listener), ListenAddr::Tcp(bound)))
        }
        ListenAddr::Unix(path) => {
            // A socket left by a tracer that is gone is replaced; one that answers is in use,
            // and anything else at the path is not ours to remove.
            if let Ok(meta) = std::fs::symlink_metadata(path) {
                if !meta.file_type().is_socket() {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::AlreadyExists,
                        "the path exists and is not a socket",
                    ));
                }
                if std::os::unix::net::UnixStream::connect(path).is_ok() {
                    return Err(std::io::ErrorKind::AddrInUse.into());
                }
                std::fs::remove_file(path)?;
            }
            let listener = std::os::unix::net::UnixListener::bind(path)?;
            deepen_backlog(&listener);
            // Any local user may connect: each request is checked against the peer's
            // credentials. A narrower mode (or group) can be set on the socket afterwards, or
            // on its directory.
            make_connectable_by_all(path)?;
            listener.set_nonblocking(true)?;
            Ok((Bound::Unix(listener), ListenAddr::Unix(path.clone())))
        }
    }
}

/// Gives the socket at `path` mode 0666 without following a symlink: chmod(2) by path would
/// follow one that someone with write access to the directory put there between bind and
/// chmod, and make any file the tracer can reach (it runs as root) world-writable. The path is
/// opened with O_PATH | O_NOFOLLOW, checked to be a socket of this user, and changed through
/// its descriptor.
fn make_connectable_by_all(path: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _, OpenOptionsExt as _};
    let opened = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)?;
    let meta = opened.metadata()?;
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    // A hard link to someone else's socket (where fs.protected_hardlinks is off) has a link
    // count above one; the socket bind just made has one.
    if !meta.file_type().is_socket() || meta.uid() != euid || meta.nlink() != 1 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            "the socket was replaced by something else before its mode was set",
        ));
    }
    // fchmod(2) refuses O_PATH descriptors; the /proc/self/fd link names the opened inode
    // itself, not the path, so this chmod cannot be redirected.
    use std::os::fd::AsRawFd as _;
    let by_fd = format!("/proc/self/fd/{}", opened.as_raw_fd());
    std::fs::set_permissions(by_fd, std::fs::Permissions::from_mode(0o666))
}

/// std listens with a backlog of 128: a burst of connections (a scrape during a flood of
/// stalled ones) would have its SYNs dropped and retried only a second later. Calling
/// listen(2) again on a listening socket only changes its backlog.
fn deepen_backlog(listener: &impl std::os::fd::AsRawFd) {
    // SAFETY: a valid listening socket.
    unsafe { libc::listen(listener.as_raw_fd(), 1024) };
}

/// How many connections are served at once: well below the descriptor limit, so that the
/// tracer can still open /proc files and perf events with the API full.
pub fn max_connections() -> usize {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: a valid rlimit struct to fill.
    let soft = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0 {
        limit.rlim_cur
    } else {
        1024
    };
    (soft.saturating_sub(256) / 2).clamp(16, 1024) as usize
}

/// Serves `router` on `listener` from a thread of its own until the process exits.
pub fn spawn(listener: Bound, router: Router, policy: Policy) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("tracer-http".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                // bcrypt checks of basic-auth passwords run there: a flood of wrong
                // passwords must not take more than two cores' worth.
                .max_blocking_threads(2)
                .build()
            {
                Ok(runtime) => runtime,
                Err(err) => {
                    log::error!("HTTP server not started: no runtime: {err}");
                    return;
                }
            };
            runtime.block_on(accept_loop(listener, router, Arc::new(policy)));
        })?;
    Ok(())
}

async fn accept_loop(listener: Bound, router: Router, policy: Arc<Policy>) {
    enum Listener {
        Tcp(tokio::net::TcpListener),
        Unix(tokio::net::UnixListener),
    }
    let listener = match listener {
        Bound::Tcp(l) => tokio::net::TcpListener::from_std(l).map(Listener::Tcp),
        Bound::Unix(l) => tokio::net::UnixListener::from_std(l).map(Listener::Unix),
    };
    let listener = match listener {
        Ok(listener) => listener,
        Err(err) => {
            log::error!("HTTP server not started: {err}");
            return;
        }
    };
    let slots = Arc::new(tokio::sync::Semaphore::new(max_connections()));
    loop {
        // At the cap, new connections wait in the kernel's backlog until one closes (the
        // header-read timeout closes stalled ones).
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let accepted = match &listener {
            Listener::Tcp(l) => l.accept().await.and_then(|(stream, _)| {
                let local = stream.local_addr()?;
                let (router, policy) = (router.clone(), policy.clone());
                let tls = policy.web.as_ref().and_then(|w| w.tls.clone());
                Ok(tokio::spawn(async move {
                    let Some(tls) = tls else {
                        let peer = Peer::Tcp {
                            local,
                            client_cert: false,
                        };
                        return serve_connection(stream, peer, router, policy, slot).await;
                    };
                    // The handshake gets the same deadline as a request's headers.
                    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
                    match tokio::time::timeout(HEADER_READ_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => {
                            // Only a certificate the client CA verified is ever presented here.
                            let client_cert = stream.get_ref().1.peer_certificates().is_some();
                            let peer = Peer::Tcp { local, client_cert };
                            serve_connection(stream, peer, router, policy, slot).await
                        }
                        Ok(Err(err)) => log::debug!("TLS handshake failed: {err}"),
                        Err(_) => log::debug!("TLS handshake timed out"),
                    }
                }))
            }),
            Listener::Unix(l) => l.accept().await.and_then(|(stream, _)| {
                let cred = stream.peer_cred()?;
                let peer = Peer::Unix {
                    uid: cred.uid(),
                    gid: cred.gid(),
                    pid: cred.pid().unwrap_or(0),
                };
                Ok(tokio::spawn(serve_connection(
                    stream,
                    peer,
                    router.clone(),
                    policy.clone(),
                    slot,
                )))
            }),
        };
        if let Err(err) = accepted {
            // Out of descriptors, most likely: wait instead of spinning on the error.
            log::warn!("HTTP: cannot accept a connection: {err}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

async fn serve_connection<S>(
    stream: S,
    peer: Peer,
    router: Router,
    policy: Arc<Policy>,
    _slot: tokio::sync::OwnedSemaphorePermit,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |mut request: Request<hyper::body::Incoming>| {
        let mut router = router.clone();
        let (policy, peer) = (policy.clone(), peer.clone());
        async move {
            let basic_ok = match access::basic_credentials(&request) {
                Some((user, password)) if access::basic_auth_required(&policy) => {
                    let users = policy.web.as_ref().map(|w| w.users.clone());
                    tokio::task::spawn_blocking(move || {
                        users.is_some_and(|u| u.check(&user, &password))
                    })
                    .await
                    .unwrap_or(false)
                }
                _ => false,
            };
            let decision = access::decide(&policy, &peer, &request, basic_ok);
            let response: Response = match decision {
                Err(refusal) if refusal.status == axum::http::StatusCode::UNAUTHORIZED => (
                    refusal.status,
                    [(
                        axum::http::header::WWW_AUTHENTICATE,
                        "Basic realm=\"tracer\", charset=\"UTF-8\"",
                    )],
                    format!("{}\n", refusal.message),
                )
                    .into_response(),
                Err(refusal) => (refusal.status, format!("{}\n", refusal.message)).into_response(),
                Ok(access) => {
                    request.extensions_mut().insert(access);
                    match router.call(request).await {
                        Ok(response) => response,
                        Err(never) => match never {},
                    }
                }
            };
            Ok::<_, Infallible>(response)
        }
    });
    let served = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .serve_connection(TokioIo::new(stream), service)
        .await;
    if let Err(err) = served {
        log::debug!("HTTP connection ended: {err}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_socket_mode_is_set_on_the_socket_and_never_through_a_symlink() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = std::env::temp_dir().join(format!("tracer-sock-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let socket = dir.join("api.sock");
        let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
        make_connectable_by_all(&socket).unwrap();
        let mode = std::fs::metadata(&socket).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o666);
        // What someone planted in place of the socket: a link to a file of the tracer's.
        let target = dir.join("secret");
        std::fs::write(&target, "x").unwrap();
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o600)).unwrap();
        let link = dir.join("planted.sock");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert!(make_connectable_by_all(&link).is_err());
        let mode = std::fs::metadata(&target).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the link's target was changed");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn listen_addresses_parse() {
        assert_eq!(
            "127.0.0.1:19410".parse(),
            Ok(ListenAddr::Tcp("127.0.0.1:19410".parse().unwrap()))
        );
        assert_eq!(
            "unix:/run/tracer.sock".parse(),
            Ok(ListenAddr::Unix("/run/tracer.sock".into()))
        );
        assert!("unix:".parse::<ListenAddr>().is_err());
        assert!("localhost".parse::<ListenAddr>().is_err());
        assert_eq!(ListenAddr::Unix("/a".into()).to_string(), "unix:/a");
    }
}
