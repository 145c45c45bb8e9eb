//! tlschat: a small, fast, secure chat-room server over TLS.
//!
//! | module | owns |
//! |---|---|
//! | `app` | the composition root: a server built from its parts and run to shutdown |
//! | `cli` | clap types, admin commands, human output |
//! | `client` | `tlschat connect`: server trust (roots, pins, known_hosts), login, relay, reconnect |
//! | `doctor` | configuration checks without serving |
//! | `config` | every tunable number, declared once in the `knobs!` table; config file, flag/env/file merging |
//! | `tls` | PEM loading, self-signed certificates, fingerprints, the client-certificate verifier |
//! | `client_cert` | client certificates as credentials: fingerprint forms, labels |
//! | `store` | accounts, rooms, memberships, messages, read positions behind `enum Store` (SQL per backend in `store::sqlite` and `store::postgres`, migrations in `migrations/{sqlite,postgres}`) |
//! | `cluster` | reaching the Redis a cluster's nodes share (`cluster::Redis`, `RedisUnavailable`) |
//! | `metrics` | Prometheus counters and the `/metrics` responder |
//! | `notify` | systemd readiness notifications |
//! | `report` | the process's own output lines, human or JSON |
//! | `password` | argon2id on the blocking pool, password rules |
//! | `username` | the username rule |
//! | `accounts` | closing sessions whose account an admin changed (polls SQLite; PostgreSQL notifies) |
//! | `admin` | the admin control socket: who, kick, say |
//! | `auth` | `authenticate(name, password, source)` |
//! | `throttle` | failed-login counting per username and per source (`enum FailureCounter`: local, or shared in Redis) |
//! | `server` | accept loops (the chat port and the IRC port), connection caps, PROXY headers of trusted balancers, what runs on a connection (line session, web or IRC), shutdown |
//! | `transport` | line framing, the first-byte sniff and ClientHello dispatch, WebSocket frames as lines, PROXY protocol headers |
//! | `web` | the embedded web client and its HTTP/1.1 server, the WebSocket upgrade |
//! | `session` | one logged-in connection over a line transport: login, member loop, commands, rate; `session::irc`: an IRC connection's registration and commands over the same member session |
//! | `room` | rooms and rosters, per-room logs (`enum Log`), append then per-node delivery; `room::hub`: members here, queues, fan-out; `room::presence` (`enum Presence`): who is online here, `room::presence::redis`: who is online on every node, `room::presence::nodes`: a cluster's nodes and leases, `room::presence::inbox`: each node's inbox; `room::log::redis`: rooms' logs on Redis Streams; `room::shared`: a cluster node's link (appender, reader, heartbeat, sweeper); `room::cluster`: what the link hands the rooms, and the checks only a cluster makes |
//! | `event` | room names, sequence numbers, connection ids, protocols, events (what happened, not how it looks); `event::codec`: messages' stored form; `HistoryEpoch`: which numbering a read position is in |
//! | `history` | the batched history writer, the reads behind `/history` and catch-up (from a shared log through `history::SharedHistory` with `history = "redis"`); `history::Memberships`: rooms and read positions |
//! | `protocol` | `decode`, `command`, `clean`, `render`: lines, commands, every wire string (no async) |
//! | `irc` | IRC as a wire format: `irc::message` (tags, source, command, parameters; limits; writing), `irc::text` (formatting stripped, long lines split), `irc::register` (CAP, SASL PLAIN/EXTERNAL, PASS, NICK/USER without I/O), `irc::command` (a registered connection's commands: what the rooms must do, and the answers fixed without them), `irc::welcome` (001–005, LUSERS, MOTD), `irc::reply` (NAMES, WHO/WHOX, WHOIS, LIST, AWAY numerics), `irc::chathistory` (`CHATHISTORY` requests, msgids, server-time), `irc::render` (an event as IRC lines for a set of caps), `irc::view` (a session's deliveries, history blocks and last line as IRC), `irc::label` (labeled-response) |
// One reviewed exception: `transport::ack` asks a socket for its send queue (an ioctl no kept
// crate offers safely). Nothing else may use `unsafe`.
#![deny(unsafe_code)]

pub mod accounts;
pub mod admin;
pub mod app;
pub mod auth;
pub mod cli;
pub mod client;
pub mod client_cert;
pub mod cluster;
pub mod config;
pub mod doctor;
pub mod event;
pub mod history;
pub mod irc;
pub mod metrics;
pub mod notify;
pub mod password;
pub mod protocol;
pub mod report;
pub mod room;
pub mod server;
pub mod session;
pub mod store;
pub mod throttle;
pub mod tls;
pub mod transport;
pub mod username;
pub mod web;
