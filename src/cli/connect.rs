//! `tlschat connect`: its arguments and the example session its help shows.

use std::path::PathBuf;

use clap::Args;

/// The session `tlschat connect --help` shows.
pub(super) const CONNECT_EXAMPLE: &str = "\
A first session (typed lines after the prompts):
  $ tlschat connect localhost --user alice
  The server at localhost:7443 presented a certificate that no trusted authority signed.
  Its SHA-256 fingerprint is 4F:A7:1A:B1:…:F7:B5
  Trust this server? [y/N] y
  Password:
  *** Welcome, alice! 2 online: alice, bob
  Log in with this certificate next time? [Y/n]
  *** Certificate 9C:…:E1 enrolled as 2026-12-01
  #lobby> hello bob
  <bob> hi alice
  #lobby> /quit
  *** Bye

On a terminal: Up/Down and Ctrl-R search the history, Tab completes commands, rooms and
names, Ctrl-D or Ctrl-C leaves. Piped: the first line is the password with
--password-stdin, the rest are chat lines; the end of input leaves.
Trusted servers are kept in ~/.config/tlschat/known_hosts, the client's own certificate for
each server in ~/.config/tlschat/keys/HOST_PORT.crt and .key (presented only once the server
is trusted).";

#[derive(Debug, Args)]
pub(super) struct ConnectArgs {
    /// Server to connect to [default: localhost:7443]
    #[arg(value_name = "HOST[:PORT]", default_value = "localhost")]
    pub(super) target: String,
    /// Username (asked for on a terminal when missing)
    #[arg(long, value_name = "NAME")]
    pub(super) user: Option<String>,
    /// Read the password from the first line of standard input; the rest are chat lines
    #[arg(long)]
    pub(super) password_stdin: bool,
    /// Trust only servers whose chain verifies against the certificates in FILE (PEM)
    #[arg(long, value_name = "FILE")]
    pub(super) ca: Option<PathBuf>,
    /// Trusted servers' fingerprints [default: ~/.config/tlschat/known_hosts]
    #[arg(long, value_name = "FILE")]
    pub(super) known_hosts: Option<PathBuf>,
    /// Trust exactly the certificate with this SHA-256 fingerprint
    #[arg(long, value_name = "FP")]
    pub(super) fingerprint: Option<String>,
    /// Do not check the server's certificate at all (for tests; says so on every start)
    #[arg(long)]
    pub(super) insecure: bool,
}

/// Runs the client.
pub(super) async fn connect(args: ConnectArgs) -> anyhow::Result<()> {
    crate::client::run(crate::client::Options {
        target: args.target,
        user: args.user,
        password_stdin: args.password_stdin,
        ca: args.ca,
        known_hosts: args.known_hosts,
        fingerprint: args.fingerprint,
        insecure: args.insecure,
    })
    .await
}
