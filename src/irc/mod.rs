//! IRC as a wire format: messages as a client sends them (tags, source, command, parameters,
//! with IRC's length limits) and as the server writes them, formatting codes stripped from
//! text, long lines split into IRC-sized pieces, and a connection's registration (CAP, SASL,
//! PASS, NICK and USER) as a state machine without I/O. The IRC listener (an open issue) is
//! built on these; no connection speaks IRC yet.

pub mod message;
pub mod register;
pub mod text;
