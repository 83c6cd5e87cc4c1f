//! The Shoal agent, one per machine: starts the machine's controller and data node(s) as child
//! processes, restarts a crashed one, stops and starts them on an authenticated request, and
//! reports itself to the controllers; installs release packages and restarts itself from a new
//! version (rolling upgrades).

pub mod install;
pub mod process;
pub mod server;
pub mod service;
pub mod supervisor;

pub use server::{AgentError, AgentExit, AgentOptions, run};
