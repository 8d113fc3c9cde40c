//! Each example program run as a user runs it, against a Roost server
//! started here; each exits 0 only after verifying its own guarantee.

use std::process::Command;

use roost_tests::servers::RoostServer;

fn run(binary: &str, server: &RoostServer, args: &[&str]) -> (bool, String) {
    let output = Command::new(binary)
        .arg("--server")
        .arg(server.addr.to_string())
        .args(args)
        .output()
        .expect("run the example");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

#[test]
fn hypercube_converges_to_the_exact_voltages() {
    let server = RoostServer::start().unwrap();
    let (ok, out) = run(
        env!("CARGO_BIN_EXE_hypercube"),
        &server,
        &["--workers", "2"],
    );
    assert!(ok, "{out}");
    assert!(out.contains("converged within 1e-6"), "{out}");
}

#[test]
fn inbox_workers_classify_every_email_once_despite_kills() {
    let server = RoostServer::start().unwrap();
    let args = ["--emails", "300", "--workers", "3", "--kills", "2"];
    let (ok, out) = run(env!("CARGO_BIN_EXE_inbox-workers"), &server, &args);
    assert!(ok, "{out}");
    assert!(out.contains("300 emails classified exactly once"), "{out}");
    assert!(out.contains("2 killed with SIGKILL"), "{out}");
}

#[test]
fn dataset_readers_share_and_writers_are_alone() {
    let server = RoostServer::start().unwrap();
    let binary = env!("CARGO_BIN_EXE_dataset-lock");
    let (ok, out) = run(binary, &server, &["--duration", "3", "--readers", "4"]);
    assert!(ok, "{out}");
    assert!(out.contains("writers never overlapped anyone"), "{out}");
    let (ok, out) = run(binary, &server, &["--duration", "3", "--mode", "append"]);
    assert!(ok, "{out}");
    assert!(out.contains("never saw a half-appended row"), "{out}");
    // Without the lock, the same check catches readers seeing torn updates.
    let (ok, out) = run(binary, &server, &["--duration", "3", "--unsafe-no-lock"]);
    assert!(!ok, "unlocked readers went unnoticed: {out}");
}
