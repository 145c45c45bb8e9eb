//! IRC as a wire format: messages as a client sends them (tags, source, command, parameters,
//! with IRC's length limits) and as the server writes them, formatting codes stripped from
//! text, and long lines split into IRC-sized pieces. The IRC listener (an open issue) is
//! built on these; no connection speaks IRC yet.

pub mod message;
pub mod text;
