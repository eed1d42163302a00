//! The deployment files in deploy/ and a real Prometheus server scraping the tracer with the
//! shipped scrape configuration.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;
use tests::*;

fn deploy(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy")
        .join(file)
}

fn promtool(args: &[&str]) {
    let out = Command::new("promtool")
        .args(args)
        .output()
        .expect("promtool is installed by setup");
    assert!(
        out.status.success(),
        "promtool {args:?}:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn shipped_rules_and_scrape_config_pass_promtool() {
    promtool(&[
        "check",
        "rules",
        deploy("tracer-alerts.yml").to_str().unwrap(),
    ]);
    promtool(&[
        "check",
        "config",
        deploy("prometheus.yml").to_str().unwrap(),
    ]);
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn a_real_prometheus_scrapes_the_traced_workload() {
    if !kernel_available() {
        return;
    }
    // The workload stops itself after some churn and stays stopped while Prometheus scrapes.
    let (mut daemon, pid) = Daemon::run_workload(&[], "malloc_churn", &["4", "40", "40"]);
    assert!(wait_stopped(pid, Duration::from_secs(60)));

    // The shipped configuration, pointed at this tracer and scraping every second.
    let dir = scratch("prometheus");
    let target = daemon.api.trim_start_matches("http://").to_string();
    let config = std::fs::read_to_string(deploy("prometheus.yml"))
        .unwrap()
        .replace("127.0.0.1:19410", &target)
        .replace("scrape_interval: 15s", "scrape_interval: 1s");
    std::fs::write(dir.join("prometheus.yml"), config).unwrap();
    std::fs::copy(deploy("tracer-alerts.yml"), dir.join("tracer-alerts.yml")).unwrap();
    let port = free_port();
    let mut prometheus = Command::new("prometheus")
        .arg(format!(
            "--config.file={}",
            dir.join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("prometheus (Debian package) is installed by setup");
    let query = |q: &str| -> Option<Value> {
        let url = format!("http://127.0.0.1:{port}/api/v1/query");
        let mut response = ureq::get(&url).query("query", q).call().ok()?;
        serde_json::from_str(&response.body_mut().read_to_string().ok()?).ok()
    };
    let value = |q: &str| -> Option<f64> {
        let answer = query(q)?;
        answer["data"]["result"][0]["value"][1]
            .as_str()?
            .parse()
            .ok()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let (faults, rss) = loop {
        let faults = value(&format!("sum(tracer_page_faults_total{{pid=\"{pid}\"}})"));
        let rss = value(&format!(
            "sum(tracer_rss_bytes{{pid=\"{pid}\",type=\"anon\"}})"
        ));
        if let (Some(f), Some(r)) = (faults, rss) {
            break (f, r);
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus never got the tracer's series"
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    let up = value("up{job=\"tracer\"}");
    // Prometheus asks for OpenMetrics first: `_created` only exists in that exposition, so its
    // series prove the tracer answered in OpenMetrics and Prometheus parsed it.
    let created = value("tracer_decode_errors_created");
    assert!(
        created.is_some_and(|c| c > 1.0e9),
        "no _created series: Prometheus did not get OpenMetrics ({created:?})"
    );
    let kernel_anon = {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let kb: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix("RssAnon:"))
            .unwrap()
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .unwrap();
        kb * 1024.0
    };
    println!("PromQL: faults {faults}, anon RSS {rss} (kernel {kernel_anon}), up {up:?}");
    assert_eq!(up, Some(1.0));
    assert!(
        faults > 100.0,
        "a churning allocator takes page faults: {faults}"
    );
    assert!(
        (rss - kernel_anon).abs() <= 4096.0,
        "anon RSS {rss} vs {kernel_anon}"
    );
    let _ = prometheus.kill();
    let _ = prometheus.wait();
    resume(pid);
    while wait_stopped(pid, Duration::from_secs(60)) {
        resume(pid);
    }
    assert!(daemon.wait(Duration::from_secs(60)).status.success());
}
