//! IRC without I/O: messages as a client sends them (tags, source, command, parameters, with
//! IRC's length limits) and as the server writes them; formatting codes stripped from text and
//! long lines split into IRC-sized pieces; a connection's registration (CAP, SASL, PASS, NICK
//! and USER) as a state machine; a registered connection's commands as what the rooms must do
//! and the answers fixed by the contract; the welcome burst (001–005); the numerics that list
//! members and rooms (NAMES, WHO, WHOIS, LIST, AWAY); `CHATHISTORY` requests, message ids and
//! timestamps; a room's event as IRC lines; a session's deliveries as IRC lines (`view`). The
//! IRC listener (`session::irc`) is built on these.

pub mod chathistory;
pub mod command;
pub mod label;
pub mod message;
pub mod register;
pub mod render;
pub mod reply;
pub mod text;
pub mod view;
pub mod welcome;
