//! `roost shell` scripted (stdin) and one-shot, as an operator runs it, with
//! zkCli's wording for errors.

use std::io::Write;
use std::process::{Command, Stdio};

use roost_tests::servers::RoostServer;

fn shell(server: &RoostServer, args: &[&str], stdin: &str) -> (bool, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_roost"))
        .args(["shell", "--server", &server.addr.to_string()])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run roost shell");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write script");
    let out = child.wait_with_output().expect("wait");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn one_shot_commands_and_exit_codes() {
    let server = RoostServer::start().unwrap();
    let (ok, out, _) = shell(&server, &["create", "/one", "hello"], "");
    assert!(ok);
    assert_eq!(out.trim(), "Created /one");
    let (ok, out, _) = shell(&server, &["get", "/one"], "");
    assert!(ok);
    assert_eq!(out.trim(), "hello");
    let (ok, _, err) = shell(&server, &["get", "/missing"], "");
    assert!(!ok);
    assert_eq!(err.trim(), "Node does not exist: /missing");
    let (ok, out, _) = shell(&server, &["--json", "ls", "/"], "");
    assert!(ok);
    let value: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(value["children"], serde_json::json!(["one", "zookeeper"]));
}

#[test]
fn scripts_from_stdin_print_like_zkcli() {
    let server = RoostServer::start().unwrap();
    let script = "\
create /a x
create /a x
set -v 5 /a y
create /a/b
create -e -s /a/eph- e
delete /a
ls /a
get -s /a
ls -R /a
stat /none
deleteall /a
ls /
";
    let (ok, out, err) = shell(&server, &[], script);
    assert!(!ok, "a script with failing commands exits non-zero");
    assert_eq!(
        err.lines().collect::<Vec<_>>(),
        [
            "Node already exists: /a",
            "version No is not valid : /a",
            "Node not empty: /a",
            "Node does not exist: /none",
        ]
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "Created /a");
    assert_eq!(lines[1], "Created /a/b");
    assert_eq!(lines[2], "Created /a/eph-0000000001");
    assert_eq!(lines[3], "[b, eph-0000000001]");
    assert_eq!(lines[4], "x");
    assert!(lines[5].starts_with("cZxid = 0x"), "{out}");
    assert!(out.contains("dataVersion = 0\n"), "{out}");
    assert!(out.contains("numChildren = 2\n"), "{out}");
    assert!(out.contains("/a\n/a/b\n/a/eph-0000000001\n"), "{out}");
    assert_eq!(*lines.last().unwrap(), "[zookeeper]");
}
