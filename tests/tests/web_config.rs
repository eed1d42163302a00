//! `--web-config`: a real Prometheus scrapes the tracer through TLS and basic auth with the
//! shipped files (deploy/web-config.yml, deploy/prometheus-tls.yml), filled in with a
//! certificate made here by openssl; a wrong password or plain HTTP gets nothing.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use serde_json::Value;
use tests::*;

fn deploy(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy")
        .join(file)
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl (Debian package openssl) is installed");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA and a server certificate for 127.0.0.1 signed by it, in `dir`.
fn certificates(dir: &Path) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509", "-days", "1", "-subj", "/CN=tracer test CA"];
    ca.extend(ec);
    ca.extend(["-keyout", "ca.key", "-out", "ca.crt"]);
    openssl(dir, &ca);
    let mut csr = vec!["req", "-subj", "/CN=127.0.0.1"];
    csr.extend(ec);
    csr.extend(["-keyout", "tls.key", "-out", "tls.csr"]);
    openssl(dir, &csr);
    std::fs::write(dir.join("ext.cnf"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "tls.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            "ext.cnf",
            "-out",
            "tls.crt",
        ],
    );
}

#[test]
fn prometheus_scrapes_through_tls_and_basic_auth() {
    if !kernel_available() {
        return;
    }
    let dir = scratch("web-config");
    certificates(&dir);
    let password = "correct horse battery staple";
    let hash = bcrypt::hash(password, 6).unwrap();
    // The shipped web config, with this test's files and hash.
    let web = std::fs::read_to_string(deploy("web-config.yml"))
        .unwrap()
        .replace("/etc/tracer/tls.crt", dir.join("tls.crt").to_str().unwrap())
        .replace("/etc/tracer/tls.key", dir.join("tls.key").to_str().unwrap())
        .replace("REPLACE_WITH_BCRYPT_HASH", &format!("'{hash}'"));
    std::fs::write(dir.join("web.yml"), web).unwrap();

    let web_config = dir.join("web.yml");
    let (daemon, pid) = Daemon::run_workload(
        &["--web-config", web_config.to_str().unwrap()],
        "malloc_churn",
        &["4", "40", "40"],
    );
    assert!(wait_stopped(pid, Duration::from_secs(60)));
    let target = daemon
        .api
        .strip_prefix("https://")
        .unwrap_or_else(|| panic!("served over TLS: {}", daemon.api))
        .to_string();

    // Plain HTTP to the TLS port gets no metrics.
    let plain = ureq::get(&format!("http://{target}/metrics")).call();
    assert!(plain.is_err(), "plain HTTP was answered");

    // The shipped scrape job, plus the same with a wrong password.
    std::fs::write(dir.join("password"), password).unwrap();
    std::fs::write(dir.join("wrong"), "incorrect horse").unwrap();
    let shipped = std::fs::read_to_string(deploy("prometheus-tls.yml"))
        .unwrap()
        .replace("tracer.example.internal:19410", &target)
        .replace(
            "/etc/prometheus/tracer-ca.crt",
            dir.join("ca.crt").to_str().unwrap(),
        )
        .replace("scrape_interval: 15s", "scrape_interval: 1s");
    let job = shipped
        .split("scrape_configs:\n")
        .nth(1)
        .expect("a scrape_configs section");
    let wrong_job = job
        .replace("job_name: tracer", "job_name: tracer_wrong_password")
        .replace(
            "/etc/prometheus/tracer-password",
            dir.join("wrong").to_str().unwrap(),
        );
    let config = format!("{shipped}{wrong_job}").replace(
        "/etc/prometheus/tracer-password",
        dir.join("password").to_str().unwrap(),
    );
    std::fs::write(dir.join("prometheus.yml"), &config).unwrap();
    std::fs::copy(deploy("tracer-alerts.yml"), dir.join("tracer-alerts.yml")).unwrap();
    let check = Command::new("promtool")
        .args(["check", "config"])
        .arg(dir.join("prometheus.yml"))
        .output()
        .expect("promtool");
    assert!(
        check.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );

    let port = free_port();
    let mut prometheus = start_prometheus(&dir, port);
    let value = |q: &str| -> Option<f64> {
        let url = format!("http://127.0.0.1:{port}/api/v1/query");
        let mut response = ureq::get(&url).query("query", q).call().ok()?;
        let answer: Value =
            serde_json::from_str(&response.body_mut().read_to_string().ok()?).ok()?;
        answer["data"]["result"][0]["value"][1]
            .as_str()?
            .parse()
            .ok()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let (faults, up, up_wrong) = loop {
        let faults = value(&format!("sum(tracer_page_faults_total{{pid=\"{pid}\"}})"));
        let up = value("up{job=\"tracer\"}");
        let up_wrong = value("up{job=\"tracer_wrong_password\"}");
        if let (Some(f), Some(u), Some(w)) = (faults, up, up_wrong) {
            break (f, u, w);
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus never got the tracer's series through TLS; tracer: {}",
            daemon.stderr_so_far()
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    println!("through TLS + basic auth: faults {faults}, up {up}; wrong password: up {up_wrong}");
    assert_eq!(up, 1.0);
    assert!(
        faults > 100.0,
        "a churning allocator takes page faults: {faults}"
    );
    assert_eq!(up_wrong, 0.0, "a wrong password was let through");
    let _ = prometheus.kill();
    let _ = prometheus.wait();
    resume(pid);
}
