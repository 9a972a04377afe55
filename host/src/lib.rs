//! ftl2-runner: a drop-in `ansible-runner` for AWX execution environments.
//!
//! AWX streams a job to `ansible-runner worker`; we accept it, run the FTL2 automation script in
//! a WebAssembly sandbox instead of ansible-playbook, and stream back the events AWX expects.
//! Data flows one way: stdin -> [`transmit`] -> [`unpack`] -> [`job`] -> (sandbox -> executor)
//! -> [`events`] -> [`writer`] -> stdout.
#![warn(missing_docs)]

pub mod adhoc;
pub mod artifacts;
pub mod beneath;
pub mod boolean;
pub mod catalog;
pub mod cleanup;
pub mod cli;
pub mod cmdline;
pub mod display;
pub mod events;
pub mod executor;
pub mod fallback;
pub mod inventory;
pub mod job;
pub mod job_run;
pub mod limits;
pub mod log;
#[cfg(test)]
pub mod mutate;
pub mod outcome;
pub mod play;
pub mod processes;
pub mod pyjson;
pub mod sandbox;
pub mod script;
pub mod secret;
pub mod tags;
pub mod transmit;
pub mod tree;
pub mod unpack;
pub mod worker;
pub mod worker_info;
pub mod writer;
pub mod yaml;
