//! The deployment files in deploy/ and a real Prometheus server scraping the tracer with the
//! shipped scrape configuration.

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
        .replace("scrape_interval: 15s", "scrape_interval: 1s")
        .replace("evaluation_interval: 15s", "evaluation_interval: 1s");
    std::fs::write(dir.join("prometheus.yml"), config).unwrap();
    std::fs::copy(deploy("tracer-alerts.yml"), dir.join("tracer-alerts.yml")).unwrap();
    let port = free_port();
    let mut prometheus = start_prometheus(&dir, port);
    // `__rules__` asks for the rules' state instead of a query.
    let query = |q: &str| -> Option<Value> {
        let mut response = if q == "__rules__" {
            ureq::get(&format!("http://127.0.0.1:{port}/api/v1/rules"))
                .call()
                .ok()?
        } else {
            let url = format!("http://127.0.0.1:{port}/api/v1/query");
            ureq::get(&url).query("query", q).call().ok()?
        };
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
    check_dashboard_and_rules(&query);
    let _ = prometheus.kill();
    let _ = prometheus.wait();
    resume(pid);
    while wait_stopped(pid, Duration::from_secs(60)) {
        resume(pid);
    }
    assert!(daemon.wait(Duration::from_secs(60)).status.success());
}

/// Every `expr` of the dashboard's panels (rows included).
fn panel_exprs(panels: &Value, out: &mut Vec<String>) {
    for panel in panels.as_array().into_iter().flatten() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            if let Some(expr) = target["expr"].as_str() {
                out.push(expr.to_owned());
            }
        }
        panel_exprs(&panel["panels"], out);
    }
}

/// What Grafana substitutes before a query reaches Prometheus: every template variable
/// selects all (`.*`), and `$__rate_interval` is at least four scrape intervals.
fn as_grafana_sends(expr: &str) -> String {
    let mut q = expr.replace("$__rate_interval", "1m");
    for var in ["$instance", "$comm", "$container", "$pod"] {
        q = q.replace(var, ".*");
    }
    assert!(!q.contains('$'), "unsubstituted variable in {expr}");
    q
}

/// Runs every dashboard panel's query through Prometheus (each must succeed and return data
/// once a few scrapes are in), the template variables' selectors (must succeed; `instance`
/// and `comm` must have values here), and checks that Prometheus loaded and evaluated every
/// alert rule without error (a false alert condition returns no data, which is fine).
fn check_dashboard_and_rules(query: &dyn Fn(&str) -> Option<Value>) {
    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(deploy("tracer-dashboard.json")).unwrap())
            .expect("the dashboard is JSON");
    let mut exprs = Vec::new();
    panel_exprs(&dashboard["panels"], &mut exprs);
    assert!(exprs.len() >= 10, "panels: {exprs:?}");
    let deadline = Instant::now() + Duration::from_secs(90);
    let answer = |q: &str| -> Value {
        let answer = query(q).unwrap_or_else(|| panic!("Prometheus refused (bad PromQL?) {q}"));
        assert_eq!(answer["status"], "success", "{q}: {answer}");
        answer
    };
    for expr in &exprs {
        let q = as_grafana_sends(expr);
        loop {
            let a = answer(&q);
            if a["data"]["result"]
                .as_array()
                .is_some_and(|r| !r.is_empty())
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "panel query returns no data: {q}"
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }
    println!("dashboard: {} panel queries returned data", exprs.len());
    let vars = dashboard["templating"]["list"].as_array().unwrap();
    for var in vars.iter().filter(|v| v["type"] == "query") {
        let def = var["definition"].as_str().unwrap();
        let inner = def
            .strip_prefix("label_values(")
            .and_then(|d| d.strip_suffix(')'))
            .unwrap_or_else(|| panic!("variable {def}"));
        let (selector, label) = inner.rsplit_once(',').unwrap();
        let q = as_grafana_sends(&format!("count by ({}) ({selector})", label.trim()));
        let a = answer(&q);
        let values = a["data"]["result"].as_array().map_or(0, Vec::len);
        if var["name"] == "instance" || var["name"] == "comm" {
            assert!(values > 0, "variable {} has no values: {q}", var["name"]);
        }
    }

    // The alert rules: as many as the file has, each evaluated by the rule manager.
    let file = std::fs::read_to_string(deploy("tracer-alerts.yml")).unwrap();
    let expected = file
        .lines()
        .filter(|l| l.trim_start().starts_with("- alert:"))
        .count();
    loop {
        let a = answer("__rules__");
        let rules: Vec<Value> = a["data"]["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
            .collect();
        let evaluated = rules.iter().filter(|r| r["health"] != "unknown").count();
        if rules.len() == expected && evaluated == expected {
            for rule in &rules {
                assert_eq!(rule["health"], "ok", "{rule}");
                answer(rule["query"].as_str().unwrap());
            }
            println!("alerts: {expected} rules loaded and evaluated without error");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "rules not all evaluated ({evaluated} of {expected}, {} loaded)",
            rules.len()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}
