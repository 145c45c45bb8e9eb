//! `Type=notify`: READY after start, RELOADING/READY around SIGHUP, STOPPING on SIGTERM.

mod common;

use std::os::unix::net::UnixDatagram;
use std::process::Command;

use common::STEP;
use common::bin::serve_with_env;

fn next(socket: &UnixDatagram) -> String {
    let mut buf = [0u8; 256];
    let n = socket
        .recv(&mut buf)
        .expect("no notification within the timeout");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

fn kill(signal: &str, pid: u32) {
    assert!(
        Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()
            .unwrap()
            .success()
    );
}

#[test]
fn systemd_is_told_ready_reloading_and_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&path).unwrap();
    socket.set_read_timeout(Some(STEP)).unwrap();
    let s = serve_with_env(
        dir.path(),
        &[],
        &[("NOTIFY_SOCKET", path.to_str().unwrap())],
    );
    assert_eq!(next(&socket), "READY=1");
    kill("-HUP", s.child.id());
    assert_eq!(next(&socket), "RELOADING=1");
    assert_eq!(next(&socket), "READY=1");
    kill("-TERM", s.child.id());
    assert_eq!(next(&socket), "STOPPING=1");
}
